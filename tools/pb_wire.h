// Protocol-buffer wire format for the tool: a bounds-checked reader over bytes in
// memory and an encoder into a std::string. Just what a pprof profile needs.
//
// Contract: Reader never reads past its range and throws ToolError ("PATH: not a valid
// pprof protobuf profile (...)") on anything malformed, so a hostile file cannot crash
// the tool. Writer encodes proto3's way: zero scalars are left out.
#pragma once

#include <cstdint>
#include <string>

#include "tools/profile_data.h"

namespace leakalloc_tool {

struct Field {
  uint32_t number;
  uint32_t wire;     // 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32
  uint64_t value;    // wire 0/1/5
  const uint8_t* p;  // wire 2
  size_t n;
};

class Reader {
 public:
  Reader(const uint8_t* p, size_t n, const std::string& path) : p_(p), end_(p + n), path_(path) {}
  bool done() const { return p_ == end_; }

  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ == end_) fail("truncated varint");
      uint8_t b = *p_++;
      if (shift == 63 && b > 1) fail("varint longer than 64 bits");
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    fail("varint longer than 10 bytes");
  }

  Field field() {
    Field f{};
    uint64_t key = varint();
    f.number = static_cast<uint32_t>(key >> 3);
    f.wire = static_cast<uint32_t>(key & 7);
    if (f.number == 0 || key >> 3 > 0x1fffffff) fail("bad field number");
    switch (f.wire) {
      case 0: f.value = varint(); break;
      case 1: f.value = fixed(8); break;
      case 5: f.value = fixed(4); break;
      case 2: {
        uint64_t len = varint();
        if (len > static_cast<uint64_t>(end_ - p_)) fail("length-delimited field runs past the end");
        f.p = p_;
        f.n = static_cast<size_t>(len);
        p_ += len;
        break;
      }
      default: fail("unsupported wire type " + std::to_string(f.wire));
    }
    return f;
  }

  [[noreturn]] void fail(const std::string& what) const {
    throw ToolError(path_ + ": not a valid pprof protobuf profile (" + what + ")");
  }

 private:
  uint64_t fixed(int bytes) {
    if (end_ - p_ < bytes) fail("truncated fixed-width field");
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(p_[i]) << (8 * i);
    p_ += bytes;
    return v;
  }

  const uint8_t* p_;
  const uint8_t* end_;
  const std::string& path_;
};

// Encodes into a growing string (the tool is an ordinary program: no fixed buffers).
class Writer {
 public:
  std::string out;

  void varint(uint64_t v) {
    while (v >= 0x80) {
      out += static_cast<char>(v | 0x80);
      v >>= 7;
    }
    out += static_cast<char>(v);
  }
  void tag(uint32_t field, uint32_t wire) { varint((uint64_t{field} << 3) | wire); }
  void u64(uint32_t field, uint64_t v) {
    if (v == 0) return;
    tag(field, 0);
    varint(v);
  }
  void flag(uint32_t field, bool v) { u64(field, v ? 1 : 0); }
  void bytes(uint32_t field, const std::string& s) { bytes(field, s.data(), s.size()); }
  void bytes(uint32_t field, const void* p, size_t n) {
    tag(field, 2);
    varint(n);
    out.append(static_cast<const char*>(p), n);
  }
  // A field as it was read: copied unchanged whatever its wire type.
  void copy(const Field& f) {
    tag(f.number, f.wire);
    switch (f.wire) {
      case 0: varint(f.value); break;
      case 1: for (int i = 0; i < 8; ++i) out += static_cast<char>(f.value >> (8 * i)); break;
      case 5: for (int i = 0; i < 4; ++i) out += static_cast<char>(f.value >> (8 * i)); break;
      default: varint(f.n); out.append(reinterpret_cast<const char*>(f.p), f.n); break;
    }
  }
};

}  // namespace leakalloc_tool
