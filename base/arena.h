// Scratch memory for the dump path and other work that must not allocate through the
// tracked malloc.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace leakalloc {

// A bump allocator over private mmap'd chunks for the dump path and other scratch work
// that must not allocate through the tracked malloc. Everything is released at once
// when the arena is destroyed. Not thread-safe: one arena per task.
class ScratchArena {
 public:
  ScratchArena() = default;
  ~ScratchArena();
  ScratchArena(const ScratchArena&) = delete;
  ScratchArena& operator=(const ScratchArena&) = delete;
  // Zeroed memory, or nullptr when the OS refuses.
  void* alloc(size_t bytes, size_t align = 16);
  template <typename T>
  T* alloc_array(size_t n) { return static_cast<T*>(alloc(n * sizeof(T), alignof(T) < 16 ? 16 : alignof(T))); }
  uint64_t bytes_mapped() const { return mapped_; }

 private:
  struct Chunk {
    Chunk* prev;
    size_t size;
  };
  Chunk* head_ = nullptr;
  char* cur_ = nullptr;
  char* end_ = nullptr;
  uint64_t mapped_ = 0;
};

// The tables of the dump path, over a ScratchArena (nothing to free: the arena goes as a
// whole). One growable array and one hash table serve every writer.

// A 64-bit finaliser (splitmix64's): spreads every input bit over the hash.
inline uint64_t mix64(uint64_t x) {
  x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27; x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

template <typename T>
class ArenaVec {
 public:
  bool push(ScratchArena& a, const T& v) {
    if (n_ == cap_ && !reserve(a, cap_ != 0 ? cap_ * 2 : 64)) return false;
    d_[n_++] = v;
    return true;
  }
  bool reserve(ScratchArena& a, size_t cap) {
    if (cap <= cap_) return true;
    T* d = a.alloc_array<T>(cap);
    if (d == nullptr) return false;
    if (n_ != 0) memcpy(static_cast<void*>(d), d_, n_ * sizeof(T));
    d_ = d;  // the old array stays in the arena until the dump ends
    cap_ = cap;
    return true;
  }
  T& operator[](size_t i) { return d_[i]; }
  size_t size() const { return n_; }

 private:
  T* d_ = nullptr;
  size_t n_ = 0, cap_ = 0;
};

// Insertion-ordered set: entry i keeps index i forever (ids are i or i + 1), found
// through an open-addressing index of entry numbers + 1, kept at most half full.
template <typename T>
class InternTable {
 public:
  // Index of `key`, added if absent; -1 when the arena is exhausted.
  int64_t intern(ScratchArena& a, const T& key, bool* added) {
    *added = false;
    if (slots_ == nullptr && !rehash(a, 1024)) return -1;
    uint64_t h = key.hash();
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      uint32_t s = slots_[i];
      if (s == 0) break;
      if (entries_[s - 1] == key) return s - 1;
    }
    if ((entries_.size() + 1) * 2 > mask_ + 1 && !rehash(a, (mask_ + 1) * 2)) return -1;
    if (!entries_.push(a, key)) return -1;
    place(h, static_cast<uint32_t>(entries_.size()));
    *added = true;
    return static_cast<int64_t>(entries_.size() - 1);
  }
  // Sizes the table for `n` entries up front. The arena's memory comes from fresh
  // anonymous mappings that the kernel commits as pages are touched, so a generous
  // guess costs address space, not memory, and saves every rehash and copy.
  bool reserve(ScratchArena& a, size_t n) {
    size_t cap = 1024;
    while (cap < 2 * n) cap *= 2;
    if (slots_ != nullptr && cap <= mask_ + 1) return true;
    return entries_.reserve(a, n) && rehash(a, cap);
  }
  T& operator[](size_t i) { return entries_[i]; }
  size_t size() const { return entries_.size(); }

 private:
  void place(uint64_t h, uint32_t v) {
    size_t i = h & mask_;
    while (slots_[i] != 0) i = (i + 1) & mask_;
    slots_[i] = v;
  }
  bool rehash(ScratchArena& a, size_t cap) {
    uint32_t* s = a.alloc_array<uint32_t>(cap);
    if (s == nullptr) return false;
    slots_ = s;
    mask_ = cap - 1;
    for (size_t i = 0; i < entries_.size(); ++i) place(entries_[i].hash(), static_cast<uint32_t>(i + 1));
    return true;
  }
  ArenaVec<T> entries_;
  uint32_t* slots_ = nullptr;
  size_t mask_ = 0;
};

}  // namespace leakalloc
