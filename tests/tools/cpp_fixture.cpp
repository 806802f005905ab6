// C++ leaks for the symboliser: a member of a class template (demangled and simplified
// to shop::Cart<std::string>::add), and a static inline function inlined into its
// caller (reported as the inlined frame, then the function that holds the code).
// Built with -O2 so that the inlining really happens.
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

}  // namespace shop

int main() {
  auto* cart = new shop::Cart<std::string>;
  for (int i = 0; i < 5; ++i) cart->add(std::string(40, 'x'));
  volatile int sink = 0;
  for (int i = 0; i < 3; ++i) sink = sink + *shop::leak_inline(i);
  return 0;
}
