// C++ leaks for the symboliser: a member of a class template (demangled and simplified
// to shop::Cart<std::string>::add), a static inline function inlined into its caller
// (reported as the inlined frame, then the function that holds the code), and a
// standard container's allocation inlined nine frames deep into a member function that
// is itself inlined into a GCC clone (handle_request [clone .isra.0]: its std::string
// argument taken apart by interprocedural scalar replacement).
// Built with -O2 so that the inlining and the cloning really happen.
#include <map>
#include <string>
#include <vector>

namespace shop {

template <typename T>
struct Cart {
  std::vector<T*> items;
  __attribute__((noinline)) void add(const T& t) {
    items.reserve(64);
    items.push_back(new T(t));  // LEAK:cart_add
  }
};

static inline int* make_counter(int v) {
  return new int(v);  // LEAK:make_counter
}

__attribute__((noinline)) int* leak_inline(int v) {
  int* p = make_counter(v);  // CALL:make_counter
  return p;
}

struct SessionCache {
  std::map<int, std::vector<char>> by_id;
  void remember(int id, size_t n) {
    by_id[id].resize(n);  // LEAK:remember
  }
};

__attribute__((noinline)) static void handle_request(SessionCache& cache, int id, std::string user) {
  cache.remember(id, user.size() * 16);  // CALL:remember
}

}  // namespace shop

int main() {
  auto* cart = new shop::Cart<std::string>;
  for (int i = 0; i < 5; ++i) cart->add(std::string(40, 'x'));
  volatile int sink = 0;
  for (int i = 0; i < 3; ++i) sink = sink + *shop::leak_inline(i);
  auto* sessions = new shop::SessionCache;
  for (int i = 0; i < 4; ++i) shop::handle_request(*sessions, i, std::string(20 + i, 'u'));
  return 0;
}
