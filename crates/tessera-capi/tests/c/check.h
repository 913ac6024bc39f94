/* Shared helpers of the C test programs: CHECK() and resident memory.
 *
 * The programs are compiled with -fno-builtin so that the compiler neither
 * removes unused allocations nor folds calls it thinks it understands:
 * every call below reaches the library. */
#ifndef TESSERA_TEST_CHECK_H
#define TESSERA_TEST_CHECK_H

#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dlfcn.h>

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: check failed: %s (errno %d)\n", __FILE__, \
                    __LINE__, #cond, errno);                                   \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

/* Proves that the program's malloc is Tessera's (linked or preloaded):
 * `malloc` as the program binds it must live in the same object as
 * `tessera_footprint`, a function only libtessera.so defines. */
static inline void require_tessera(void) {
    void *own = dlsym(RTLD_DEFAULT, "tessera_footprint");
    CHECK(own != NULL);
    void *(*volatile m)(size_t) = malloc;
    Dl_info a, b;
    CHECK(dladdr((void *)m, &a) != 0 && dladdr(own, &b) != 0);
    CHECK(a.dli_fname != NULL && b.dli_fname != NULL);
    CHECK(strcmp(a.dli_fname, b.dli_fname) == 0);
}

/* Resident set size of this process, in KiB. */
static inline long rss_kib(void) {
    long pages_total = 0, pages_resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    CHECK(f != NULL);
    CHECK(fscanf(f, "%ld %ld", &pages_total, &pages_resident) == 2);
    fclose(f);
    return pages_resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Touches every page of [p, p + n) so that it becomes resident. */
static inline void touch(void *p, size_t n) {
    volatile char *c = p;
    for (size_t i = 0; i < n; i += 4096)
        c[i] = (char)i;
    if (n)
        c[n - 1] = 1;
}

/* xorshift64*: deterministic pseudo-random numbers. */
static inline uint64_t next_rand(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

#endif
