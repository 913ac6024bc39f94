/* Thousands of short-lived threads, joined and detached, each allocating
 * and freeing: resident memory must stay bounded (thread exit gives back
 * the thread's state). */
#include "check.h"

#include <pthread.h>
#include <stdatomic.h>

static atomic_int running;

static void *work(void *arg) {
    uint64_t seed = (uintptr_t)arg * 0x9E3779B97F4A7C15ULL + 7;
    void *p[80];
    for (int i = 0; i < 80; i++) {
        p[i] = malloc(16 + next_rand(&seed) % 3000);
        CHECK(p[i] != NULL);
        memset(p[i], 3, 16);
    }
    void *big = malloc(300000);
    CHECK(big != NULL);
    touch(big, 300000);
    for (int i = 0; i < 80; i += 3)
        free(p[i]);
    for (int i = 0; i < 80; i++)
        if (i % 3)
            free(p[i]);
    free(big);
    /* Leave some small blocks in the thread cache, if there is one. */
    for (int i = 0; i < 20; i++)
        free(malloc(16 + (size_t)i * 8));
    atomic_fetch_sub(&running, 1);
    return NULL;
}

static void batch(int first, int n, int detach) {
    pthread_t t[16];
    for (int i = 0; i < n; i++) {
        atomic_fetch_add(&running, 1);
        CHECK(pthread_create(&t[i], NULL, work, (void *)(uintptr_t)(first + i)) == 0);
        if (detach)
            CHECK(pthread_detach(t[i]) == 0);
    }
    if (!detach)
        for (int i = 0; i < n; i++)
            CHECK(pthread_join(t[i], NULL) == 0);
    while (atomic_load(&running) > 0)
        usleep(100);
}

int main(void) {
    tessera_serves_this_process();
    alarm(240);
    enum { TOTAL = 6000, WARMUP = 600, WIDTH = 8 };
    long warm = 0;
    for (int i = 0; i < TOTAL; i += WIDTH) {
        batch(i, WIDTH, (i / WIDTH) % 2);
        if (i + WIDTH == WARMUP)
            warm = rss_kib();
    }
    usleep(10000); /* detached threads finish unmapping their stacks */
    long end = rss_kib();
    printf("threads: rss after %d threads %ld KiB, after %d threads %ld KiB\n", WARMUP, warm,
           TOTAL, end);
    /* 5400 more threads may not cost more than 16 MiB. */
    CHECK(end - warm < 16 * 1024);
    puts("threads: ok");
    return 0;
}
