/* Shared helpers of the C test programs: CHECK(), resident memory, and the
 * proof that Tessera is the allocator serving the program.
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

#include <tessera.h>

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

/* Every test program calls this first, before it starts threads or changes
 * any setting: it proves that Tessera serves this process's malloc and free
 * (linked with -ltessera or preloaded), so that a program that would pass
 * on glibc's malloc as well proves something about Tessera. A 40 MiB block
 * is too big for a Tessera segment, so it always gets a mapping of its
 * own; Tessera's own statistics must count exactly that one mapping while
 * the block lives, and none once it is freed. Under glibc's malloc the
 * Tessera symbols are missing (weak, null, when preloading) or count
 * nothing. */
static inline void tessera_serves_this_process(void) {
    void (*volatile stats)(struct tessera_stats *) = tessera_stats;
    if (stats == NULL) {
        fprintf(stderr, "not on Tessera: tessera_stats is missing (is libtessera.so loaded?)\n");
        exit(1);
    }
    enum { BIG = 40 << 20 };
    struct tessera_stats before, during, after;
    stats(&before);
    void *p = malloc(BIG);
    CHECK(p != NULL);
    stats(&during);
    free(p);
    stats(&after);
    if (during.hblks != before.hblks + 1 || during.hblkhd < before.hblkhd + BIG ||
        after.hblks != before.hblks || after.hblkhd != before.hblkhd) {
        fprintf(stderr,
                "not on Tessera: malloc(40 MiB) and free left Tessera's direct mappings at "
                "%zu, %zu, %zu (bytes %zu, %zu, %zu)\n",
                before.hblks, during.hblks, after.hblks, before.hblkhd, during.hblkhd,
                after.hblkhd);
        exit(1);
    }
}

/* xorshift64*: deterministic pseudo-random numbers. */
static inline uint64_t next_rand(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

#endif
