/* A hostile target for `leakalloc dump PID` (tests/tools/run_remote_hostile.sh): it runs
 * under LD_PRELOAD=libleakalloc.so but answers every remote request itself, writing the
 * file name given on its command line into its own control block (profile/remote.h),
 * as any process may: the block is in its memory. Root's tool must not read, write or
 * remove what the name points to unless it is the target's own file.
 *
 *   hostile_target READY_FILE NAME
 *
 * Writes its pid to READY_FILE, then polls the block every 5 ms, never calling malloc
 * (so that the library itself never notices a request and answers it), for 60 s. */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The layout of leakalloc::RemoteControl, version 1 (profile/remote.h). */
struct remote_control {
  char magic[16];
  uint32_t version;
  uint32_t size;
  uint64_t age_ms;
  uint32_t formats;
  uint32_t request;
  uint32_t served;
  int32_t status;
  char files[3 * (4096 + 64) + 16];
};

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  struct remote_control* rc = dlsym(RTLD_DEFAULT, "leakalloc_remote_control");
  if (rc == NULL || rc->version != 1 || rc->size != sizeof *rc) {
    fprintf(stderr, "hostile_target: no leakalloc_remote_control of version 1\n");
    return 3;
  }
  char pid[32];
  int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
  int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || write(fd, pid, (size_t)n) != n || close(fd) != 0) return 4;
  for (int i = 0; i < 12000; ++i) {
    uint32_t r = __atomic_load_n(&rc->request, __ATOMIC_ACQUIRE);
    if (r != __atomic_load_n(&rc->served, __ATOMIC_RELAXED)) {
      strncpy(rc->files, argv[2], sizeof rc->files - 1);
      rc->status = 0;
      __atomic_store_n(&rc->served, r, __ATOMIC_RELEASE);
    }
    struct timespec nap = {0, 5 * 1000 * 1000};
    nanosleep(&nap, NULL);
  }
  return 0;
}
