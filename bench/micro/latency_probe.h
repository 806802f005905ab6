// A thread that keeps calling malloc/free and records how long each call took, so a
// benchmark can show how long an allocating thread waits while another thread dumps.
#pragma once

#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

namespace bench {

inline uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

class LatencyProbe {
 public:
  LatencyProbe() : samples_(1u << 22) { thread_ = std::thread([this] { loop(); }); }
  ~LatencyProbe() {
    run_.store(false);
    thread_.join();
  }
  // Starts a measuring window; calls made while it is open are recorded.
  void open() {
    max_ns_.store(0);
    n_.store(0);
    measuring_.store(true);
  }
  void close() {
    measuring_.store(false);
    // Let the probe finish the call it is in, so the figures are stable.
    uint64_t seen = calls_.load();
    while (calls_.load() < seen + 2) std::this_thread::yield();
  }
  uint64_t max_ns() const { return max_ns_.load(); }
  uint64_t count() const { return n_.load(); }
  double percentile_ns(double q) {
    size_t n = std::min<size_t>(n_.load(), samples_.size());
    if (n == 0) return 0;
    size_t k = static_cast<size_t>(q * static_cast<double>(n - 1));
    std::nth_element(samples_.begin(), samples_.begin() + static_cast<long>(k),
                     samples_.begin() + static_cast<long>(n));
    return samples_[k];
  }

 private:
  void loop() {
    void* keep[256] = {};
    unsigned i = 0;
    while (run_.load(std::memory_order_relaxed)) {
      bool m = measuring_.load(std::memory_order_acquire);
      uint64_t t0 = now_ns();
      void* q = malloc(64 + (i % 8) * 32);
      free(keep[i % 256]);
      keep[i % 256] = q;
      uint64_t d = now_ns() - t0;
      ++i;
      if (m) {
        if (d > max_ns_.load(std::memory_order_relaxed)) max_ns_.store(d, std::memory_order_relaxed);
        uint64_t n = n_.load(std::memory_order_relaxed);
        if (n < samples_.size()) samples_[n] = static_cast<uint32_t>(std::min<uint64_t>(d, UINT32_MAX));
        n_.store(n + 1, std::memory_order_relaxed);
      }
      calls_.store(calls_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    }
    for (void* q : keep) free(q);
  }

  std::vector<uint32_t> samples_;  // sized up front: recording never allocates
  std::atomic<bool> run_{true};
  std::atomic<bool> measuring_{false};
  std::atomic<uint64_t> max_ns_{0};
  std::atomic<uint64_t> n_{0};
  std::atomic<uint64_t> calls_{0};
  std::thread thread_;
};

// The measurement both dump-latency benchmarks make: `dump()` once per benchmark
// iteration (timed; `cleanup()` after it is not) while a probe thread keeps calling
// malloc/free, then an equally long window
// with no dump as the baseline (the machine's own noise). Counters: the dump's duration,
// and the probe's max and 99.9th-percentile malloc+free time in both windows.
template <typename State, typename Dump, typename Cleanup>
void measure_dump_latency(State& state, Dump dump, Cleanup cleanup) {
  LatencyProbe probe;
  uint64_t dump_ns = 0;
  probe.open();
  for (auto _ : state) {
    uint64_t t0 = now_ns();
    dump();
    dump_ns += now_ns() - t0;
    cleanup();
  }
  probe.close();
  double max_dump = static_cast<double>(probe.max_ns());
  double p999_dump = probe.percentile_ns(0.999);
  probe.open();
  uint64_t until = now_ns() + dump_ns;
  while (now_ns() < until) usleep(200);
  probe.close();
  state.counters["dump_ms"] = static_cast<double>(dump_ns) / 1e6 / static_cast<double>(state.iterations());
  state.counters["malloc_max_us"] = max_dump / 1e3;
  state.counters["malloc_p999_us"] = p999_dump / 1e3;
  state.counters["base_max_us"] = static_cast<double>(probe.max_ns()) / 1e3;
  state.counters["base_p999_us"] = probe.percentile_ns(0.999) / 1e3;
}

}  // namespace bench
