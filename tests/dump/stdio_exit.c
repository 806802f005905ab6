/* leak_error and the standard streams: glibc allocates the stdin/stdout/stderr buffers
 * on first use and never frees them before exit, so a correct program that prints must
 * still pass leak_error. With an argument N the program leaks exactly one N-byte block,
 * which must be the only thing reported. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char** argv) {
  char line[64];
  printf("stdio_exit: buffered output\n");          /* allocates stdout's buffer */
  fprintf(stderr, "stdio_exit: to stderr\n");
  if (fgets(line, sizeof line, stdin) == NULL) line[0] = '\0';  /* and stdin's */
  char* scratch = malloc(1000);                      /* freed: not a leak */
  strcpy(scratch, line);
  free(scratch);
  if (argc > 1) {
    size_t n = strtoul(argv[1], NULL, 10);
    char* leak = malloc(n);
    memset(leak, 1, n);
    printf("stdio_exit: leaked %zu bytes at %p\n", n, (void*)leak);
  }
  return 0;
}
