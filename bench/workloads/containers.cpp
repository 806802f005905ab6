// A C++ container-heavy program: ordered and hashed maps of strings, vectors of
// vectors, lists and shared pointers, built, queried, partly erased and destroyed in
// rounds. Allocation goes through operator new/delete (sized delete included).
#include <cstdio>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common.h"

namespace {

std::string make_key(uint64_t* rng, int i) {
  // 20..60 characters: past the small-string buffer, so every key is a heap block.
  std::string s = "key-" + std::to_string(i) + "-";
  size_t n = rng_range(rng, 16, 56);
  while (s.size() < n) s.push_back(static_cast<char>('a' + rng_next(rng) % 26));
  return s;
}

struct Node {
  std::string name;
  std::vector<int> data;
};

uint64_t round_of_work(uint64_t* rng, int n) {
  uint64_t sum = 0;
  std::map<int, std::string> ordered;
  std::unordered_map<std::string, std::vector<int>> hashed;
  std::list<std::shared_ptr<Node>> nodes;
  std::vector<std::vector<int>> rows;
  for (int i = 0; i < n; ++i) {
    std::string k = make_key(rng, i);
    ordered.emplace(static_cast<int>(rng_next(rng) % (4u * n)), k);
    std::vector<int>& v = hashed[k];
    for (int j = 0, m = static_cast<int>(rng_range(rng, 1, 12)); j < m; ++j) v.push_back(j + i);
    if (i % 4 == 0) {
      auto node = std::make_shared<Node>();
      node->name = k;
      node->data.assign(rng_range(rng, 4, 64), i);
      nodes.push_back(std::move(node));
    }
    if (i % 8 == 0) rows.emplace_back(rng_range(rng, 8, 256), i);
  }
  for (int i = 0; i < n; ++i) {
    auto it = ordered.find(static_cast<int>(rng_next(rng) % (4u * n)));
    if (it != ordered.end()) {
      auto h = hashed.find(it->second);
      if (h != hashed.end()) sum += h->second.size();
    }
  }
  for (auto it = ordered.begin(); it != ordered.end();) it = (it->first & 1) ? ordered.erase(it) : std::next(it);
  for (auto it = nodes.begin(); it != nodes.end();) it = (it->get()->data.size() & 1) ? nodes.erase(it) : std::next(it);
  for (auto& r : rows) r.resize(r.size() / 2);
  sum += ordered.size() + nodes.size() + rows.size();
  return sum;
}

}  // namespace

int main(int argc, char** argv) {
  double scale = workload_scale(argc, argv);
  long rounds = scaled(scale, 3);
  int n = static_cast<int>(scale < 1 ? scaled(scale, 50000) : 50000);
  uint64_t rng = 0x0123456789abcdefULL;
  uint64_t sum = 0;
  for (long r = 0; r < rounds; ++r) sum += round_of_work(&rng, n);
  std::printf("containers: %ld rounds x %d, checksum %llu\n", rounds, n, static_cast<unsigned long long>(sum));
  return 0;
}
