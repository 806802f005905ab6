// Formatting without malloc: a writer over a caller's buffer that write(2)s to a file
// descriptor, the library's one-line messages on stderr, and string helpers.
//
// Contract: nothing here calls malloc; the helpers are async-signal-safe, and so is
// FdWriter over a stack buffer.
#pragma once

#include <cstddef>
#include <cstdint>

namespace leakalloc {

// Formats into a caller-provided buffer and write(2)s it to a file descriptor.
// Used by every message and dump writer: it never allocates.
class FdWriter {
 public:
  FdWriter(int fd, char* buf, size_t cap) : fd_(fd), buf_(buf), cap_(cap) {}
  ~FdWriter() { flush(); }
  FdWriter& str(const char* s);
  FdWriter& str(const char* s, size_t n);
  FdWriter& ch(char c);
  FdWriter& u64(uint64_t v);
  FdWriter& i64(int64_t v);
  FdWriter& hex(uint64_t v);  // lower-case, with 0x
  FdWriter& fixed(double v, int decimals);
  bool flush();
  bool failed() const { return failed_; }
  int error() const { return err_; }
  uint64_t written() const { return total_; }

 private:
  int fd_;
  char* buf_;
  size_t cap_;
  size_t len_ = 0;
  uint64_t total_ = 0;
  bool failed_ = false;
  int err_ = 0;
};

// "leakalloc: " + message on stderr, one write(2), no allocation.
void log_message(const char* msg);
// Formats the message with a tiny printf subset: %s %d %u %zu %lu %llu %p %x %c %%.
void log_printf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// Async-signal-safe integer/string helpers.
size_t u64_to_dec(uint64_t v, char* out);  // returns length, no NUL
size_t cstr_len(const char* s);
bool cstr_eq(const char* a, const char* b);
void cstr_copy(char* dst, size_t cap, const char* src);

}  // namespace leakalloc
