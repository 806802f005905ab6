// Dump files: names, creation and retention (keep:N).
//
// Contract. Everything here runs with the dump lock held (profile/dump.cpp), which
// guards the sequence numbers, the retention rings and the static name buffers; nothing
// allocates (names are built in fixed buffers, the directory is read with getdents64).
// The naming rules are described at the top of profile/dump.cpp.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>

namespace leakalloc {
namespace dump {
namespace files {

constexpr size_t kPathMax = 4096 + 64;

// A tiny appender over a fixed buffer; `ok` is false once the name does not fit.
struct PathBuf {
  char buf[kPathMax] = {};
  size_t n = 0;
  bool ok = true;
  void clear();
  // Appends at most `max` bytes of s (all of it by default).
  void add(const char* s, size_t max = SIZE_MAX);
  void add_u64(uint64_t v);
};

// The file suffix of a format bit of opt.format (config/options.h kFormat*).
const char* suffix_of(int64_t format_bit);

// <prefix>.<pid>.<seq>.<kind><kseq><suffix>
void auto_name(PathBuf& name, pid_t pid, uint64_t seq, char kind, uint64_t kseq, const char* suffix);

// Every file is written under a temporary name in its directory, `name` + ".tmp"
// (created O_EXCL|O_NOFOLLOW, 0600), and renamed to `name` once complete (publish), so
// that a dump killed mid-write (kill -9, a full disk) leaves no file under a name the
// readers take: a 16 MB k.heap and a 0-byte k.heap.pb.gz were left before (issue 24).
//
// Creates the first file of an automatic dump under the next free sequence number (its
// final name free too); sets *seq, `name` and `tmp`; returns the temporary file's fd, or
// -1 with *err set.
int claim_auto_name(PathBuf& name, PathBuf& tmp, pid_t pid, char kind, uint64_t kseq, const char* suffix,
                    uint64_t* seq, int* err);
// Creates the temporary file for `name` (sets `tmp`); the fd or -1 with errno set.
// An automatic name's temporary is `name`.tmp; a name the caller chose (prof.dump
// with a path, `replace`) gets `name`.<pid>.tmp, so that two processes dumping to the
// same name do not fail on each other's temporary, and a temporary that a killed
// process left does not block the next process's dumps.
int create(const PathBuf& name, PathBuf& tmp, bool replace = false);
// Gives the complete temporary file its final name; 0 or an errno. The temporary file
// is removed either way. An automatic name never replaces a file there (renameat2
// RENAME_NOREPLACE, or link and unlink where the file system has no such rename). A
// name the caller chose (`replace`) is replaced atomically, as jemalloc's prof.dump
// replaces an existing file: rename() swaps the directory entry, so a reader sees the
// old file or the new one, never a mix, and a symlink at the name is itself replaced,
// never followed (the file it pointed to stays as it was).
int publish(const PathBuf& tmp, const PathBuf& name, bool replace = false);

// Records an automatic dump of kind i or u and deletes the files of the dumps keep:N no
// longer keeps. `written`: the FormatBits of the files it wrote, and those of its lost
// dump (reach:true, the ".lost" files) shifted left by kLostFormatShift.
constexpr int kLostFormatShift = 8;
void retain(pid_t pid, char kind, uint64_t seq, uint64_t kseq, int64_t written);

// strerror() may allocate and is not async-signal-safe: the reasons a dump can fail,
// spelled here; null for an errno without a text.
const char* errno_text(int e);
// One "leakalloc: cannot write dump PATH: REASON" line, the first time for each reason
// (errno) in this process.
void report_failure(const char* path, int err);

// A fork child starts its sequence numbers again and owns none of the parent's files.
void fork_child();

}  // namespace files
}  // namespace dump
}  // namespace leakalloc
