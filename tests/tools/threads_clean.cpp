// A correct threaded C++ program: four threads that allocate and free, joined, with
// nothing left but what glibc keeps for them (each thread's DTV and static TLS block,
// reachable from the thread descriptors glibc caches). leak_error:true with reach:true
// must pass it; without reach those blocks count (and the message says so).
#include <string>
#include <thread>
#include <vector>

int main() {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([t] {
      std::vector<std::string> words;
      for (int i = 0; i < 1000; ++i) words.push_back(std::string(40 + (i + t) % 50, 'x'));
    });
  for (std::thread& th : threads) th.join();
  return 0;
}
