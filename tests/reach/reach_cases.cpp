// Cases for the reachability check (profile/reach.h), one per run:
//   reach_cases CASE [args]
// Each case builds a heap whose lost blocks it knows exactly, runs leak.check and
// compares leak.lost_count / leak.lost_bytes with what it built (at sample:0 exactly;
// under a sampled rate the driver checks the estimates). It prints
//   case CASE: lost COUNT BYTES want COUNT BYTES
// and exits 0 when they agree (`--print` only prints). Run at age:0 under LD_PRELOAD or
// linked with -lleakalloc, in a scratch directory (leak.check writes its lost dump).
//
// Leaked blocks are made in noinline functions whose frames are then overwritten
// (scrub_stack), so that no stale copy of a dropped pointer stays in the live part of
// the stack: the check reads the stack conservatively, as it must.
#include <dirent.h>
#include <dlfcn.h>
#include <signal.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <list>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace {

// Found at run time: the program runs under LD_PRELOAD or linked with -lleakalloc.
int leakalloc_mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen) {
  using Fn = int (*)(const char*, void*, size_t*, void*, size_t);
  static Fn fn = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, "leakalloc_mallctl"));
  if (fn == nullptr) {
    fprintf(stderr, "leakalloc_mallctl not found: not running under leakalloc\n");
    exit(2);
  }
  return fn(name, oldp, oldlenp, newp, newlen);
}

bool g_print_only = false;
bool g_failed = false;

uint64_t read_u64(const char* name) {
  uint64_t v = 0;
  size_t len = sizeof v;
  if (leakalloc_mallctl(name, &v, &len, nullptr, 0) != 0) {
    fprintf(stderr, "mallctl %s failed\n", name);
    exit(2);
  }
  return v;
}

__attribute__((noinline)) void scrub_stack() {
  volatile char buf[64 * 1024];
  memset(const_cast<char*>(buf), 0, sizeof buf);
  __asm__ volatile("" : : "r"(buf) : "memory");
}

// Runs a check; compares the lost blocks with the expectation.
void check(const char* what, uint64_t want_count, uint64_t want_bytes) {
  scrub_stack();
  int rc = leakalloc_mallctl("leak.check", nullptr, nullptr, nullptr, 0);
  if (rc != 0) {
    printf("case %s: leak.check failed: %d\n", what, rc);
    g_failed = true;
    return;
  }
  uint64_t c = read_u64("leak.lost_count"), b = read_u64("leak.lost_bytes");
  printf("case %s: lost %llu %llu want %llu %llu\n", what, (unsigned long long)c, (unsigned long long)b,
         (unsigned long long)want_count, (unsigned long long)want_bytes);
  fflush(stdout);
  if (!g_print_only && (c != want_count || b != want_bytes)) g_failed = true;
}

struct Node {
  Node* next;
  Node* other;
  char pad[40];
};

// A global, a static array, a .data pointer, heap blocks reached only through them
// (volatile: the compiler must keep stores that nothing in the program reads).
void* volatile g_global;
void* volatile g_array[16];
void* volatile g_data = reinterpret_cast<void*>(1);

__attribute__((noinline)) void leak_blocks(int n, size_t size) {
  for (int i = 0; i < n; ++i) {
    void* p = malloc(size);
    memset(p, 0xab, size);
    __asm__ volatile("" : : "r"(p) : "memory");
  }
}

void case_globals() {
  g_global = malloc(100);
  for (void* volatile& p : g_array) p = malloc(33);
  g_data = malloc(7);
  check("globals-held", 0, 0);
  leak_blocks(5, 48);
  scrub_stack();
  check("globals-plus-5", 5, 5 * 48);
  free(g_global);
  g_global = nullptr;
  // Dropping the only pointer to a held block makes it lost.
  void* keep = g_array[3];
  g_array[3] = nullptr;
  (void)keep;
  keep = nullptr;
  check("globals-dropped", 6, 5 * 48 + 33);
}

// A heap graph: a map of strings and a list, all reachable through one global.
std::map<std::string, std::string>* volatile g_map;
std::list<std::string>* volatile g_list;

__attribute__((noinline)) void build_graph() {
  g_map = new std::map<std::string, std::string>;
  g_list = new std::list<std::string>;
  for (int i = 0; i < 200; ++i) {
    (*g_map)["key number " + std::to_string(i) + " long enough to be on the heap"] =
        std::string(40 + i, 'v');
    g_list->push_back(std::string(50 + i, 'l'));
  }
}

// Leaks a chain head -> n-1 more nodes (1 direct, n-1 indirect).
__attribute__((noinline)) void leak_chain(int n) {
  Node* head = nullptr;
  for (int i = 0; i < n; ++i) {
    Node* x = static_cast<Node*>(calloc(1, sizeof(Node)));
    x->next = head;
    head = x;
  }
  __asm__ volatile("" : : "r"(head) : "memory");
}

// Leaks a cycle of n nodes with nothing pointing in.
__attribute__((noinline)) void leak_cycle(int n) {
  Node* first = static_cast<Node*>(calloc(1, sizeof(Node)));
  Node* cur = first;
  for (int i = 1; i < n; ++i) {
    cur->next = static_cast<Node*>(calloc(1, sizeof(Node)));
    cur = cur->next;
  }
  cur->next = first;
}

void case_graph() {
  build_graph();
  scrub_stack();
  check("graph-held", 0, 0);
  leak_chain(10);
  scrub_stack();
  check("graph-chain", 10, 10 * sizeof(Node));
  leak_cycle(4);
  scrub_stack();
  check("graph-cycle", 14, 14 * sizeof(Node));
}

// Interior and tagged pointers keep blocks reachable. One past the end does not (as in
// LeakSanitizer): it is the next block's header, which free lists point at.
volatile uintptr_t g_interior, g_tagged, g_past_end;
void case_interior() {
  char* a = static_cast<char*>(malloc(64));
  char* b = static_cast<char*>(malloc(64));
  char* c = static_cast<char*>(malloc(64));
  g_interior = reinterpret_cast<uintptr_t>(a) + 37;
  g_tagged = reinterpret_cast<uintptr_t>(b) | 3;
  g_past_end = reinterpret_cast<uintptr_t>(c) + 64;
  a = b = c = nullptr;
  check("interior", 1, 64);
}

// thread_local in main and in a blocked thread.
thread_local void* t_block;
std::atomic<int> g_ready{0};
std::atomic<bool> g_stop{false};

void case_tls() {
  t_block = malloc(123);
  std::thread t([] {
    t_block = malloc(77);
    g_ready = 1;
    while (!g_stop) {
      struct timespec ts = {0, 5000000};
      nanosleep(&ts, nullptr);  // returns EINTR at a check: the loop copes
    }
    free(t_block);
  });
  while (g_ready == 0) sched_yield();
  check("tls", 0, 0);
  g_stop = true;
  t.join();
}

// A pointer only on a blocked thread's stack, and one only in a register; and one only
// in a dead frame below a blocked thread's stack pointer, which is not a root.
// Deep (kDeadDepth frames of over 512 bytes): what the thread runs later does not
// overwrite all of them.
constexpr int kDeadDepth = 40;
__attribute__((noinline)) void dead_frame_leak(int depth) {
  void* volatile here = malloc(301);
  volatile char pad[512];
  pad[0] = 1;
  if (depth > 0) dead_frame_leak(depth - 1);
  __asm__ volatile("" : : "r"(&here), "r"(pad) : "memory");
}

__attribute__((noinline)) void blocked_with_stack_pointer(int fd) {
  dead_frame_leak(kDeadDepth - 1);  // its frames are dead, below this thread's stack pointer, once it returns
  void* volatile only_here = malloc(211);
  g_ready.fetch_add(1);
  char c;
  while (read(fd, &c, 1) < 0) {  // blocked in read(); SA_RESTART restarts it
  }
  free(only_here);
}

constexpr uintptr_t kKey = 0x5a5a5a5a5a5a5a5aull;

__attribute__((noinline)) void spin_with_register_pointer() {
  // Memory holds the pointer only xor-ed with kKey; the asm turns it into the pointer in
  // r12 and spins, so while it spins only the saved registers hold it.
  volatile uintptr_t enc = reinterpret_cast<uintptr_t>(malloc(99)) ^ kKey;
  g_ready.fetch_add(1);
  __asm__ volatile(
      "mov %[enc], %%r12\n\t"
      "xor %[key], %%r12\n\t"
      "1:\n\t"
      "pause\n\t"
      "cmpb $0, %[stop]\n\t"
      "je 1b\n\t"
      "xor %[key], %%r12\n\t"
      "mov %%r12, %[enc]\n\t"
      : [enc] "+m"(enc)
      : [key] "r"(kKey), [stop] "m"(*reinterpret_cast<volatile char*>(&g_stop))
      : "r12", "memory");
  free(reinterpret_cast<void*>(enc ^ kKey));
}

void case_threads_hold() {
  int fds[2];
  if (pipe(fds) != 0) exit(2);
  g_ready = 0;
  std::thread a(blocked_with_stack_pointer, fds[0]);
  std::thread b(spin_with_register_pointer);
  while (g_ready < 2) sched_yield();
  struct timespec ts = {0, 20000000};
  nanosleep(&ts, nullptr);  // let both settle: read() blocked, the loop spinning
  check("stack-register-deadframe", kDeadDepth, kDeadDepth * 301);
  g_stop = true;
  if (write(fds[1], "x", 1) != 1) exit(2);
  a.join();
  b.join();
}

// A dlopened library's .bss as a root (tests/reach/reach_lib.c).
void case_dlopen(const char* lib) {
  void* h = dlopen(lib, RTLD_NOW);
  if (h == nullptr) {
    printf("dlopen: %s\n", dlerror());
    exit(2);
  }
  auto keep = reinterpret_cast<void (*)(int)>(dlsym(h, "reach_lib_keep"));
  keep(20);
  check("dlopen-bss", 0, 0);
}

// Checks while other threads allocate and free hard; a known leak stays exact.
void case_busy(int checks) {
  g_stop = false;
  std::vector<std::thread> ts;
  for (int i = 0; i < 4; ++i)
    ts.emplace_back([] {
      std::vector<void*> held(512, nullptr);
      unsigned x = 12345;
      while (!g_stop.load(std::memory_order_relaxed)) {
        x = x * 1103515245 + 12345;
        size_t k = (x >> 8) % held.size();
        free(held[k]);
        held[k] = malloc(16 + (x >> 20) % 2000);
      }
      for (void* p : held) free(p);
    });
  leak_blocks(7, 500);
  scrub_stack();
  for (int i = 0; i < checks; ++i) check("busy", 7, 7 * 500);
  g_stop = true;
  for (auto& t : ts) t.join();
}

// Fork and exec in between: a check in the child and in the parent.
void case_fork(const char* self) {
  leak_blocks(3, 64);
  scrub_stack();
  check("fork-before", 3, 3 * 64);
  pid_t pid = fork();
  if (pid == 0) {
    leak_blocks(2, 64);
    scrub_stack();
  scrub_stack();
    check("fork-child", 5, 5 * 64);
    if (g_failed) _exit(1);
    execl(self, self, "globals", (char*)nullptr);
    _exit(3);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    printf("child failed: status %d\n", st);
    g_failed = true;
  }
  check("fork-after", 3, 3 * 64);
}

// 100 checks in a row: the pause and the memory stay flat.
long rss_kib() {
  FILE* f = fopen("/proc/self/statm", "r");
  long size = 0, rss = 0;
  if (f != nullptr && fscanf(f, "%ld %ld", &size, &rss) != 2) rss = 0;
  if (f != nullptr) fclose(f);
  return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

void case_repeat(int n) {
  build_graph();
  scrub_stack();
  leak_blocks(11, 100);
  scrub_stack();
  long rss0 = 0;
  for (int i = 0; i < n; ++i) {
    check("repeat", 11, 1100);
    if (i == 9) rss0 = rss_kib();
  }
  long rss1 = rss_kib();
  printf("rss after 10 checks %ld KiB, after %d: %ld KiB\n", rss0, n, rss1);
  if (rss1 > rss0 + 2048) {
    printf("memory grew by %ld KiB\n", rss1 - rss0);
    g_failed = true;
  }
  // The pauses, from the lost dumps' headers (check i wrote leakalloc.PID.i.l<i>...).
  std::vector<long> pause;
  for (int i = 0; i < n; ++i) {
    char name[128];
    snprintf(name, sizeof name, "leakalloc.%d.%d.l%d.lost.heap", (int)getpid(), i, i);
    FILE* f = fopen(name, "r");
    char line[512];
    long us = -1;
    while (f != nullptr && fgets(line, sizeof line, f) != nullptr) {
      const char* p = strstr(line, "pause_us: ");
      if (strncmp(line, "# reach_check:", 14) == 0 && p != nullptr) us = atol(p + 10);
    }
    if (f != nullptr) fclose(f);
    pause.push_back(us);
  }
  // Medians: on a busy machine one clone() in ten can take 10-20 ms (the kernel's
  // copy of the page tables waiting for a CPU), growth or not.
  std::vector<long> first(pause.begin() + 1, pause.begin() + 11), last(pause.end() - 10, pause.end());
  std::sort(first.begin(), first.end());
  std::sort(last.begin(), last.end());
  long med = first[5], med_last = last[5];
  printf("pause: median of checks 2-11 %ld us, of the last 10 %ld us\n", med, med_last);
  if (med < 0 || med_last > 3 * med + 2000) {
    printf("the pause grew\n");
    g_failed = true;
  }
}

// Chains and cycles of raw blocks of `size` bytes: word 0 links to the next.
__attribute__((noinline)) void leak_chain_sized(int n, size_t size) {
  void** head = nullptr;
  for (int i = 0; i < n; ++i) {
    void** x = static_cast<void**>(calloc(1, size));
    x[0] = head;
    head = x;
  }
  __asm__ volatile("" : : "r"(head) : "memory");
}

__attribute__((noinline)) void leak_cycle_sized(int n, size_t size) {
  void** first = static_cast<void**>(calloc(1, size));
  void** cur = first;
  for (int i = 1; i < n; ++i) {
    void** x = static_cast<void**>(calloc(1, size));
    cur[0] = x;
    cur = x;
  }
  cur[0] = first;
}

void* volatile g_held[5];

// For the label test (tests/reach/check_labels.py): 5 held blocks of 72 bytes, a lost
// chain of 10 blocks of 56 (1 direct, 9 indirect), a lost cycle of 4 of 88 (1 direct, 3
// indirect); then prof.dump (run with reach:true).
void case_labels() {
  for (void* volatile& p : g_held) p = malloc(72);
  leak_chain_sized(10, 56);
  scrub_stack();
  leak_cycle_sized(4, 88);
  scrub_stack();
  int rc = leakalloc_mallctl("prof.dump", nullptr, nullptr, nullptr, 0);
  printf("prof.dump: %d\n", rc);
  if (rc != 0) g_failed = true;
}

// At a sampled rate: a held list of 5000 blocks of 1000 bytes, whose sampled nodes are
// reachable only through unsampled ones, and a lost chain of 3000. The estimate of the
// lost bytes must be near 3 MB, and the held list must not count.
struct List {
  List* next;
  char pad[1000 - sizeof(List*)];
};
List* volatile g_list_head;

__attribute__((noinline)) void build_held_list(int n) {
  List* head = nullptr;
  for (int i = 0; i < n; ++i) {
    List* x = static_cast<List*>(malloc(sizeof(List)));
    x->next = head;
    head = x;
  }
  g_list_head = head;
}

void case_sampled() {
  build_held_list(5000);
  scrub_stack();
  leak_chain_sized(3000, 1000);
  scrub_stack();
  g_print_only = true;
  check("sampled", 3000, 3000 * 1000);
  uint64_t b = read_u64("leak.lost_bytes");
  if (b < 2400000 || b > 3600000) {
    printf("lost bytes %llu not within 20%% of 3000000\n", (unsigned long long)b);
    g_failed = true;
  }
}

// For the tool tests: 3 lost blocks of 1000 bytes and one held; then the program keeps
// allocating for `ms` milliseconds (a `leakalloc dump --lost PID` is noticed at an
// allocation) and exits.
void case_serve(int ms) {
  g_held[0] = malloc(500);
  leak_blocks(3, 1000);
  scrub_stack();
  printf("ready\n");
  fflush(stdout);
  for (int i = 0; i < ms / 10; ++i) {
    struct timespec ts = {0, 10000000};
    nanosleep(&ts, nullptr);
    free(malloc(10));
  }
}

// Threads that block every signal: one sleeping with a pointer on its stack, one
// spinning. Neither answers the stop; the check goes on after its short peek at their
// SigBlk, reads their whole stacks, and says so in the dump header.
void case_blocked() {
  g_stop = false;
  g_ready = 0;
  auto body = [](bool spin) {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    void* volatile mine = malloc(404);
    g_ready.fetch_add(1);
    while (!g_stop.load()) {
      if (!spin) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, nullptr);
      }
    }
    free(mine);
  };
  std::thread a(body, false), b(body, true);
  while (g_ready < 2) sched_yield();
  leak_blocks(2, 64);
  scrub_stack();
  check("blocked", 2, 128);
  // The header of the lost dump just written says that two threads did not answer.
  char name[128];
  snprintf(name, sizeof name, "leakalloc.%d.0.l0.lost.heap", (int)getpid());
  FILE* f = fopen(name, "r");
  char line[512];
  bool noted = false;
  long pause_us = -1;
  while (f != nullptr && fgets(line, sizeof line, f) != nullptr) {
    if (strstr(line, "threads_unanswered: 2") != nullptr) {
      const char* p = strstr(line, "pause_us: ");
      if (p != nullptr) pause_us = atol(p + 10);
    }
    if (strncmp(line, "# reach_note: 2 thread(s) did not answer", 40) == 0) noted = true;
  }
  if (f != nullptr) fclose(f);
  printf("unanswered noted: %d, pause %ld us\n", noted, pause_us);
  // The peek at SigBlk comes after 5 ms: well under the 250 ms an unknown thread gets.
  if (!noted || pause_us < 0 || pause_us > 200000) g_failed = true;
  g_stop = true;
  a.join();
  b.join();
}

// The check's child killed from outside (as the OOM killer would): leak.check fails
// with a message and the program goes on; the next check works.
std::atomic<int> g_killed{0};
void kill_children() {
  while (!g_stop.load()) {
    DIR* d = opendir("/proc");
    while (struct dirent* e = d != nullptr ? readdir(d) : nullptr) {
      if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
      char path[64], buf[512];
      snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
      FILE* f = fopen(path, "r");
      if (f == nullptr) continue;
      size_t n = fread(buf, 1, sizeof buf - 1, f);
      fclose(f);
      buf[n] = '\0';
      const char* close_paren = strrchr(buf, ')');
      int ppid = 0;
      char state;
      if (close_paren != nullptr && sscanf(close_paren + 2, "%c %d", &state, &ppid) == 2 && ppid == getpid()) {
        kill(atoi(e->d_name), SIGKILL);
        g_killed.fetch_add(1);
      }
    }
    if (d != nullptr) closedir(d);
    if (g_killed.load() > 0) return;
  }
}

void case_killchild() {
  // 200 MB of held blocks: the child takes long enough to be found and killed.
  static std::vector<void*>* held = new std::vector<void*>;
  for (int i = 0; i < 200000; ++i) {
    void* p = malloc(1000);
    memset(p, 1, 1000);
    held->push_back(p);
  }
  leak_blocks(4, 32);
  scrub_stack();
  g_stop = false;
  std::thread killer(kill_children);
  int rc = leakalloc_mallctl("leak.check", nullptr, nullptr, nullptr, 0);
  g_stop = true;
  killer.join();
  printf("first check: %d (killed %d)\n", rc, g_killed.load());
  if (rc == 0 || g_killed.load() == 0) g_failed = true;
  check("after-kill", 4, 128);
}

// Where the check's child cannot be made (RLIMIT_NPROC, run_failures.sh): leak.check
// says why and the program goes on.
void case_nofork() {
  leak_blocks(1, 32);
  int rc = leakalloc_mallctl("leak.check", nullptr, nullptr, nullptr, 0);
  printf("nofork: leak.check returned %d\n", rc);
  if (rc == 0) g_failed = true;
  void* p = malloc(10);  // still allocating
  free(p);
}

// A prefix that cannot be written: the check runs (leak.lost_count is right), the lost
// dump fails with its errno, and the program goes on.
void case_unwritable() {
  leak_blocks(2, 32);
  scrub_stack();
  int rc = leakalloc_mallctl("leak.check", nullptr, nullptr, nullptr, 0);
  uint64_t c = read_u64("leak.lost_count");
  printf("unwritable: leak.check returned %d, lost_count %llu\n", rc, (unsigned long long)c);
  if (rc == 0 || c != 2) g_failed = true;
  free(malloc(10));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: reach_cases CASE [arg] [--print]\n");
    return 2;
  }
  for (int i = 1; i < argc; ++i)
    if (strcmp(argv[i], "--print") == 0) g_print_only = true;
  const char* c = argv[1];
  const char* arg = argc > 2 ? argv[2] : "";
  if (strcmp(c, "globals") == 0) case_globals();
  else if (strcmp(c, "graph") == 0) case_graph();
  else if (strcmp(c, "interior") == 0) case_interior();
  else if (strcmp(c, "tls") == 0) case_tls();
  else if (strcmp(c, "threads") == 0) case_threads_hold();
  else if (strcmp(c, "dlopen") == 0) case_dlopen(arg);
  else if (strcmp(c, "busy") == 0) case_busy(atoi(arg) > 0 ? atoi(arg) : 5);
  else if (strcmp(c, "fork") == 0) case_fork(argv[0]);
  else if (strcmp(c, "labels") == 0) case_labels();
  else if (strcmp(c, "blocked") == 0) case_blocked();
  else if (strcmp(c, "killchild") == 0) case_killchild();
  else if (strcmp(c, "nofork") == 0) case_nofork();
  else if (strcmp(c, "unwritable") == 0) case_unwritable();
  else if (strcmp(c, "serve") == 0) case_serve(atoi(arg) > 0 ? atoi(arg) : 1000);
  else if (strcmp(c, "sampled") == 0) case_sampled();
  else if (strcmp(c, "repeat") == 0) case_repeat(atoi(arg) > 0 ? atoi(arg) : 100);
  else {
    fprintf(stderr, "unknown case %s\n", c);
    return 2;
  }
  return g_failed ? 1 : 0;
}
