// Protocol-buffer wire encoding into a fixed caller buffer: just what the pprof writer
// needs (varints, length-delimited fields, packed repeated varints).
//
// Contract: never allocates. A message that does not fit sets `overflow` and keeps
// its length unchanged from there on, so a caller checks once at the end instead of
// after every field. Negative int64 values are encoded the proto way (ten bytes of
// two's complement), though the profile writer only stores non-negative numbers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace leakalloc {
namespace pb {

enum WireType : uint32_t { kVarint = 0, kLen = 2 };

constexpr size_t kMaxVarint = 10;

inline size_t varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) { v >>= 7; ++n; }
  return n;
}

class Buf {
 public:
  Buf(uint8_t* mem, size_t cap) : p_(mem), cap_(cap) {}

  const uint8_t* data() const { return p_; }
  size_t size() const { return len_; }
  bool overflow() const { return overflow_; }
  void clear() { len_ = 0; overflow_ = false; }

  void raw(const void* src, size_t n) {
    if (overflow_ || cap_ - len_ < n) { overflow_ = true; return; }
    if (n != 0) memcpy(p_ + len_, src, n);
    len_ += n;
  }
  void varint(uint64_t v) {
    if (overflow_ || cap_ - len_ < varint_size(v)) { overflow_ = true; return; }
    while (v >= 0x80) { p_[len_++] = static_cast<uint8_t>(v | 0x80); v >>= 7; }
    p_[len_++] = static_cast<uint8_t>(v);
  }
  void tag(uint32_t field, WireType wt) { varint((uint64_t{field} << 3) | wt); }

  // Scalar fields. Zero is the proto3 default and is left out, as every encoder does.
  void u64(uint32_t field, uint64_t v) {
    if (v == 0) return;
    tag(field, kVarint);
    varint(v);
  }
  void i64(uint32_t field, int64_t v) { u64(field, static_cast<uint64_t>(v)); }
  void bytes(uint32_t field, const void* s, size_t n) {
    tag(field, kLen);
    varint(n);
    raw(s, n);
  }
  void message(uint32_t field, const Buf& sub) {
    if (sub.overflow()) { overflow_ = true; return; }
    bytes(field, sub.data(), sub.size());
  }
  // Packed repeated varints (the only encoding of repeated scalars pprof writes).
  template <typename T>
  void packed(uint32_t field, const T* v, size_t n) {
    if (n == 0) return;
    size_t body = 0;
    for (size_t i = 0; i < n; ++i) body += varint_size(static_cast<uint64_t>(v[i]));
    tag(field, kLen);
    varint(body);
    for (size_t i = 0; i < n; ++i) varint(static_cast<uint64_t>(v[i]));
  }

 private:
  uint8_t* p_;
  size_t cap_;
  size_t len_ = 0;
  bool overflow_ = false;
};

}  // namespace pb
}  // namespace leakalloc
