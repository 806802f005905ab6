/* A toy request server with one slow leak, for the README's leak hunt.
 *
 *   leaky_server [--seconds N] [--workers N]
 *
 * Worker threads take "requests" in a loop for N seconds (default 5). Every handler
 * allocates; all but one give everything back. Two things look like leaks and only
 * one is:
 *   - a small cache of recent responses keeps the last 64 of them alive: live memory
 *     that is always young (churn), never older than a fraction of a second;
 *   - every login appends an audit record to a list that nothing ever trims
 *     (record_login_audit_entry): memory that only gets older.
 * `leakalloc run --age 2s` separates the two: only the audit records outlive 2 s.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct audit_entry {
  struct audit_entry* next;
  char user[24];
  long when;
  char detail[32];
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static struct audit_entry* g_audit_log; /* appended to forever: the leak */

#define RECENT 64
static char* g_recent[RECENT]; /* the last RECENT responses: bounded, young */
static unsigned g_recent_next;
static volatile unsigned long g_served;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void remember_response(char* response) {
  pthread_mutex_lock(&g_lock);
  free(g_recent[g_recent_next % RECENT]);
  g_recent[g_recent_next % RECENT] = response;
  g_recent_next++;
  pthread_mutex_unlock(&g_lock);
}

__attribute__((noinline)) static char* render_page(const char* title, int id) {
  size_t n = 256 + (size_t)(id % 5) * 64;
  char* page = malloc(n);
  snprintf(page, n, "<html><h1>%s</h1><p>item %d</p></html>", title, id);
  return page;
}

__attribute__((noinline)) static void handle_get_item(int id) {
  char* page = render_page("item", id);
  remember_response(page); /* kept in the bounded cache, freed when it falls out */
}

__attribute__((noinline)) static void handle_search(int id) {
  int n = 16 + id % 32;
  int* hits = malloc(sizeof(int) * (size_t)n);
  for (int i = 0; i < n; ++i) hits[i] = (id * 31 + i) % 1000;
  char* page = render_page("search", hits[0]);
  free(page);
  free(hits);
}

/* The bug: an audit record per login, linked into a list nobody trims. */
__attribute__((noinline)) static void record_login_audit_entry(const char* user) {
  struct audit_entry* e = malloc(sizeof *e);
  snprintf(e->user, sizeof e->user, "%s", user);
  e->when = (long)time(NULL);
  snprintf(e->detail, sizeof e->detail, "login ok");
  pthread_mutex_lock(&g_lock);
  e->next = g_audit_log;
  g_audit_log = e;
  pthread_mutex_unlock(&g_lock);
}

__attribute__((noinline)) static void handle_login(int id) {
  char user[24];
  snprintf(user, sizeof user, "user%d", id % 1000);
  char* session = strdup(user);
  record_login_audit_entry(user);
  free(session);
}

struct worker_arg {
  int index;
  double until;
};

static void* worker(void* p) {
  struct worker_arg* a = p;
  char name[16];
  snprintf(name, sizeof name, "worker-%d", a->index);
  pthread_setname_np(pthread_self(), name);
  int id = a->index * 1000000;
  struct timespec pause = {0, 200000}; /* 0.2 ms between requests */
  while (now_s() < a->until) {
    for (int i = 0; i < 10; ++i, ++id) {
      switch (id % 10) {
        case 0: handle_login(id); break;
        case 1: case 2: case 3: handle_search(id); break;
        default: handle_get_item(id); break;
      }
    }
    __atomic_add_fetch(&g_served, 10, __ATOMIC_RELAXED);
    nanosleep(&pause, NULL);
  }
  return NULL;
}

int main(int argc, char** argv) {
  double seconds = 5;
  int workers = 2;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
    else if (!strcmp(argv[i], "--workers") && i + 1 < argc) workers = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: leaky_server [--seconds N] [--workers N]\n");
      return 2;
    }
  }
  if (workers < 1 || workers > 64) workers = 2;
  pthread_t threads[64];
  struct worker_arg args[64];
  double until = now_s() + seconds;
  for (int i = 0; i < workers; ++i) {
    args[i].index = i + 1;
    args[i].until = until;
    pthread_create(&threads[i], NULL, worker, &args[i]);
  }
  for (int i = 0; i < workers; ++i) pthread_join(threads[i], NULL);
  printf("leaky_server: served %lu requests in %.0f s\n", g_served, seconds);
  return 0;
}
