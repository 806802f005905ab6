// Configuration: LEAKALLOC_CONF and LEAKALLOC_CONF_FILE read back through opt.*, their
// precedence, verbose:true, and every kind of bad input with its warning text.
//
// The environment cases run this executable as a child (`--print-opts`, see
// ctl_tree_test.cpp) with a chosen environment, so the options are read the way a user's
// program reads them: on the first malloc, from `environ`. The bad-input cases call the
// parser in process with stderr captured, and restore the options afterwards.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "config/options.h"

namespace {

struct ChildResult {
  int status = -1;
  std::string out, err;
  std::map<std::string, std::string> opts;
};

std::string read_all(int fd) {
  std::string s;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) s.append(buf, static_cast<size_t>(n));
  return s;
}

class TempDir {
 public:
  TempDir() {
    char t[] = "/tmp/leakalloc-conf-XXXXXX";
    path_ = mkdtemp(t) != nullptr ? t : "";
  }
  ~TempDir() {
    // Dumps a child wrote land here too.
    if (DIR* dir = opendir(path_.c_str())) {
      while (struct dirent* e = readdir(dir))
        if (e->d_name[0] != '.') unlink((path_ + "/" + e->d_name).c_str());
      closedir(dir);
    }
    rmdir(path_.c_str());
  }
  std::string write(const char* name, const std::string& text) {
    std::string p = path_ + "/" + name;
    FILE* f = fopen(p.c_str(), "w");
    if (f != nullptr) {
      fwrite(text.data(), 1, text.size(), f);
      fclose(f);
    }
    return p;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Runs `<exe> --print-opts` (this executable by default) with exactly `env` as its
// environment.
ChildResult run_child(const std::vector<std::string>& env, const char* exe = "/proc/self/exe") {
  ChildResult r;
  int out[2], err[2];
  if (pipe(out) != 0 || pipe(err) != 0) return r;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  posix_spawn_file_actions_addclose(&fa, out[0]);
  posix_spawn_file_actions_addclose(&fa, err[0]);
  // Dumps the child writes at exit (age implies a final dump) land in a scratch directory.
  TempDir cwd;
  posix_spawn_file_actions_addchdir_np(&fa, cwd.path().c_str());
  std::vector<char*> envp;
  for (const std::string& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  char arg[] = "--print-opts";
  char* argv[] = {const_cast<char*>(exe), arg, nullptr};
  pid_t pid;
  int rc = posix_spawn(&pid, exe, &fa, nullptr, argv, envp.data());
  posix_spawn_file_actions_destroy(&fa);
  close(out[1]);
  close(err[1]);
  if (rc != 0) {
    close(out[0]);
    close(err[0]);
    return r;
  }
  // The child's output is small: reading one pipe to the end first cannot deadlock.
  r.out = read_all(out[0]);
  r.err = read_all(err[0]);
  close(out[0]);
  close(err[0]);
  waitpid(pid, &r.status, 0);
  size_t pos = 0;
  while (pos < r.out.size()) {
    size_t nl = r.out.find('\n', pos);
    if (nl == std::string::npos) nl = r.out.size();
    std::string line = r.out.substr(pos, nl - pos);
    size_t eq = line.find('=');
    if (eq != std::string::npos) r.opts[line.substr(0, eq)] = line.substr(eq + 1);
    pos = nl + 1;
  }
  return r;
}

bool exited_ok(const ChildResult& r) { return WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0; }


std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> v;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t nl = s.find('\n', pos);
    if (nl == std::string::npos) nl = s.size();
    if (nl > pos) v.push_back(s.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return v;
}

}  // namespace

// ---- through the environment, read back through opt.* --------------------------------

TEST(ConfEnv, DefaultsWithNoConfiguration) {
  ChildResult r = run_child({});
  ASSERT_TRUE(exited_ok(r)) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(r.opts.size(), static_cast<size_t>(leakalloc::kOptCount));
  EXPECT_EQ(r.opts["sample"], "19");
  EXPECT_EQ(r.opts["active"], "true");
  EXPECT_EQ(r.opts["age"], "0");
  EXPECT_EQ(r.opts["prefix"], "leakalloc");
  EXPECT_EQ(r.opts["format"], "heap");
  EXPECT_EQ(r.opts["final"], "false");
  EXPECT_EQ(r.opts["interval"], "0");
  EXPECT_EQ(r.opts["lg_interval"], "-1");
  EXPECT_EQ(r.opts["signal"], "0");
  EXPECT_EQ(r.opts["max_depth"], "64");
  EXPECT_EQ(r.opts["max_stacks"], "262144");
  EXPECT_EQ(r.opts["unwind"], "libunwind");
  EXPECT_EQ(r.opts["verbose"], "false");
}

TEST(ConfEnv, EveryKindOfValueFromLeakallocConf) {
  // age implies a final dump: it goes to a scratch directory (and finds nothing 30 s old).
  TempDir d;
  std::string prefix = d.path() + "/p";
  ChildResult r = run_child({"LEAKALLOC_CONF=sample:5,active:off,age:30s,prefix:" + prefix +
                             ",format:heap+pb,unwind:fp,signal:USR2,lg_interval:20,max_depth:32,"
                             "max_stacks:1000,gdump:yes,summary:0,leak_error:true"});
  ASSERT_TRUE(exited_ok(r)) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(r.opts["sample"], "5");
  EXPECT_EQ(r.opts["active"], "false");
  EXPECT_EQ(r.opts["age"], "30000");  // opt.age is uint64_t milliseconds
  EXPECT_EQ(r.opts["prefix"], prefix);
  EXPECT_EQ(r.opts["format"], "heap+pb");
  EXPECT_EQ(r.opts["unwind"], "fp");
  EXPECT_EQ(r.opts["signal"], std::to_string(SIGUSR2));
  EXPECT_EQ(r.opts["lg_interval"], "20");
  EXPECT_EQ(r.opts["max_depth"], "32");
  EXPECT_EQ(r.opts["max_stacks"], "1000");
  EXPECT_EQ(r.opts["gdump"], "true");
  EXPECT_EQ(r.opts["summary"], "false");
  EXPECT_EQ(r.opts["leak_error"], "true");
  // Derived from age: a final dump and interval dumps every age.
  EXPECT_EQ(r.opts["final"], "true");
  EXPECT_EQ(r.opts["interval"], "30000");
}

TEST(ConfEnv, DerivedDefaultsYieldToExplicitValues) {
  TempDir d;
  ChildResult r = run_child({"LEAKALLOC_CONF=final:false,interval:500ms,age:10s,summary:on,prefix:" +
                             d.path() + "/p"});
  ASSERT_TRUE(exited_ok(r)) << r.err;
  EXPECT_EQ(r.opts["summary"], "true");
  EXPECT_EQ(r.opts["age"], "10000");
  EXPECT_EQ(r.opts["final"], "false");
  EXPECT_EQ(r.opts["interval"], "500");
}

TEST(ConfEnv, FileAloneWithCommentsAndNewlines) {
  TempDir d;
  std::string f = d.write("conf", "# leakalloc settings\nsample:4\n  age: 2h   # two hours\n\n"
                                  "prefix:fromfile,format:heap_v2\n");
  ChildResult r = run_child({"LEAKALLOC_CONF_FILE=" + f});
  ASSERT_TRUE(exited_ok(r)) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(r.opts["sample"], "4");
  EXPECT_EQ(r.opts["age"], "7200000");
  EXPECT_EQ(r.opts["prefix"], "fromfile");
  EXPECT_EQ(r.opts["format"], "heap_v2");
}

TEST(ConfEnv, EnvironmentWinsOverTheFileAndTheRestOfTheFileApplies) {
  TempDir d;
  std::string f = d.write("conf", "sample:4\nprefix:fromfile\nage:1s\n");
  ChildResult r = run_child({"LEAKALLOC_CONF=sample:9,age:3s", "LEAKALLOC_CONF_FILE=" + f});
  ASSERT_TRUE(exited_ok(r)) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(r.opts["sample"], "9");
  EXPECT_EQ(r.opts["age"], "3000");
  EXPECT_EQ(r.opts["prefix"], "fromfile");
  // Order in the environment does not matter: the file is always read first.
  ChildResult r2 = run_child({"LEAKALLOC_CONF_FILE=" + f, "LEAKALLOC_CONF=sample:9"});
  ASSERT_TRUE(exited_ok(r2)) << r2.err;
  EXPECT_EQ(r2.opts["sample"], "9");
  EXPECT_EQ(r2.opts["age"], "1000");
}

TEST(ConfEnv, MissingFileWarnsOnceAndTheEnvironmentStillApplies) {
  ChildResult r = run_child({"LEAKALLOC_CONF_FILE=/nonexistent/leakalloc.conf", "LEAKALLOC_CONF=sample:3"});
  ASSERT_TRUE(exited_ok(r)) << r.err;
  auto lines = lines_of(r.err);
  ASSERT_EQ(lines.size(), 1u) << r.err;
  EXPECT_EQ(lines[0].rfind("leakalloc: ", 0), 0u) << lines[0];
  EXPECT_NE(lines[0].find("LEAKALLOC_CONF_FILE"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("/nonexistent/leakalloc.conf"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("no such file"), std::string::npos) << lines[0];
  EXPECT_EQ(r.opts["sample"], "3");
}

TEST(ConfEnv, BadPairInTheEnvironmentWarnsKeepsTheDefaultAndTheRestApplies) {
  ChildResult r = run_child({"LEAKALLOC_CONF=sample:abc,age:5s,unwind:dwarf,max_depth:16"});
  ASSERT_TRUE(exited_ok(r)) << r.err;
  auto lines = lines_of(r.err);
  ASSERT_EQ(lines.size(), 2u) << r.err;
  EXPECT_EQ(lines[0], "leakalloc: LEAKALLOC_CONF: bad value for 'sample': 'abc'; expected an "
                      "integer from 0 to 62; keeping sample:19");
  EXPECT_EQ(lines[1], "leakalloc: LEAKALLOC_CONF: bad value for 'unwind': 'dwarf'; expected "
                      "libunwind or fp; keeping unwind:libunwind");
  EXPECT_EQ(r.opts["sample"], "19");
  EXPECT_EQ(r.opts["unwind"], "libunwind");
  EXPECT_EQ(r.opts["age"], "5000");
  EXPECT_EQ(r.opts["max_depth"], "16");
}

TEST(ConfEnv, BadPairInTheFileNamesTheFile) {
  TempDir d;
  std::string f = d.write("conf", "sample:7\nactive:maybe\n");
  ChildResult r = run_child({"LEAKALLOC_CONF_FILE=" + f});
  ASSERT_TRUE(exited_ok(r)) << r.err;
  auto lines = lines_of(r.err);
  ASSERT_EQ(lines.size(), 1u) << r.err;
  EXPECT_EQ(lines[0], "leakalloc: LEAKALLOC_CONF_FILE: bad value for 'active': 'maybe'; "
                      "expected true or false; keeping active:true");
  EXPECT_EQ(r.opts["sample"], "7");
}

TEST(ConfEnv, VerbosePrintsEveryOption) {
  ChildResult r = run_child({"LEAKALLOC_CONF=verbose:true,sample:3"});
  ASSERT_TRUE(exited_ok(r)) << r.err;
  auto lines = lines_of(r.err);
  ASSERT_EQ(lines.size(), static_cast<size_t>(leakalloc::kOptCount)) << r.err;
  for (int i = 0; i < leakalloc::kOptCount; ++i) {
    std::string want = std::string("leakalloc: ") + leakalloc::kOptionTable[i].key + ":";
    bool found = false;
    for (const std::string& l : lines) found |= l.rfind(want, 0) == 0;
    EXPECT_TRUE(found) << want << "\n" << r.err;
  }
  EXPECT_NE(r.err.find("leakalloc: sample:3  # "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("leakalloc: age:0s (default)"), std::string::npos) << r.err;
  ChildResult quiet = run_child({"LEAKALLOC_CONF=verbose:false,sample:3"});
  EXPECT_EQ(quiet.err, "");
}

// A setgid copy of this executable runs with AT_SECURE set (its effective group differs
// from the real one), which is what the parser checks; this works as root without
// handing the process to another user. Needs root (chgrp) and a filesystem without nosuid.
TEST(ConfEnv, SetgidProgramIgnoresTheEnvironment) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to make a setgid copy";
  struct group* g = getgrnam("nogroup");
  if (g == nullptr) g = getgrnam("nobody");
  if (g == nullptr || g->gr_gid == getgid()) GTEST_SKIP() << "no group to make a setgid copy with";
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  ASSERT_GT(n, 0);
  self[n] = '\0';
  std::string dir(self, strrchr(self, '/') - self);
  struct statvfs vfs;
  ASSERT_EQ(statvfs(dir.c_str(), &vfs), 0);
  if (vfs.f_flag & ST_NOSUID) GTEST_SKIP() << dir << " is mounted nosuid";
  std::string copy_dir = dir + "/setgid-" + std::to_string(getpid());
  ASSERT_EQ(mkdir(copy_dir.c_str(), 0755), 0);
  std::string copy = copy_dir + "/ctl_tree_test";
  {
    int in = open(self, O_RDONLY), out = open(copy.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0755);
    ASSERT_GE(in, 0);
    ASSERT_GE(out, 0);
    char buf[65536];
    ssize_t r;
    while ((r = read(in, buf, sizeof buf)) > 0) ASSERT_EQ(write(out, buf, static_cast<size_t>(r)), r);
    close(in);
    close(out);
  }
  ASSERT_EQ(chown(copy.c_str(), static_cast<uid_t>(-1), g->gr_gid), 0);
  ASSERT_EQ(chmod(copy.c_str(), 02755), 0);
  TempDir d;
  std::string f = d.write("conf", "sample:4\n");
  ChildResult r = run_child({"LEAKALLOC_CONF=sample:3,verbose:true", "LEAKALLOC_CONF_FILE=" + f},
                            copy.c_str());
  unlink(copy.c_str());
  rmdir(copy_dir.c_str());
  ASSERT_TRUE(exited_ok(r)) << r.err;
  EXPECT_EQ(r.err, "leakalloc: ignoring LEAKALLOC_CONF and LEAKALLOC_CONF_FILE in a setuid/setgid program\n");
  EXPECT_EQ(r.opts["sample"], "19");
  EXPECT_EQ(r.opts["verbose"], "false");
}

// ---- the parser in process -----------------------------------------------------------

namespace {

// Saves and restores the running allocator's options around each case.
class ConfParse : public testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < leakalloc::kOptCount; ++i) {
      saved_[i] = leakalloc::g_opt[i];
      saved_explicit_[i] = leakalloc::g_opt_explicit[i];
    }
    memcpy(saved_prefix_, leakalloc::g_opt_prefix, sizeof saved_prefix_);
  }
  void TearDown() override {
    for (int i = 0; i < leakalloc::kOptCount; ++i) {
      leakalloc::set_opt(static_cast<leakalloc::OptId>(i), saved_[i]);
      leakalloc::g_opt_explicit[i] = saved_explicit_[i];
    }
    memcpy(leakalloc::g_opt_prefix, saved_prefix_, sizeof saved_prefix_);
  }
  // Parses `text` from defaults with stderr captured; returns the bad-pair count.
  int parse(const std::string& text) {
    leakalloc::options_reset_defaults();
    fflush(stderr);
    FILE* tmp = tmpfile();
    int saved = dup(2);
    dup2(fileno(tmp), 2);
    int bad = leakalloc::options_parse(text.data(), text.size(), "test");
    dup2(saved, 2);
    close(saved);
    rewind(tmp);
    err_.clear();
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, tmp)) > 0) err_.append(buf, n);
    fclose(tmp);
    return bad;
  }
  std::string formatted(leakalloc::OptId id) {
    char buf[400];
    size_t n = leakalloc::option_format(id, buf, sizeof buf);
    return std::string(buf, n);
  }
  std::string err_;

 private:
  int64_t saved_[leakalloc::kOptCount];
  bool saved_explicit_[leakalloc::kOptCount];
  char saved_prefix_[leakalloc::kPrefixMax];
};

struct BadCase {
  const char* text;
  leakalloc::OptId id;   // kOptCount: unknown key
  const char* key;       // as quoted in the warning
  const char* value;     // as quoted in the warning
  const char* expected;  // what the warning says was expected
};

}  // namespace

TEST_F(ConfParse, EveryBadInputGivesOneWarningAndKeepsTheDefault) {
  using namespace leakalloc;
  std::string long_prefix(300, 'p');
  const BadCase cases[] = {
      {"sample:abc", kOpt_sample, "sample", "abc", "expected an integer from 0 to 62"},
      {"sample:63", kOpt_sample, "sample", "63", "expected an integer from 0 to 62"},
      {"sample:-1", kOpt_sample, "sample", "-1", "expected an integer from 0 to 62"},
      {"sample:99999999999999999999", kOpt_sample, "sample", "99999999999999999999",
       "expected an integer from 0 to 62"},
      {"sample:", kOpt_sample, "sample", "", "expected an integer from 0 to 62"},
      {"sample:1 9", kOpt_sample, "sample", "1 9", "expected an integer from 0 to 62"},
      {"sample:0x10", kOpt_sample, "sample", "0x10", "expected an integer from 0 to 62"},
      {"active:maybe", kOpt_active, "active", "maybe", "expected true or false"},
      {"active:2", kOpt_active, "active", "2", "expected true or false"},
      {"age:5x", kOpt_age, "age", "5x", "expected a duration such as 500ms, 60s, 10m or 2h"},
      {"age:-5", kOpt_age, "age", "-5", "expected a duration"},
      {"age:ms", kOpt_age, "age", "ms", "expected a duration"},
      {"age:1.5s", kOpt_age, "age", "1.5s", "expected a duration"},
      {"age:1000000h", kOpt_age, "age", "1000000h", "expected a duration"},
      {"interval:99999999999999999", kOpt_interval, "interval", "99999999999999999", "expected a duration"},
      {"prefix:", kOpt_prefix, "prefix", "", "expected a non-empty path prefix of at most 255 bytes"},
      {"format:xml", kOpt_format, "format", "xml", "expected heap, heap_v2 or pb, joined by '+'"},
      {"format:heap+", kOpt_format, "format", "heap+", "expected heap, heap_v2 or pb"},
      {"format:+heap", kOpt_format, "format", "+heap", "expected heap, heap_v2 or pb"},
      {"format:heap+xml", kOpt_format, "format", "heap+xml", "expected heap, heap_v2 or pb"},
      {"format:HEAP", kOpt_format, "format", "HEAP", "expected heap, heap_v2 or pb"},
      {"signal:FOO", kOpt_signal, "signal", "FOO", "expected a signal name such as USR2"},
      {"signal:9", kOpt_signal, "signal", "9", "expected a signal name"},
      {"signal:KILL", kOpt_signal, "signal", "KILL", "expected a signal name"},
      {"signal:65", kOpt_signal, "signal", "65", "expected a signal name"},
      {"signal:SIG", kOpt_signal, "signal", "SIG", "expected a signal name"},
      {"unwind:dwarf", kOpt_unwind, "unwind", "dwarf", "expected libunwind or fp"},
      {"max_depth:0", kOpt_max_depth, "max_depth", "0", "expected an integer from 1 to 256"},
      {"max_depth:257", kOpt_max_depth, "max_depth", "257", "expected an integer from 1 to 256"},
      {"max_stacks:15", kOpt_max_stacks, "max_stacks", "15", "expected an integer from 16 to 16777216"},
      {"lg_interval:-2", kOpt_lg_interval, "lg_interval", "-2", "expected an integer from -1 to 62"},
      {"verbose:loud", kOpt_verbose, "verbose", "loud", "expected true or false"},
  };
  for (const BadCase& c : cases) {
    leakalloc::options_reset_defaults();
    std::string def = formatted(c.id);
    SCOPED_TRACE(c.text);
    EXPECT_EQ(parse(c.text), 1);
    auto lines = lines_of(err_);
    ASSERT_EQ(lines.size(), 1u) << err_;
    const std::string& l = lines[0];
    EXPECT_EQ(l.rfind("leakalloc: test: ", 0), 0u) << l;
    EXPECT_NE(l.find(std::string("'") + c.key + "'"), std::string::npos) << l;
    EXPECT_NE(l.find(std::string("'") + c.value + "'"), std::string::npos) << l;
    EXPECT_NE(l.find(c.expected), std::string::npos) << l;
    EXPECT_NE(l.find(std::string("keeping ") + c.key + ":" + def), std::string::npos) << l;
    EXPECT_EQ(leakalloc::opt(c.id), kOptionTable[c.id].def);
    EXPECT_FALSE(g_opt_explicit[c.id]);
  }
  // Too long a prefix: the warning shows the start of the value, elided.
  EXPECT_EQ(parse("prefix:" + long_prefix), 1);
  EXPECT_NE(err_.find("bad value for 'prefix': 'pppppppppppppppppppp"), std::string::npos) << err_;
  EXPECT_NE(err_.find("...'"), std::string::npos) << err_;
  EXPECT_STREQ(g_opt_prefix, "leakalloc");
}

TEST_F(ConfParse, UnknownKeysAndMissingValues) {
  EXPECT_EQ(parse("nosuch:1"), 1);
  EXPECT_EQ(err_, "leakalloc: test: unknown option 'nosuch' (value '1') ignored; run with "
                  "verbose:true to list the options\n");
  EXPECT_EQ(parse("Sample:3"), 1);  // keys are case-sensitive
  EXPECT_NE(err_.find("unknown option 'Sample'"), std::string::npos) << err_;
  EXPECT_EQ(leakalloc::opt(leakalloc::kOpt_sample), 19);
  EXPECT_EQ(parse("sample"), 1);
  EXPECT_EQ(err_, "leakalloc: test: option 'sample' has no value: expected sample:<value> with "
                  "an integer from 0 to 62; keeping the default\n");
  EXPECT_EQ(parse(":5"), 1);
  EXPECT_NE(err_.find("unknown option ''"), std::string::npos) << err_;
  // key=value (issue 24): the message says how to write it.
  EXPECT_EQ(parse("age=60"), 1);
  EXPECT_EQ(err_, "leakalloc: test: 'age=60' ignored: write key:value (age:60)\n");
  EXPECT_EQ(leakalloc::opt(leakalloc::kOpt_age), 0);
  // Control bytes in a message are shown as '?', never written raw to the terminal.
  EXPECT_EQ(parse(std::string("sample:\x1b[31m")), 1);
  EXPECT_NE(err_.find("'?[31m'"), std::string::npos) << err_;
}

TEST_F(ConfParse, TheRestOfTheStringStillApplies) {
  using namespace leakalloc;
  EXPECT_EQ(parse("sample:5,bogus:1,age:2s,active:maybe,verbose:false,max_depth:999,prefix:p"), 3);
  EXPECT_EQ(lines_of(err_).size(), 3u) << err_;
  EXPECT_EQ(opt(kOpt_sample), 5);
  EXPECT_EQ(opt(kOpt_age), 2000);
  EXPECT_EQ(opt(kOpt_active), 1);
  EXPECT_EQ(opt(kOpt_max_depth), 64);
  EXPECT_STREQ(g_opt_prefix, "p");
  // The later of two pairs wins; a bad later one keeps the earlier good value.
  EXPECT_EQ(parse("sample:3,sample:4"), 0);
  EXPECT_EQ(opt(kOpt_sample), 4);
  EXPECT_EQ(parse("sample:3,sample:x"), 1);
  EXPECT_EQ(opt(kOpt_sample), 3);
  EXPECT_NE(err_.find("keeping sample:3"), std::string::npos) << err_;
}

TEST_F(ConfParse, AcceptedSpellings) {
  using namespace leakalloc;
  struct Good {
    const char* text;
    OptId id;
    int64_t value;
  } goods[] = {
      {"sample:0", kOpt_sample, 0},          {" sample : 7 ", kOpt_sample, 7},
      {"sample:62", kOpt_sample, 62},        {"active:yes", kOpt_active, 1},
      {"active:OFF", kOpt_active, 0},        {"active:0", kOpt_active, 0},
      {"active:True", kOpt_active, 1},       {"age:500ms", kOpt_age, 500},
      {"age:60", kOpt_age, 60000},           {"age:2h", kOpt_age, 7200000},
      {"age:10m", kOpt_age, 600000},
      {"age:0", kOpt_age, 0},                {"signal:SIGUSR2", kOpt_signal, SIGUSR2},
      {"signal:usr1", kOpt_signal, SIGUSR1}, {"signal:12", kOpt_signal, 12},
      {"signal:none", kOpt_signal, 0},       {"format:heap_v2+pb", kOpt_format, kFormatHeapV2 | kFormatPb},
      {"format:pb+heap", kOpt_format, kFormatHeap | kFormatPb},
      {"unwind:fp", kOpt_unwind, kUnwindFp}, {"lg_interval:-1", kOpt_lg_interval, -1},
      {"max_stacks:16777216", kOpt_max_stacks, 16777216},
  };
  for (const Good& g : goods) {
    SCOPED_TRACE(g.text);
    EXPECT_EQ(parse(g.text), 0) << err_;
    EXPECT_EQ(err_, "");
    EXPECT_EQ(opt(g.id), g.value);
    EXPECT_TRUE(g_opt_explicit[g.id]);
  }
  // Separators, blank pairs and comments.
  EXPECT_EQ(parse(",,sample:3,,\n\n# all of this is a comment: sample:9\nage:1s # also\r\n"), 0) << err_;
  EXPECT_EQ(opt(kOpt_sample), 3);
  EXPECT_EQ(opt(kOpt_age), 1000);
  // The text ends at a NUL byte even if the length says otherwise.
  EXPECT_EQ(parse(std::string("sample:3\0sample:x", 17)), 0) << err_;
  EXPECT_EQ(opt(kOpt_sample), 3);
}

TEST_F(ConfParse, FormattedValuesParseBackToTheSameValue) {
  using namespace leakalloc;
  const char* texts[] = {"age:1500ms", "age:2h", "age:90s", "signal:10", "signal:40",
                         "format:heap+heap_v2+pb", "prefix:/var/tmp/a b", "lg_interval:-1",
                         "unwind:fp", "active:false"};
  for (const char* t : texts) {
    SCOPED_TRACE(t);
    ASSERT_EQ(parse(t), 0) << err_;
    int64_t values[kOptCount];
    for (int i = 0; i < kOptCount; ++i) values[i] = opt(static_cast<OptId>(i));
    std::string prefix = g_opt_prefix;
    std::string all;
    for (int i = 0; i < kOptCount; ++i)
      all += std::string(kOptionTable[i].key) + ":" + formatted(static_cast<OptId>(i)) + ",";
    ASSERT_EQ(parse(all), 0) << all << "\n" << err_;
    for (int i = 0; i < kOptCount; ++i) EXPECT_EQ(opt(static_cast<OptId>(i)), values[i]) << kOptionTable[i].key;
    EXPECT_EQ(prefix, g_opt_prefix);
  }
}
