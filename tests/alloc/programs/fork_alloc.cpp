// fork() while other threads allocate and free: the child must inherit no held lock of
// the allocator or profiler. Each child allocates, frees a block it inherited, spawns a
// thread that allocates, and exits 0. A deadlocked child is killed by its alarm and
// fails the test; a deadlocked parent is stopped by the driver's timeout.
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <vector>

#include "interposed.h"

static std::atomic<bool> g_stop{false};

static void* churn(void* arg) {
  uintptr_t seed = reinterpret_cast<uintptr_t>(arg) * 2654435761u + 1;
  void* slots[64] = {};
  unsigned long rounds = 0;
  while (!g_stop.load(std::memory_order_relaxed)) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    unsigned i = (seed >> 33) % 64;
    size_t size = 1 + ((seed >> 40) % ((seed & 1) ? 100000 : 512));
    switch ((seed >> 20) % 4) {
      case 0: free(slots[i]); slots[i] = malloc(size); CHECK(slots[i] != nullptr); break;
      case 1: free(slots[i]); slots[i] = calloc(1, size); CHECK(slots[i] != nullptr); break;
      case 2: slots[i] = realloc(slots[i], size); CHECK(slots[i] != nullptr); break;
      default: {
        std::string s(size % 3000, 'x');
        std::vector<int> v(size % 700, 1);
        CHECK(s.size() == size % 3000 && v.size() == size % 700);
        break;
      }
    }
    if ((seed >> 20) % 4 != 3) memset(slots[i], 0x5a, size < 64 ? size : 64);
    rounds++;
  }
  for (void* p : slots) free(p);
  return reinterpret_cast<void*>(rounds);
}

static void* child_thread(void*) {
  void* blocks[100];
  for (int i = 0; i < 100; i++) blocks[i] = malloc(16 + i * 40);
  for (int i = 0; i < 100; i++) free(blocks[i]);
  return new int(7);
}

int main(int argc, char** argv) {
  require_leakalloc();
  const int forks = argc > 1 ? atoi(argv[1]) : 150;
  const int nthreads = 3;
  pthread_t t[nthreads];
  for (long i = 0; i < nthreads; i++) CHECK(pthread_create(&t[i], nullptr, churn, reinterpret_cast<void*>(i + 1)) == 0);

  int failed = 0;
  for (int f = 0; f < forks; f++) {
    char* inherited = static_cast<char*>(malloc(100 + f));
    strcpy(inherited, "from the parent");
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
      alarm(20);  // a deadlock here must fail the test, not hang it
      CHECK(strcmp(inherited, "from the parent") == 0);
      free(inherited);
      std::vector<void*> v;
      for (int i = 0; i < 500; i++) v.push_back(malloc(1 + (i * 37) % 5000));
      for (void* p : v) free(p);
      std::string s = std::to_string(f) + " child";
      pthread_t ct;
      CHECK(pthread_create(&ct, nullptr, child_thread, nullptr) == 0);
      void* r;
      CHECK(pthread_join(ct, &r) == 0);
      CHECK(*static_cast<int*>(r) == 7);
      delete static_cast<int*>(r);
      exit(0);
    }
    free(inherited);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fprintf(stderr, "FAIL: child %d: %s %d\n", f, WIFSIGNALED(status) ? "signal" : "exit",
              WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
      failed++;
    }
  }
  g_stop = true;
  unsigned long rounds = 0;
  for (pthread_t& th : t) {
    void* r;
    CHECK(pthread_join(th, &r) == 0);
    rounds += reinterpret_cast<uintptr_t>(r);
  }
  CHECK(rounds > 0);
  if (failed) return 1;
  printf("fork-ok %d\n", forks);
  return 0;
}
