#include "base/arena.h"

#include "base/os.h"

namespace leakalloc {

ScratchArena::~ScratchArena() {
  while (head_ != nullptr) {
    Chunk* prev = head_->prev;
    os_free(head_, head_->size);
    head_ = prev;
  }
}

void* ScratchArena::alloc(size_t bytes, size_t align) {
  uintptr_t p = (reinterpret_cast<uintptr_t>(cur_) + align - 1) & ~(uintptr_t{align} - 1);
  if (cur_ == nullptr || p + bytes > reinterpret_cast<uintptr_t>(end_)) {
    size_t want = bytes + align + sizeof(Chunk);
    size_t size = size_t{1} << 20;
    while (size < want) size <<= 1;
    void* mem = os_alloc(size);
    if (mem == nullptr) return nullptr;
    Chunk* c = static_cast<Chunk*>(mem);
    c->prev = head_;
    c->size = size;
    head_ = c;
    mapped_ += size;
    cur_ = static_cast<char*>(mem) + sizeof(Chunk);
    end_ = static_cast<char*>(mem) + size;
    p = (reinterpret_cast<uintptr_t>(cur_) + align - 1) & ~(uintptr_t{align} - 1);
  }
  cur_ = reinterpret_cast<char*>(p + bytes);
  return reinterpret_cast<void*>(p);
}

}  // namespace leakalloc
