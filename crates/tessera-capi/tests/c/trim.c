/* malloc_trim gives memory back: resident memory falls after freeing, both
 * when the top of the heap is free and when a live block after the freed
 * ones pins the top (then the pages inside free chunks are purged). */
#include "check.h"

#include <malloc.h>

enum { N = 4000, SIZE = 50000 }; /* 200 MB, below the mmap threshold */
static void *blocks[N];

static long fill(void) {
    for (int i = 0; i < N; i++) {
        blocks[i] = malloc(SIZE);
        CHECK(blocks[i] != NULL);
        touch(blocks[i], SIZE);
    }
    return rss_kib();
}

static void empty(void) {
    for (int i = 0; i < N; i++)
        free(blocks[i]);
}

int main(void) {
    tessera_serves_this_process();
    /* No automatic trimming: only malloc_trim gives memory back. */
    CHECK(mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1);
    long base = rss_kib();

    long full = fill();
    CHECK(full - base > 150 * 1024);
    empty();
    CHECK(malloc_trim(0) == 1);
    long after = rss_kib();
    printf("trim (free top): base %ld KiB, full %ld KiB, trimmed %ld KiB\n", base, full, after);
    CHECK(after - base < 30 * 1024);

    /* A live block after the freed ones keeps top from shrinking. */
    full = fill();
    void *pin = malloc(100);
    CHECK(pin != NULL);
    empty();
    long freed = rss_kib();
    CHECK(malloc_trim(0) == 1);
    after = rss_kib();
    printf("trim (pinned): full %ld KiB, freed %ld KiB, trimmed %ld KiB\n", full, freed, after);
    CHECK(full - after > 150 * 1024);
    CHECK(after - base < 30 * 1024);
    free(pin);

    /* Directly mapped blocks go back at free, without any trimming. */
    long before = rss_kib();
    void *big = malloc(100 << 20);
    CHECK(big != NULL);
    touch(big, 100 << 20);
    CHECK(rss_kib() - before > 90 * 1024);
    free(big);
    CHECK(rss_kib() - before < 10 * 1024);
    puts("trim: ok");
    return 0;
}
