#include "base/format.h"

#include <errno.h>
#include <stdarg.h>
#include <unistd.h>

namespace leakalloc {

size_t cstr_len(const char* s) {
  size_t n = 0;
  while (s[n] != '\0') ++n;
  return n;
}

bool cstr_eq(const char* a, const char* b) {
  while (*a != '\0' && *a == *b) { ++a; ++b; }
  return *a == *b;
}

void cstr_copy(char* dst, size_t cap, const char* src) {
  if (cap == 0) return;
  size_t i = 0;
  for (; i + 1 < cap && src[i] != '\0'; ++i) dst[i] = src[i];
  dst[i] = '\0';
}

size_t u64_to_dec(uint64_t v, char* out) {
  char tmp[20];
  size_t n = 0;
  do { tmp[n++] = static_cast<char>('0' + v % 10); v /= 10; } while (v != 0);
  for (size_t i = 0; i < n; ++i) out[i] = tmp[n - 1 - i];
  return n;
}

FdWriter& FdWriter::str(const char* s) { return str(s, cstr_len(s)); }

FdWriter& FdWriter::str(const char* s, size_t n) {
  while (n > 0) {
    if (len_ == cap_ && !flush()) return *this;
    size_t take = cap_ - len_ < n ? cap_ - len_ : n;
    for (size_t i = 0; i < take; ++i) buf_[len_ + i] = s[i];
    len_ += take; s += take; n -= take;
  }
  return *this;
}

FdWriter& FdWriter::ch(char c) { return str(&c, 1); }

FdWriter& FdWriter::u64(uint64_t v) {
  char tmp[24];
  return str(tmp, u64_to_dec(v, tmp));
}

FdWriter& FdWriter::i64(int64_t v) {
  if (v < 0) { ch('-'); return u64(0 - static_cast<uint64_t>(v)); }
  return u64(static_cast<uint64_t>(v));
}

FdWriter& FdWriter::hex(uint64_t v) {
  char tmp[18];
  size_t n = 0;
  do { tmp[n++] = "0123456789abcdef"[v & 15]; v >>= 4; } while (v != 0);
  str("0x", 2);
  for (size_t i = 0; i < n; ++i) ch(tmp[n - 1 - i]);
  return *this;
}

FdWriter& FdWriter::fixed(double v, int decimals) {
  if (v < 0) { ch('-'); v = -v; }
  uint64_t scale = 1;
  for (int i = 0; i < decimals; ++i) scale *= 10;
  uint64_t whole = static_cast<uint64_t>(v);
  uint64_t frac = static_cast<uint64_t>((v - static_cast<double>(whole)) * static_cast<double>(scale) + 0.5);
  if (frac >= scale) { ++whole; frac -= scale; }
  u64(whole);
  if (decimals > 0) {
    ch('.');
    char tmp[24];
    size_t n = u64_to_dec(frac, tmp);
    for (size_t i = n; i < static_cast<size_t>(decimals); ++i) ch('0');
    str(tmp, n);
  }
  return *this;
}

bool FdWriter::flush() {
  size_t off = 0;
  while (off < len_ && !failed_) {
    ssize_t w = ::write(fd_, buf_ + off, len_ - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      failed_ = true;
      err_ = errno;
      break;
    }
    if (w == 0) { failed_ = true; err_ = ENOSPC; break; }
    off += static_cast<size_t>(w);
  }
  total_ += off;
  len_ = 0;
  return !failed_;
}

namespace {
void vformat(FdWriter& w, const char* fmt, va_list ap) {
  for (const char* p = fmt; *p != '\0'; ++p) {
    if (*p != '%') { w.ch(*p); continue; }
    ++p;
    int longs = 0;
    bool size_t_arg = false;
    while (*p == 'l') { ++longs; ++p; }
    if (*p == 'z') { size_t_arg = true; ++p; }
    switch (*p) {
      case 's': { const char* s = va_arg(ap, const char*); w.str(s != nullptr ? s : "(null)"); break; }
      case 'c': w.ch(static_cast<char>(va_arg(ap, int))); break;
      case 'd': {
        int64_t v = longs > 0 ? va_arg(ap, long) : va_arg(ap, int);
        w.i64(v);
        break;
      }
      case 'u': {
        uint64_t v = size_t_arg ? va_arg(ap, size_t)
                   : longs > 0 ? va_arg(ap, unsigned long) : va_arg(ap, unsigned int);
        w.u64(v);
        break;
      }
      case 'x': {
        uint64_t v = size_t_arg ? va_arg(ap, size_t)
                   : longs > 0 ? va_arg(ap, unsigned long) : va_arg(ap, unsigned int);
        w.hex(v);
        break;
      }
      case 'p': w.hex(reinterpret_cast<uintptr_t>(va_arg(ap, void*))); break;
      case '%': w.ch('%'); break;
      case '\0': return;
      default: w.ch('%'); w.ch(*p); break;
    }
  }
}
}  // namespace

void log_message(const char* msg) { log_printf("%s", msg); }

void log_printf(const char* fmt, ...) {
  char buf[1024];
  FdWriter w(STDERR_FILENO, buf, sizeof buf);
  w.str("leakalloc: ");
  va_list ap;
  va_start(ap, fmt);
  vformat(w, fmt, ap);
  va_end(ap);
  w.ch('\n');
}

}  // namespace leakalloc
