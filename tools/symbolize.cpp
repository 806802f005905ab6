// Offline symbolisation with elfutils libdwfl; see symbolize.h for the contract.
#include "tools/symbolize.h"

#include <cxxabi.h>
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwelf.h>
#include <elfutils/libdwfl.h>
#include <elfutils/debuginfod.h>
#include <dirent.h>
#include <fcntl.h>
#include <gelf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <set>

namespace leakalloc_tool {

namespace {

int find_debuginfo(Dwfl_Module* mod, void** userdata, const char* modname, Dwarf_Addr base,
                   const char* file_name, const char* debuglink_file, GElf_Word debuglink_crc,
                   char** debuginfo_file_name);

char* g_debuginfo_path = nullptr;  // unused: find_debuginfo() searches itself

const Dwfl_Callbacks kOfflineCallbacks = {
    dwfl_build_id_find_elf,
    find_debuginfo,
    dwfl_offline_section_address,
    &g_debuginfo_path,
};

// Whether an ELF object may be the one whose GNU build ID a dump names as `want` (hex,
// either case). A build ID in another form (Go's, in profiles of Go programs) is not
// checked.
bool build_id_is(Elf* elf, const std::string& want) {
  if (want.size() % 2 != 0 || want.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) return true;
  const void* id = nullptr;
  ssize_t n = dwelf_elf_gnu_build_id(elf, &id);
  if (n <= 0 || static_cast<size_t>(n) * 2 != want.size()) return false;
  static const char kHex[] = "0123456789abcdef";
  const unsigned char* b = static_cast<const unsigned char*>(id);
  for (ssize_t i = 0; i < n; ++i)
    if (std::tolower(want[2 * i]) != kHex[b[i] >> 4] || std::tolower(want[2 * i + 1]) != kHex[b[i] & 15]) return false;
  return true;
}

// The load bias the object had in the dumped process: the mapping at `start` holds file
// offset `offset`, which the PT_LOAD segment containing it places at
// p_vaddr + (offset - p_offset) before relocation. A file whose build ID differs from the
// one the dump names (`m.build_id`) is not the object that was mapped: *other is set and
// no bias is given, so that its symbols are not put on the dump's addresses.
bool load_bias(const std::string& path, const Mapping& m, uint64_t* bias, bool* readable, bool* other) {
  *readable = false;
  *other = false;
  // A dump names files by path; only a regular file may be opened (a FIFO or a device
  // named by a damaged or hostile dump would block or mislead).
  struct stat st;
  if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return false;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return false;
  elf_version(EV_CURRENT);
  Elf* elf = elf_begin(fd, ELF_C_READ_MMAP, nullptr);
  bool ok = false;
  size_t n = 0;
  if (elf && elf_kind(elf) == ELF_K_ELF && elf_getphdrnum(elf, &n) == 0) {
    *readable = true;
    if (!m.build_id.empty() && !build_id_is(elf, m.build_id)) {
      *other = true;
      n = 0;  // no segment: no bias
    }
    GElf_Ehdr eh;
    if (gelf_getehdr(elf, &eh) && eh.e_type == ET_EXEC) {
      *bias = 0;
      ok = true;
    }
    for (size_t i = 0; i < n && !ok; ++i) {
      GElf_Phdr ph;
      if (!gelf_getphdr(elf, static_cast<int>(i), &ph) || ph.p_type != PT_LOAD) continue;
      uint64_t seg_page = ph.p_offset & ~uint64_t{0xfff};
      bool holds = seg_page == m.offset ||
                   (m.offset >= ph.p_offset && m.offset < ph.p_offset + ph.p_filesz);
      if (!holds) continue;
      if (m.executable != ((ph.p_flags & PF_X) != 0) && seg_page != m.offset) continue;
      *bias = m.start - m.offset + ph.p_offset - ph.p_vaddr;
      ok = true;
    }
  }
  if (elf) elf_end(elf);
  close(fd);
  return ok;
}

// The mangled name of a function's DIE (through DW_AT_abstract_origin and
// DW_AT_specification), or its plain name (C) when there is none.
std::string die_linkage_name(Dwarf_Die* die) {
  Dwarf_Attribute attr;
  const char* linkage = nullptr;
  if (dwarf_attr_integrate(die, DW_AT_linkage_name, &attr) ||
      dwarf_attr_integrate(die, DW_AT_MIPS_linkage_name, &attr))
    linkage = dwarf_formstring(&attr);
  if (linkage) return linkage;
  const char* name = dwarf_diename(die);
  return name ? name : "";
}

std::string die_name(Dwarf_Die* die) { return demangle(die_linkage_name(die)); }

// A source file as the line table names it, made absolute against the unit's
// DW_AT_comp_dir when it is relative (ccache's base_dir and -fdebug-prefix-map leave
// "../../src/x.c"), with "." and ".." taken out by name, as a report wants to show it.
std::string source_path(const char* file, Dwarf_Die* cudie) {
  std::string path = file;
  if (!path.empty() && path[0] != '/' && cudie != nullptr) {
    Dwarf_Attribute attr;
    const char* dir = dwarf_formstring(dwarf_attr(cudie, DW_AT_comp_dir, &attr));
    if (dir != nullptr && dir[0] == '/') path = std::string(dir) + "/" + path;
  }
  if (path.empty() || path[0] != '/') return path;
  std::vector<std::string> parts;
  for (size_t at = 1; at <= path.size();) {
    size_t end = path.find('/', at);
    if (end == std::string::npos) end = path.size();
    std::string part = path.substr(at, end - at);
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!part.empty() && part != ".") {
      parts.push_back(part);
    }
    at = end + 1;
  }
  std::string out;
  for (const std::string& part : parts) out += "/" + part;
  return out.empty() ? "/" : out;
}

}  // namespace

namespace {

void replace_all(std::string* s, const std::string& from, const std::string& to) {
  for (size_t at = s->find(from); at != std::string::npos; at = s->find(from, at + to.size()))
    s->replace(at, from.size(), to);
}

// Position of the '(' that opens the parameter list ending the name, or npos.
size_t params_start(const std::string& s) {
  size_t end = s.size();
  // Trailing qualifiers of a member function: "() const", "() &&".
  for (const char* q : {" const", " volatile", " &&", " &"})
    while (end >= std::strlen(q) && s.compare(end - std::strlen(q), std::strlen(q), q) == 0) end -= std::strlen(q);
  if (end == 0 || s[end - 1] != ')') return std::string::npos;
  int depth = 0;
  for (size_t i = end; i-- > 0;) {
    if (s[i] == ')') ++depth;
    else if (s[i] == '(' && --depth == 0) {
      // "operator()(int)": the first "()" is part of the name.
      if (i >= 8 && s.compare(i - 8, 8, "operator") == 0) return std::string::npos;
      return i;
    }
  }
  return std::string::npos;
}

}  // namespace

// Readable C++ names, as pprof shows them: no parameter list, no return type of a
// function template, std::string for the basic_string it stands for. The file and line
// next to the name say which overload it was.
std::string simplify_function(const std::string& full) {
  std::string s = full;
  // GCC's clones ("f(int) [clone .isra.0] [clone .cold]") keep their suffixes, after
  // the simplified name: they say which copy of the code ran.
  std::string clones;
  for (size_t at; s.size() > 1 && s.back() == ']' && (at = s.rfind(" [clone ")) != std::string::npos;) {
    clones = s.substr(at) + clones;
    s.resize(at);
  }
  if (!clones.empty()) return simplify_function(s) + clones;
  replace_all(&s, "std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >", "std::string");
  replace_all(&s, "std::__cxx11::", "std::");
  replace_all(&s, "std::string >", "std::string>");
  size_t p = params_start(s);
  if (p != std::string::npos && p > 0) s.resize(p);
  // A template function's return type comes first, separated by a space at depth 0.
  int depth = 0;
  size_t cut = std::string::npos;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '<' || c == '(') ++depth;
    else if ((c == '>' || c == ')') && depth > 0) --depth;
    else if (c == ' ' && depth == 0) {
      // "operator new", "operator delete[]": part of the name.
      if (i >= 8 && s.compare(i - 8, 8, "operator") == 0) continue;
      cut = i;
    }
  }
  if (cut != std::string::npos && cut + 1 < s.size()) s = s.substr(cut + 1);
  return s.empty() ? full : s;
}

std::string demangle(const std::string& versioned) {
  // ELF symbol versions ("__libc_start_main@@GLIBC_2.34") are noise in a report.
  std::string name = versioned.substr(0, versioned.find('@'));
  if (name.empty()) name = versioned;
  if (name.compare(0, 2, "_Z") != 0) return name;
  int status = 0;
  char* out = abi::__cxa_demangle(name.c_str(), nullptr, nullptr, &status);
  if (status != 0 || !out) return name;
  std::string s(out);
  std::free(out);
  return s;
}

struct Symbolizer::Impl {
  Dwfl* dwfl = nullptr;
  std::vector<std::string> debug_dirs = debug_search_dirs();
  debuginfod_client* debuginfod = nullptr;
  bool debuginfod_tried = false;
  std::vector<std::string> debug_found;  // "object -> debug file (how)"
  ~Impl() {
    if (dwfl) dwfl_end(dwfl);
    if (debuginfod) debuginfod_end(debuginfod);
  }

  // libdebuginfod's client, once DEBUGINFOD_URLS names a server; null otherwise.
  debuginfod_client* client() {
    const char* urls = std::getenv("DEBUGINFOD_URLS");
    if (urls == nullptr || *urls == '\0') return nullptr;
    if (!debuginfod_tried) {
      debuginfod_tried = true;
      debuginfod = debuginfod_begin();
    }
    return debuginfod;
  }

  std::string executable_from_debuginfod(const Mapping& m, uint64_t* bias);
};

namespace {
// The non-empty entries of a colon-separated list of directories.
std::vector<std::string> split_dirs(const std::string& s, std::vector<std::string> dirs = {}) {
  for (size_t at = 0; at <= s.size();) {
    size_t end = s.find(':', at);
    if (end == std::string::npos) end = s.size();
    if (end > at) dirs.push_back(s.substr(at, end - at));
    at = end + 1;
  }
  return dirs;
}
}  // namespace

std::vector<std::string> debug_search_dirs() {
  const char* env = std::getenv("LEAKALLOC_DEBUG_DIRS");
  return split_dirs(env != nullptr && *env != '\0' ? env : "/usr/lib/debug");
}

namespace {

// Whether the ELF file at `path` has DWARF (a .debug_info section with contents) and,
// when `id` is given, that GNU build id: a separate debug file must be of the very build.
bool debug_file_matches(int fd, const unsigned char* id, int id_len) {
  elf_version(EV_CURRENT);
  Elf* elf = elf_begin(fd, ELF_C_READ_MMAP, nullptr);
  if (!elf) return false;
  bool ok = false;
  size_t shstrndx = 0;
  if (elf_kind(elf) == ELF_K_ELF && elf_getshdrstrndx(elf, &shstrndx) == 0) {
    for (Elf_Scn* scn = nullptr; (scn = elf_nextscn(elf, scn)) != nullptr;) {
      GElf_Shdr sh;
      if (!gelf_getshdr(scn, &sh)) continue;
      const char* name = elf_strptr(elf, shstrndx, sh.sh_name);
      if (name && std::strcmp(name, ".debug_info") == 0 && sh.sh_type != SHT_NOBITS && sh.sh_size > 0) ok = true;
    }
    if (ok && id_len > 0) {
      const void* got = nullptr;
      ssize_t n = dwelf_elf_gnu_build_id(elf, &got);
      ok = n == id_len && std::memcmp(got, id, static_cast<size_t>(n)) == 0;
    }
  }
  elf_end(elf);
  return ok;
}

int open_debug_candidate(const std::string& path, const unsigned char* id, int id_len) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return -1;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return -1;
  if (debug_file_matches(fd, id, id_len)) return fd;
  close(fd);
  return -1;
}

// libdwfl calls this when an object's own file has no DWARF. Looks where gdb looks, in
// gdb's order: DIR/.build-id/xx/rest.debug for each debug directory (LEAKALLOC_DEBUG_DIRS,
// default /usr/lib/debug, where Debian's -dbgsym packages install), then the
// .gnu_debuglink name beside the object, in its .debug/ subdirectory and under each
// debug directory plus the object's directory; last, debuginfod by build id when
// DEBUGINFOD_URLS is set (through libdebuginfod, with its cache and timeouts). A file is
// taken only with DWARF and, when the object has a build id, the same one.
// libdwfl's own dwfl_standard_find_debuginfo() would do the local part too, but it
// also asks debuginfod by itself (a dlopen'd libdebuginfod), with no way to say which
// file came from where.
int find_debuginfo(Dwfl_Module* mod, void** userdata, const char* modname, Dwarf_Addr base,
                   const char* file_name, const char* debuglink_file, GElf_Word debuglink_crc,
                   char** debuginfo_file_name) {
  Symbolizer::Impl* self = userdata != nullptr ? static_cast<Symbolizer::Impl*>(*userdata) : nullptr;
  if (self == nullptr) return -1;
  const unsigned char* id = nullptr;
  GElf_Addr id_vaddr = 0;
  int id_len = dwfl_module_build_id(mod, &id, &id_vaddr);
  if (id_len < 0) id_len = 0;
  std::string object = file_name != nullptr ? file_name : modname != nullptr ? modname : "";
  auto take = [&](int fd, const std::string& path, const char* how) {
    *debuginfo_file_name = strdup(path.c_str());
    self->debug_found.push_back(object + " -> " + path + " (" + how + ")");
    return fd;
  };
  static const char kHex[] = "0123456789abcdef";
  if (id_len >= 2) {
    std::string hex;
    for (int i = 0; i < id_len; ++i) {
      hex += kHex[id[i] >> 4];
      hex += kHex[id[i] & 15];
    }
    for (const std::string& dir : self->debug_dirs) {
      std::string path = dir + "/.build-id/" + hex.substr(0, 2) + "/" + hex.substr(2) + ".debug";
      int fd = open_debug_candidate(path, id, id_len);
      if (fd >= 0) return take(fd, path, ".build-id");
    }
  }
  if (debuglink_file != nullptr && *debuglink_file != '\0' && std::strchr(debuglink_file, '/') == nullptr) {
    std::string dir = object.substr(0, object.rfind('/') == std::string::npos ? 0 : object.rfind('/'));
    std::vector<std::string> candidates = {dir + "/" + debuglink_file, dir + "/.debug/" + debuglink_file};
    for (const std::string& d : self->debug_dirs) candidates.push_back(d + dir + "/" + debuglink_file);
    for (const std::string& path : candidates) {
      if (path == object) continue;
      int fd = open_debug_candidate(path, id, id_len);
      if (fd >= 0) return take(fd, path, ".gnu_debuglink");
    }
  }
  (void)base;
  (void)debuglink_crc;  // the build id, when there is one, is the stronger check
  if (id_len > 0) {
    if (debuginfod_client* client = self->client()) {
      char* path = nullptr;
      int fd = debuginfod_find_debuginfo(client, id, id_len, &path);
      if (fd >= 0) {
        std::string p = path != nullptr ? path : "";
        std::free(path);
        if (debug_file_matches(fd, id, id_len)) return take(fd, p, "debuginfod");
        close(fd);
      }
    }
  }
  return -1;
}

}  // namespace

std::vector<std::string> binary_search_path() {
  std::vector<std::string> dirs;
  const char* env = std::getenv("PPROF_BINARY_PATH");
  if (env == nullptr) {
    const char* home = std::getenv("HOME");
    if (home != nullptr && *home != '\0') dirs.push_back(std::string(home) + "/pprof/binaries");
    return dirs;
  }
  return split_dirs(env, std::move(dirs));
}

namespace {

// A mapping's file name without the " (deleted)" that the maps line of a file replaced
// after it was mapped ends in.
std::string without_deleted(std::string path) {
  const std::string deleted = " (deleted)";
  if (path.size() > deleted.size() && path.compare(path.size() - deleted.size(), deleted.size(), deleted) == 0)
    path.resize(path.size() - deleted.size());
  return path;
}

// The files symbolize.h lists for one directory of the search path, in that order.
std::vector<std::string> search_candidates(const std::string& dir, const Mapping& m) {
  std::vector<std::string> out;
  std::string path = without_deleted(m.path);
  std::string name = path.substr(path.rfind('/') + 1);
  std::string id;
  for (char c : m.build_id) id += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  bool hex = id.size() >= 4 && id.size() % 2 == 0 && id.find_first_not_of("0123456789abcdef") == std::string::npos;
  std::string rel = path[0] == '/' ? path : "/" + path;
  if (hex) {
    out.push_back(dir + "/" + id + "/" + name);
    if (DIR* d = opendir((dir + "/" + id).c_str())) {
      std::vector<std::string> any;
      while (struct dirent* e = readdir(d))
        if (e->d_name[0] != '.' && e->d_name != name) any.push_back(dir + "/" + id + "/" + e->d_name);
      closedir(d);
      std::sort(any.begin(), any.end());
      out.insert(out.end(), any.begin(), any.end());
    }
    out.push_back(dir + rel + "/" + id);
    out.push_back(dir + "/" + id.substr(0, 2) + "/" + id.substr(2) + ".debug");
  }
  out.push_back(dir + "/" + name);
  out.push_back(dir + rel);
  return out;
}

}  // namespace

Symbolizer::Symbolizer(const Profile& prof, const std::string& binary_override, const std::string& root,
                       const std::vector<std::string>& search)
    : impl_(new Impl), prof_(prof) {
  impl_->dwfl = dwfl_begin(&kOfflineCallbacks);
  if (!impl_->dwfl) return;
  dwfl_report_begin(impl_->dwfl);
  std::set<std::string> done;
  // Executable mappings first: they pin the bias of the text segment exactly.
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t i = 0; i < prof.mappings.size(); ++i) {
      const Mapping& m = prof.mappings[i];
      if (m.executable != (pass == 0) || done.count(m.path)) continue;
      std::string file = m.path[0] == '/' ? root + m.path : m.path;
      if (i == 0 && !binary_override.empty()) file = binary_override;
      if (m.path == prof.mappings[0].path && !binary_override.empty()) file = binary_override;
      file = without_deleted(file);
      uint64_t bias = 0;
      bool readable = false, other = false;
      bool overridden = !binary_override.empty() && m.path == prof.mappings[0].path;
      // A dump that names the build id can take a file of the search path before the one
      // at the original path, as go tool pprof does: that is how a user points at the
      // unstripped build of a program deployed stripped (same build id). Without a build
      // id a name is no proof of identity, so the original path stays first.
      auto from_search = [&]() {
        for (size_t d = 0; d < search.size() && !overridden; ++d)
          for (const std::string& c : search_candidates(search[d], m)) {
            bool r = false, o = false;
            if (c != file && load_bias(c, m, &bias, &r, &o)) return c;
          }
        return std::string();
      };
      std::string found = m.build_id.empty() ? std::string() : from_search();
      if (found.empty() && !load_bias(file, m, &bias, &readable, &other)) {
        if (readable && !other) continue;  // this mapping is not in the file; another one may be
        // Missing, or another build: the search path may hold the object. A file found
        // there must have the dump's build id (load_bias refuses it otherwise).
        if (m.build_id.empty()) found = from_search();
        // Last, the executable itself from debuginfod, by build id (a program deleted or
        // never copied off the host the dump came from).
        if (found.empty() && !readable && !overridden) found = impl_->executable_from_debuginfod(m, &bias);
        if (found.empty()) {
          done.insert(m.path);
          (other ? replaced_ : missing_).push_back(file);
          continue;
        }
      }
      if (!found.empty()) {
        found_.push_back(m.path + " -> " + found);
        file = found;
      }
      done.insert(m.path);
      Dwfl_Module* mod = dwfl_report_elf(impl_->dwfl, m.path.c_str(), file.c_str(), -1, bias, true);
      // find_debuginfo() reaches this Symbolizer through the module's user data.
      void** userdata = nullptr;
      if (mod != nullptr && dwfl_module_info(mod, &userdata, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr) &&
          userdata != nullptr)
        *userdata = impl_.get();
    }
  }
  dwfl_report_end(impl_->dwfl, nullptr, nullptr);
}

std::string Symbolizer::Impl::executable_from_debuginfod(const Mapping& m, uint64_t* bias) {
  std::string hex = m.build_id;
  if (hex.size() < 4 || hex.size() % 2 != 0 || hex.find_first_not_of("0123456789abcdef") != std::string::npos)
    return "";
  debuginfod_client* c = client();
  if (c == nullptr) return "";
  std::vector<unsigned char> id(hex.size() / 2);
  for (size_t i = 0; i < id.size(); ++i) id[i] = static_cast<unsigned char>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
  char* path = nullptr;
  int fd = debuginfod_find_executable(c, id.data(), static_cast<int>(id.size()), &path);
  if (fd < 0) return "";
  close(fd);
  std::string p = path != nullptr ? path : "";
  std::free(path);
  bool readable = false, other = false;
  if (p.empty() || !load_bias(p, m, bias, &readable, &other)) return "";
  debug_found.push_back(without_deleted(m.path) + " -> " + p + " (the executable, from debuginfod)");
  return p;
}

Symbolizer::~Symbolizer() = default;

const std::vector<std::string>& Symbolizer::debug_found() const {
  // libdwfl looks for debug files lazily, on the first lookup in each object.
  return impl_->debug_found;
}

const std::vector<Frame>& Symbolizer::frames(uint64_t pc) {
  auto it = cache_.find(pc);
  if (it != cache_.end()) return it->second;
  return cache_.emplace(pc, resolve(pc)).first->second;
}

std::vector<Frame> Symbolizer::resolve(uint64_t pc) {
  std::vector<Frame> out;
  Frame base;
  for (const Mapping& m : prof_.mappings) {
    if (pc >= m.start && pc < m.limit) {
      base.module = m.path;
      base.module_offset = pc - m.start + m.offset;
      break;
    }
  }

  // A pprof file that already carries names (e.g. one `go tool pprof -proto` wrote).
  auto emb = prof_.embedded.find(pc);
  if (emb != prof_.embedded.end()) {
    for (const EmbeddedFrame& e : emb->second) {
      Frame f = base;
      f.function = demangle(e.function);
      f.system_name = e.function;
      f.inlined = &e != &emb->second.back();
      f.file = e.file;
      f.line = static_cast<int>(e.line);
      out.push_back(f);
    }
    if (!out.empty()) return out;
  }

  Dwfl_Module* mod = impl_->dwfl ? dwfl_addrmodule(impl_->dwfl, pc) : nullptr;
  if (!mod) {
    out.push_back(base);
    return out;
  }
  const char* sym = dwfl_module_addrname(mod, pc);
  Frame leaf = base;
  // libdwfl hands out the compilation unit whose range starts last before pc even when
  // that range ends before it (code without debug info, such as _start, right after a
  // unit's code), and then that unit's last line: only a unit that covers pc counts.
  Dwarf_Addr bias = 0;
  Dwarf_Die* cudie = dwfl_module_addrdie(mod, pc, &bias);
  if (cudie && dwarf_haspc(cudie, pc - bias) <= 0) cudie = nullptr;
  Dwfl_Line* line = cudie ? dwfl_module_getsrc(mod, pc) : nullptr;
  if (line) {
    int lineno = 0;
    const char* src = dwfl_lineinfo(line, nullptr, &lineno, nullptr, nullptr, nullptr);
    if (src) leaf.file = source_path(src, cudie);
    leaf.line = lineno;
  }

  // The chain of functions at pc, innermost first. dwarf_getscopes() finds the innermost
  // scope, but past the first inlined_subroutine it follows that function's *abstract*
  // definition (where it was written), not where it was inlined; the nesting of the code
  // at pc is what dwarf_getscopes_die() returns from that innermost scope. Each
  // inlined_subroutine names the function inlined; its DW_AT_call_file/line is the
  // position in the next function out, which is that frame's line.
  Dwarf_Die* scopes = nullptr;
  int nscopes = cudie ? dwarf_getscopes(cudie, pc - bias, &scopes) : 0;
  Dwarf_Die* chain = nullptr;
  int nchain = nscopes > 0 ? dwarf_getscopes_die(&scopes[0], &chain) : 0;
  std::free(scopes);
  Dwarf_Files* files = nullptr;
  size_t nfiles = 0;
  if (cudie && dwarf_getsrcfiles(cudie, &files, &nfiles) != 0) files = nullptr;
  Frame cur = leaf;
  bool outermost = false;
  for (int i = 0; i < nchain; ++i) {
    int tag = dwarf_tag(&chain[i]);
    if (tag == DW_TAG_subprogram) {
      outermost = true;
      break;
    }
    if (tag != DW_TAG_inlined_subroutine) continue;
    cur.function = die_name(&chain[i]);
    cur.system_name = die_linkage_name(&chain[i]);
    cur.inlined = true;
    out.push_back(cur);
    Frame caller = base;
    Dwarf_Attribute attr;
    Dwarf_Word file_idx = 0, call_line = 0;
    if (files && dwarf_formudata(dwarf_attr(&chain[i], DW_AT_call_file, &attr), &file_idx) == 0 && file_idx < nfiles) {
      const char* f = dwarf_filesrc(files, file_idx, nullptr, nullptr);
      if (f) caller.file = source_path(f, cudie);
    }
    if (dwarf_formudata(dwarf_attr(&chain[i], DW_AT_call_line, &attr), &call_line) == 0)
      caller.line = static_cast<int>(call_line);
    cur = caller;
  }
  // The function that holds the code: its ELF symbol names it as the linker saw it,
  // clone suffix included ("[clone .isra.0]"); the DWARF name only when there is none.
  if (sym) {
    cur.system_name = sym;
    cur.system_name = cur.system_name.substr(0, cur.system_name.find('@'));
    cur.function = demangle(sym);
  } else if (outermost) {
    for (int i = 0; i < nchain; ++i)
      if (dwarf_tag(&chain[i]) == DW_TAG_subprogram) {
        cur.function = die_name(&chain[i]);
        cur.system_name = die_linkage_name(&chain[i]);
        break;
      }
  }
  std::free(chain);
  out.push_back(cur);
  return out;
}

}  // namespace leakalloc_tool
