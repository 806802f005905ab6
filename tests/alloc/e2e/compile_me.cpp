// Compiled and linked by g++ with and without leakalloc: the object files must be
// identical and the program's output the same. Templates and the standard library
// make cc1plus allocate a lot.
#include <algorithm>
#include <iostream>
#include <map>
#include <memory>
#include <numeric>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

template <typename K, typename V>
std::map<V, std::vector<K>> invert(const std::unordered_map<K, V>& m) {
  std::map<V, std::vector<K>> out;
  for (const auto& [k, v] : m) out[v].push_back(k);
  for (auto& [v, ks] : out) std::sort(ks.begin(), ks.end());
  return out;
}

struct Shape {
  virtual ~Shape() = default;
  virtual double area() const = 0;
};
struct Rect : Shape {
  double w, h;
  Rect(double a, double b) : w(a), h(b) {}
  double area() const override { return w * h; }
};
struct Tri : Shape {
  double b, h;
  Tri(double x, double y) : b(x), h(y) {}
  double area() const override { return b * h / 2; }
};

int main() {
  std::unordered_map<std::string, int> words;
  std::istringstream in("the quick brown fox jumps over the lazy dog the end fox");
  for (std::string w; in >> w;) words[w]++;
  for (const auto& [count, ws] : invert(words)) {
    std::cout << count << ":";
    for (const auto& w : ws) std::cout << " " << w;
    std::cout << "\n";
  }
  std::vector<std::unique_ptr<Shape>> shapes;
  for (int i = 1; i <= 100; i++) {
    if (i % 2) shapes.push_back(std::make_unique<Rect>(i, i + 1));
    else shapes.push_back(std::make_unique<Tri>(i, i * 2));
  }
  double total = std::accumulate(shapes.begin(), shapes.end(), 0.0,
                                 [](double s, const auto& p) { return s + p->area(); });
  std::cout << "area " << total << "\n";
  std::string s = "item-42";
  auto dash = s.find('-');
  std::cout << s.substr(0, dash) << " " << std::stoi(s.substr(dash + 1)) << "\n";
  return 0;
}
