/* pthread_cancel of a thread inside the reports that write through stdio or
 * write(2) (issue 16, item 6). The write inside malloc_stats, malloc_info,
 * tessera_heap_malloc_stats and tessera_write_snapshot is a cancellation
 * point; acted upon there, cancellation would unwind through the library's
 * frames, which cannot unwind, and abort the process. The library turns
 * cancellation off for the length of each report, as glibc does for
 * malloc_stats: the thread is cancelled at its next cancellation point
 * outside (pthread_testcancel here), and the process lives on.
 *
 * Each round starts a thread that calls one report in a loop, cancels it
 * after a short while and joins it: it must end as cancelled.
 *
 * Under TESSERA_TRACE, malloc itself writes (the recorder's buffer goes to
 * the file every 64 KiB): a thread that only allocates, with a
 * cancellation point of its own once in 20,000 rounds, meets the
 * recorder's write first. */
#include "check.h"

#include <malloc.h>
#include <pthread.h>
#include <tessera.h>
#include <time.h>

static FILE *sink;
static tessera_heap *heap;

static void *stats_loop(void *arg) {
    (void)arg;
    for (;;) {
        malloc_stats();
        pthread_testcancel();
    }
    return NULL;
}

static void *info_loop(void *arg) {
    (void)arg;
    for (;;) {
        CHECK(malloc_info(0, sink) == 0);
        pthread_testcancel();
    }
    return NULL;
}

static void *heap_stats_loop(void *arg) {
    (void)arg;
    for (;;) {
        tessera_heap_malloc_stats(heap);
        pthread_testcancel();
    }
    return NULL;
}

static void *snapshot_loop(void *arg) {
    (void)arg;
    for (;;) {
        CHECK(tessera_write_snapshot("cancel.snapshot", 2) == 0);
        pthread_testcancel();
    }
    return NULL;
}

static void *malloc_loop(void *arg) {
    (void)arg;
    for (unsigned long i = 1;; i++) {
        free(malloc(64 + i % 100));
        if (i % 20000 == 0)
            pthread_testcancel();
    }
    return NULL;
}

static void rounds(const char *what, void *(*loop)(void *), int n) {
    for (int i = 0; i < n; i++) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, loop, NULL) == 0);
        struct timespec ts = {0, 20000 + (i % 17) * 37000};
        nanosleep(&ts, NULL);
        CHECK(pthread_cancel(t) == 0);
        void *ret = NULL;
        CHECK(pthread_join(t, &ret) == 0);
        if (ret != PTHREAD_CANCELED) {
            fprintf(stderr, "cancel: %s: thread not cancelled\n", what);
            exit(1);
        }
    }
    printf("cancel: %s: %d threads cancelled\n", what, n);
    fflush(stdout);
}

int main(void) {
    require_tessera();
    /* The reports go to /dev/null (stderr too, for malloc_stats). */
    sink = fopen("/dev/null", "w");
    CHECK(sink != NULL);
    int saved_err = dup(2);
    CHECK(saved_err >= 0);
    CHECK(dup2(fileno(sink), 2) == 2);
    heap = tessera_heap_create();
    CHECK(heap != NULL);
    void *keep[100];
    for (int i = 0; i < 100; i++)
        CHECK((keep[i] = malloc((size_t)i * 50 + 1)) != NULL);
    rounds("malloc_stats", stats_loop, 200);
    rounds("malloc_info", info_loop, 200);
    rounds("tessera_heap_malloc_stats", heap_stats_loop, 200);
    rounds("tessera_write_snapshot", snapshot_loop, 100);
    if (getenv("TESSERA_TRACE") != NULL)
        rounds("malloc while recording", malloc_loop, 20);
    for (int i = 0; i < 100; i++)
        free(keep[i]);
    tessera_heap_destroy(heap);
    CHECK(dup2(saved_err, 2) == 2);
    remove("cancel.snapshot");
    printf("cancel: ok\n");
    return 0;
}
