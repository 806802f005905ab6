// Allocation during teardown: pthread key destructors (several rounds), C++
// thread_local destructors on worker threads and on the main thread, atexit handlers,
// static destructors, and a thread that keeps allocating while the process exits.
// The handler registered first runs last and prints the marker the driver expects;
// anything that crashes after it still fails through the exit status.
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <string>
#include <vector>

#include "interposed.h"

namespace {

pthread_key_t g_key;
std::atomic<int> g_key_dtor_calls{0};
void* g_from_dead_thread[16];
char* g_global_block;
std::atomic<bool> g_spin_started{false};

void key_dtor(void* v) {
  g_key_dtor_calls++;
  char* s = static_cast<char*>(v);
  CHECK(strncmp(s, "key", 3) == 0);
  int round = s[3] - '0';
  free(s);
  std::string tmp(300, 'k');
  void* q = calloc(7, 9);
  free(q);
  // glibc runs destructors again while values are set: allocate in round 1 too.
  if (round == 0) {
    char* again = static_cast<char*>(malloc(64));
    strcpy(again, "key1");
    pthread_setspecific(g_key, again);
  }
}

struct TlsOwner {
  std::vector<std::string> strings;
  void* foreign = nullptr;  // a block another (already exited) thread made
  ~TlsOwner() {
    for (std::string& s : strings) CHECK(s.size() == 100);
    strings.clear();
    strings.shrink_to_fit();
    free(foreign);
    void* p = malloc(5000);
    free(p);
  }
};
thread_local TlsOwner t_owner;

// A static object whose destructor frees (runs during exit, after main returns).
struct StaticOwner {
  std::map<int, std::string> m;
  StaticOwner() {
    for (int i = 0; i < 200; i++) m[i] = std::string(i, 'v');
  }
  ~StaticOwner() {
    m.clear();
    void* p = malloc(10);
    free(p);
  }
} g_static_owner;

void* worker(void* arg) {
  long i = reinterpret_cast<long>(arg);
  char* v = static_cast<char*>(malloc(32));
  strcpy(v, "key0");
  pthread_setspecific(g_key, v);
  for (int k = 0; k < 50; k++) t_owner.strings.emplace_back(100, 'x');
  t_owner.foreign = g_from_dead_thread[i];
  return nullptr;
}

void* maker(void* arg) {
  long i = reinterpret_cast<long>(arg);
  g_from_dead_thread[i] = malloc(100 + i);
  return nullptr;
}

void* spin(void*) {
  // Still allocating while main runs exit(): free must keep working after teardown begins.
  void* slots[32] = {};
  g_spin_started = true;
  for (unsigned long n = 0;; n++) {
    unsigned i = n % 32;
    free(slots[i]);
    slots[i] = malloc(1 + (n * 7919) % 4000);
    if ((n & 1023) == 0) usleep(50);
  }
  return nullptr;
}

void last_handler() {
  // Registered first, so it runs after every other atexit handler.
  free(g_global_block);
  void* p = malloc(123);
  p = realloc(p, 4567);
  free(p);
  CHECK(g_key_dtor_calls.load() == 2 * 16);
  printf("teardown-ok\n");
  fflush(stdout);
}

void other_handler() {
  std::vector<std::string> v(100, std::string(50, 'a'));
  char* leak = static_cast<char*>(malloc(77));  // still live at exit: fine
  leak[0] = 1;
}

}  // namespace

int main() {
  require_leakalloc();
  atexit(last_handler);
  CHECK(pthread_key_create(&g_key, key_dtor) == 0);
  g_global_block = static_cast<char*>(malloc(1000));

  pthread_t t[16];
  for (long i = 0; i < 16; i++) CHECK(pthread_create(&t[i], nullptr, maker, reinterpret_cast<void*>(i)) == 0);
  for (pthread_t& th : t) CHECK(pthread_join(th, nullptr) == 0);
  for (long i = 0; i < 16; i++) CHECK(pthread_create(&t[i], nullptr, worker, reinterpret_cast<void*>(i)) == 0);
  for (pthread_t& th : t) CHECK(pthread_join(th, nullptr) == 0);

  // The main thread's own thread_local is destroyed by exit().
  t_owner.strings.emplace_back(100, 'm');
  t_owner.foreign = malloc(55);

  atexit(other_handler);
  pthread_t s;
  CHECK(pthread_create(&s, nullptr, spin, nullptr) == 0);
  pthread_detach(s);
  while (!g_spin_started) sched_yield();
  usleep(2000);
  return 0;
}
