// Dump files: names, creation and retention (profile/dump_files.h).
#include "profile/dump_files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>  // RENAME_NOREPLACE
#include <sys/stat.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <initializer_list>

#include "base/base.h"
#include "config/options.h"

namespace leakalloc {
namespace dump {
namespace files {

void PathBuf::clear() {
  n = 0;
  ok = true;
  buf[0] = '\0';
}

void PathBuf::add(const char* s, size_t max) {
  for (; *s != '\0' && max > 0; ++s, --max) {
    if (n + 1 >= sizeof buf) { ok = false; return; }
    buf[n++] = *s;
  }
  buf[n] = '\0';
}

void PathBuf::add_u64(uint64_t v) {
  char tmp[24];
  size_t len = u64_to_dec(v, tmp);
  tmp[len] = '\0';
  add(tmp);
}

const char* suffix_of(int64_t format_bit) {
  switch (format_bit) {
    case kFormatHeap: return ".heap";
    case kFormatHeapV2: return ".heap_v2";
    case kFormatPb: return ".pb.gz";
    default: return "";
  }
}

void auto_name(PathBuf& name, pid_t pid, uint64_t seq, char kind, uint64_t kseq, const char* suffix) {
  name.clear();
  name.add(g_opt_prefix[0] != '\0' ? g_opt_prefix : "leakalloc");
  name.add(".");
  name.add_u64(static_cast<uint64_t>(pid));
  name.add(".");
  name.add_u64(seq);
  char k[2] = {kind, '\0'};
  name.add(".");
  name.add(k);
  name.add_u64(kseq);
  name.add(suffix);
}

namespace {

uint64_t g_seq = 0;
bool g_seq_scanned = false;  // first_free_seq() has run in this image and pid

// Taken names skipped at most in one dump (an open() each); a directory holding more
// files of this pid than that is not what the names are for.
constexpr uint64_t kMaxSeqSkips = uint64_t{1} << 16;

constexpr int kCreateFlags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;

// Parses the decimal number at s; false if there is none or it does not fit.
bool parse_u64(const char*& s, uint64_t* out) {
  uint64_t v = 0;
  const char* start = s;
  for (; *s >= '0' && *s <= '9'; ++s) {
    if (v > (UINT64_MAX - 9) / 10) return false;
    v = v * 10 + static_cast<uint64_t>(*s - '0');
  }
  *out = v;
  return s != start;
}

// One more than the highest <seq> among the files <base>.<pid>.<seq>.<anything> in the
// prefix's directory; 0 if there are none or the directory cannot be read (the claim
// loop still keeps names unique). Reads the directory with getdents64 into a static
// buffer (guarded by the dump lock): opendir() would allocate, and dumps also run
// inside the exit hook and on the caller's thread.
uint64_t first_free_seq(pid_t pid) {
  const char* prefix = g_opt_prefix[0] != '\0' ? g_opt_prefix : "leakalloc";
  const char* slash = nullptr;
  for (const char* c = prefix; *c != '\0'; ++c)
    if (*c == '/') slash = c;
  static PathBuf dir, lead;
  dir.clear();
  if (slash == nullptr) dir.add(".");
  else if (slash == prefix) dir.add("/");
  else dir.add(prefix, static_cast<size_t>(slash - prefix));
  lead.clear();
  lead.add(slash == nullptr ? prefix : slash + 1);
  lead.add(".");
  lead.add_u64(static_cast<uint64_t>(pid));
  lead.add(".");
  if (!dir.ok || !lead.ok) return 0;
  int fd = open(dir.buf, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return 0;
  static char buf[16384];
  uint64_t next = 0;
  for (;;) {
    long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
    if (n <= 0) break;
    for (long off = 0; off < n;) {
      // struct linux_dirent64: u64 ino, s64 off, u16 reclen, u8 type, char name[].
      uint16_t reclen;
      memcpy(&reclen, buf + off + 16, sizeof reclen);
      const char* name = buf + off + 19;
      off += reclen;
      size_t i = 0;
      while (lead.buf[i] != '\0' && name[i] == lead.buf[i]) ++i;
      if (lead.buf[i] != '\0') continue;
      const char* rest = name + i;
      uint64_t seq;
      if (parse_u64(rest, &seq) && *rest == '.' && seq != UINT64_MAX && seq + 1 > next) next = seq + 1;
    }
  }
  close(fd);
  return next;
}

}  // namespace

// Creates the first file of an automatic dump: with g_seq's number, or, where an earlier
// image of this pid (or an older process with the same pid) left that name, the next
// free one. Sets *seq to the number used (and g_seq past it) and `name` to the file's
// name; returns the fd, or -1 with *err set.
int claim_auto_name(PathBuf& name, PathBuf& tmp, pid_t pid, char kind, uint64_t kseq, const char* suffix,
                    uint64_t* seq, int* err) {
  if (!g_seq_scanned) {
    uint64_t next = first_free_seq(pid);
    if (next > g_seq) g_seq = next;
    g_seq_scanned = true;
  }
  for (uint64_t skips = 0;; ++skips) {
    *seq = g_seq++;
    auto_name(name, pid, *seq, kind, kseq, suffix);
    if (!name.ok) {
      *err = ENAMETOOLONG;
      return -1;
    }
    int fd = create(name, tmp);
    if (fd >= 0) {
      struct stat st;
      if (fstatat(AT_FDCWD, name.buf, &st, AT_SYMLINK_NOFOLLOW) != 0) return fd;
      // The final name is taken (a file of an earlier image): the next number.
      close(fd);
      unlink(tmp.buf);
      errno = EEXIST;
    }
    *err = errno;
    if (*err != EEXIST || skips == kMaxSeqSkips) return -1;
  }
}

int create(const PathBuf& name, PathBuf& tmp, bool replace) {
  tmp.clear();
  tmp.add(name.buf);
  if (replace) {
    tmp.add(".");
    tmp.add_u64(static_cast<uint64_t>(getpid()));
  }
  tmp.add(".tmp");
  if (!tmp.ok) {
    errno = ENAMETOOLONG;
    return -1;
  }
  return open(tmp.buf, kCreateFlags, 0600);
}

int publish(const PathBuf& tmp, const PathBuf& name, bool replace) {
  int err = 0;
  if (replace) {
    err = rename(tmp.buf, name.buf) == 0 ? 0 : errno;
    if (err != 0) unlink(tmp.buf);
    return err;
  }
  if (syscall(SYS_renameat2, AT_FDCWD, tmp.buf, AT_FDCWD, name.buf, RENAME_NOREPLACE) == 0) return 0;
  err = errno;
  if (err == EINVAL || err == ENOSYS) {
    // No RENAME_NOREPLACE here: link() does not replace either.
    err = link(tmp.buf, name.buf) == 0 ? 0 : errno;
  }
  unlink(tmp.buf);
  return err;
}

namespace {

// The automatic i and u dumps of this image after each kind's first, oldest first, as
// far as keep:N needs them (kept[] holds up to kKeepMax; one ring per kind).
constexpr size_t kKeepMax = 4096;
struct KeptDump {
  uint64_t seq;
  uint64_t kseq;
  int64_t formats;  // the files of it that this image created
};
struct KeepRing {
  KeptDump kept[kKeepMax];
  size_t oldest;
  size_t count;
};
KeepRing g_keep[2];  // kinds i and u; guarded by the dump lock

void delete_dump(pid_t pid, char kind, const KeptDump& d) {
  PathBuf name;
  for (int64_t bit : {kFormatHeap, kFormatHeapV2, kFormatPb}) {
    if ((d.formats & bit) != 0) {
      auto_name(name, pid, d.seq, kind, d.kseq, suffix_of(bit));
      if (name.ok) unlink(name.buf);  // ENOENT: someone removed it already
    }
    if ((d.formats & (bit << kLostFormatShift)) != 0) {
      char suffix[32] = ".lost";
      cstr_copy(suffix + 5, sizeof suffix - 5, suffix_of(bit));
      auto_name(name, pid, d.seq, kind, d.kseq, suffix);
      if (name.ok) unlink(name.buf);
    }
  }
}

}  // namespace

// Records an automatic dump of kind i or u and deletes what keep:N no longer keeps.
void retain(pid_t pid, char kind, uint64_t seq, uint64_t kseq, int64_t written) {
  int64_t keep = opt(kOpt_keep);
  if (keep <= 0 || kseq == 0 || written == 0) return;  // all kept, or the first
  KeepRing& r = g_keep[kind == 'i' ? 0 : 1];
  size_t limit = static_cast<size_t>(keep) < kKeepMax ? static_cast<size_t>(keep) : kKeepMax;
  while (r.count >= limit) {
    delete_dump(pid, kind, r.kept[r.oldest]);
    r.oldest = (r.oldest + 1) % kKeepMax;
    --r.count;
  }
  r.kept[(r.oldest + r.count) % kKeepMax] = KeptDump{seq, kseq, written};
  ++r.count;
}

// strerror() may allocate (unknown errnos, locales) and is not async-signal-safe, so
// the reasons a dump can fail are spelled here.
const char* errno_text(int e) {
  switch (e) {
    case ENOENT: return "No such file or directory";
    case EACCES: return "Permission denied";
    case EPERM: return "Operation not permitted";
    case EEXIST: return "File exists";
    case ENOTDIR: return "Not a directory";
    case EISDIR: return "Is a directory";
    case ELOOP: return "Too many levels of symbolic links";
    case ENAMETOOLONG: return "File name too long";
    case EROFS: return "Read-only file system";
    case ENOSPC: return "No space left on device";
    case EDQUOT: return "Disk quota exceeded";
    case EFBIG: return "File too large";
    case EIO: return "Input/output error";
    case EMFILE: return "Too many open files";
    case ENFILE: return "Too many open files in system";
    case ENOMEM: return "Cannot allocate memory";
    case EINVAL: return "Invalid argument";
    case EBADF: return "Bad file descriptor";
    case EINTR: return "Interrupted system call";
    case ETXTBSY: return "Text file busy";
    case ENXIO: return "No such device or address";
    case EOVERFLOW: return "Value too large for defined data type";
    default: return nullptr;
  }
}

void report_failure(const char* path, int err) {
  // Once per cause (errno), as the README promises: a full disk or a directory that
  // went away would otherwise print a line at every interval for as long as it lasts.
  static int reported[32];
  static size_t nreported = 0;
  for (size_t i = 0; i < nreported; ++i)
    if (reported[i] == err) return;
  if (nreported < sizeof reported / sizeof reported[0]) reported[nreported++] = err;
  const char* why = errno_text(err);
  if (why != nullptr) log_printf("cannot write dump %s: %s", path, why);
  else log_printf("cannot write dump %s: error %d", path, err);
}

void fork_child() {
  g_seq = 0;
  g_seq_scanned = false;
  for (KeepRing& r : g_keep) r.oldest = r.count = 0;  // the parent's files are not ours
}

}  // namespace files
}  // namespace dump
}  // namespace leakalloc
