// Scratch memory for the dump path and other work that must not allocate through the
// tracked malloc.
#pragma once

#include <cstddef>
#include <cstdint>

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

}  // namespace leakalloc
