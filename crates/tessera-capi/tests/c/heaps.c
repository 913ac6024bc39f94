/* The separate-heap API of tessera.h, the footprint calls and snapshots. */
#include "check.h"

#include <pthread.h>
#include <sys/wait.h>
#include <tessera.h>

static tessera_heap *shared;

static void *share(void *arg) {
    uint64_t seed = (uintptr_t)arg + 1;
    void *slots[32] = {0};
    for (int i = 0; i < 20000; i++) {
        int k = (int)(next_rand(&seed) % 32);
        tessera_heap_free(shared, slots[k]);
        slots[k] = tessera_heap_malloc(shared, next_rand(&seed) % 1000);
        CHECK(slots[k] != NULL);
    }
    for (int k = 0; k < 32; k++)
        tessera_heap_free(shared, slots[k]);
    return NULL;
}

int main(int argc, char **argv) {
    tessera_serves_this_process();
    CHECK(argc == 2); /* a directory for snapshot files */
    tessera_heap *h = tessera_heap_create();
    CHECK(h != NULL);

    char *p = tessera_heap_malloc(h, 100);
    CHECK(p != NULL && tessera_heap_usable_size(h, p) >= 100);
    strcpy(p, "hello");
    p = tessera_heap_realloc(h, p, 100000);
    CHECK(p != NULL && strcmp(p, "hello") == 0);
    int *z = tessera_heap_calloc(h, 1000, sizeof(int));
    CHECK(z != NULL);
    for (int i = 0; i < 1000; i++)
        CHECK(z[i] == 0);
    void *a = tessera_heap_memalign(h, 4096, 10);
    CHECK(a != NULL && ((uintptr_t)a & 4095) == 0);
    errno = 0;
    CHECK(tessera_heap_memalign(h, SIZE_MAX, 10) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(tessera_heap_malloc(h, SIZE_MAX) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(tessera_heap_calloc(h, SIZE_MAX / 2, 3) == NULL && errno == ENOMEM);
    errno = 42;
    void *q = tessera_heap_malloc(h, 1);
    CHECK(q != NULL && errno == 42);
    CHECK(tessera_heap_realloc(h, q, 0) == NULL && errno == 42);
    CHECK(tessera_heap_usable_size(h, NULL) == 0);
    tessera_heap_free(h, NULL);

    struct tessera_stats s;
    tessera_heap_stats(h, &s);
    CHECK(s.uordblks >= 100000 + 4000 && s.arena == s.uordblks + s.fordblks);
    CHECK(s.footprint == tessera_heap_footprint(h));
    CHECK(tessera_heap_max_footprint(h) >= s.footprint);
    CHECK(tessera_heap_check(h) == 0);

    /* A footprint limit on this heap only. */
    CHECK(tessera_heap_footprint_limit(h) == 0);
    size_t lim = tessera_heap_set_footprint_limit(h, tessera_heap_footprint(h) + 100000);
    CHECK(lim > tessera_heap_footprint(h));
    errno = 0;
    CHECK(tessera_heap_malloc(h, 10 << 20) == NULL && errno == ENOMEM);
    void *ok = malloc(10 << 20); /* the process-wide allocator is not limited */
    CHECK(ok != NULL);
    free(ok);
    CHECK(tessera_heap_set_footprint_limit(h, 0) == 0);
    void *bigh = tessera_heap_malloc(h, 10 << 20);
    CHECK(bigh != NULL);
    tessera_heap_free(h, bigh);

    /* Snapshots. */
    char path[4096];
    snprintf(path, sizeof path, "%s/heap.snapshot", argv[1]);
    CHECK(tessera_heap_write_snapshot(h, path, 2) == 0);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    char line[64] = {0};
    CHECK(fgets(line, sizeof line, f) && strcmp(line, "tessera-snapshot 1\n") == 0);
    fclose(f);
    snprintf(path, sizeof path, "%s/global.snapshot", argv[1]);
    CHECK(tessera_write_snapshot(path, 2) == 0);
    errno = 0;
    CHECK(tessera_heap_write_snapshot(h, NULL, 1) == -1 && errno == EINVAL);

    /* malloc_stats for one heap goes to stderr. */
    tessera_heap_malloc_stats(h);

    int trimmed = tessera_heap_trim(h, 0);
    CHECK(trimmed == 0 || trimmed == 1);
    tessera_heap_free(h, p);
    tessera_heap_free(h, z);
    tessera_heap_free(h, a);
    CHECK(tessera_heap_check(h) == 0);

    /* One heap shared by threads. */
    shared = tessera_heap_create();
    CHECK(shared != NULL);
    pthread_t t[4];
    for (long i = 0; i < 4; i++)
        CHECK(pthread_create(&t[i], NULL, share, (void *)i) == 0);
    /* Fork while they run: the child can use the shared heap. */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        alarm(20);
        void *c = tessera_heap_malloc(shared, 5000);
        if (!c || tessera_heap_check(shared) != 0)
            _exit(2);
        tessera_heap_free(shared, c);
        _exit(0);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    for (int i = 0; i < 4; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    CHECK(tessera_heap_check(shared) == 0);
    tessera_heap_destroy(shared);

    /* Creating and destroying heaps does not leak. */
    tessera_heap_destroy(h);
    tessera_heap_destroy(NULL);
    size_t before = tessera_footprint();
    long rss = rss_kib();
    for (int i = 0; i < 2000; i++) {
        tessera_heap *t2 = tessera_heap_create();
        CHECK(t2 != NULL);
        void *b = tessera_heap_malloc(t2, 200000);
        CHECK(b != NULL);
        touch(b, 200000);
        tessera_heap_destroy(t2);
    }
    CHECK(tessera_footprint() < before + (1 << 20));
    CHECK(rss_kib() - rss < 8 * 1024);
    CHECK(tessera_check() == 0);
    puts("heaps: ok");
    return 0;
}
