/* Built with -static: `leakalloc run` must refuse it (LD_PRELOAD cannot reach it). */
int main(void) { return 0; }
