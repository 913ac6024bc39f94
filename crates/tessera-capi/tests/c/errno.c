/* errno (issue 16, item 3): every entry point that fails sets errno, with
 * the code docs/c-library.md gives for it, and every call that succeeds
 * leaves errno as it was. posix_memalign sets errno to the code it returns
 * (glibc does for ENOMEM). */
#include "check.h"

#include <malloc.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <tessera.h>

#define KEEP 12345

/* `call` must fail with errno `code`. */
#define FAILS(call, code)                                                      \
    do {                                                                       \
        errno = 0;                                                             \
        CHECK(call);                                                           \
        if (errno != (code)) {                                                 \
            fprintf(stderr, "%s:%d: %s: errno %d, expected %d (%s)\n",         \
                    __FILE__, __LINE__, #call, errno, (code), #code);          \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

/* `call` must succeed and leave errno alone. */
#define KEEPS(call)                                                            \
    do {                                                                       \
        errno = KEEP;                                                          \
        CHECK(call);                                                           \
        if (errno != KEEP) {                                                   \
            fprintf(stderr, "%s:%d: %s changed errno to %d\n", __FILE__,      \
                    __LINE__, #call, errno);                                   \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

static void standard_functions(void) {
    void *p = NULL, *q = NULL;
    FAILS(malloc(SIZE_MAX) == NULL, ENOMEM);
    FAILS(calloc(SIZE_MAX / 2, 3) == NULL, ENOMEM);
    FAILS(calloc(1, SIZE_MAX) == NULL, ENOMEM);
    KEEPS((p = malloc(100)) != NULL);
    FAILS(realloc(p, SIZE_MAX) == NULL, ENOMEM);
    FAILS(reallocarray(p, SIZE_MAX / 2, 3) == NULL, ENOMEM);
    KEEPS((p = realloc(p, 5000)) != NULL);
    KEEPS((free(p), 1));
    FAILS(memalign(SIZE_MAX / 2 + 2, 8) == NULL, EINVAL);
    FAILS(memalign(64, SIZE_MAX) == NULL, ENOMEM);
    FAILS(aligned_alloc(0, 8) == NULL, EINVAL);
    FAILS(aligned_alloc(24, 8) == NULL, EINVAL);
    FAILS(aligned_alloc(SIZE_MAX / 2 + 1, 8) == NULL, ENOMEM);
    FAILS(aligned_alloc(64, SIZE_MAX) == NULL, ENOMEM);
    FAILS(valloc(SIZE_MAX) == NULL, ENOMEM);
    FAILS(pvalloc(SIZE_MAX) == NULL, ENOMEM);
    KEEPS((p = aligned_alloc(64, 100)) != NULL);
    KEEPS((free(p), 1));

    /* posix_memalign: the code is returned and set in errno; the output
     * is written only on success. */
    p = &p;
    FAILS(posix_memalign(&p, 24, 8) == EINVAL, EINVAL);
    FAILS(posix_memalign(&p, 0, 8) == EINVAL, EINVAL);
    FAILS(posix_memalign(&p, 64, SIZE_MAX) == ENOMEM, ENOMEM);
    FAILS(posix_memalign(&p, SIZE_MAX / 2 + 1, 8) == ENOMEM, ENOMEM);
    CHECK(p == &p);
    KEEPS(posix_memalign(&q, 64, 100) == 0 && q != NULL);
    KEEPS((free(q), 1));
}

static void glibc_functions(void) {
    FAILS(malloc_info(1, stdout) == EINVAL, EINVAL);
    FAILS(malloc_info(0, NULL) == EINVAL, EINVAL);
    /* A stream that cannot be written: the failed write's errno. */
    FILE *ro = fopen("/dev/null", "r");
    CHECK(ro != NULL);
    FAILS(malloc_info(0, ro) == -1, EBADF);
    fclose(ro);
    FILE *ok = fopen("/dev/null", "w");
    CHECK(ok != NULL);
    KEEPS(malloc_info(0, ok) == 0);
    fclose(ok);
    FAILS(mallopt(12345, 1) == 0, EINVAL);
    FAILS(mallopt(M_MXFAST, 161) == 0, EINVAL);
    KEEPS(mallopt(M_MMAP_THRESHOLD, 256 << 10) == 1);
    KEEPS(malloc_trim(0) >= 0);
    KEEPS(malloc_usable_size(NULL) == 0);
}

static void separate_heaps(void) {
    tessera_heap *h = NULL;
    KEEPS((h = tessera_heap_create()) != NULL);
    void *p = NULL;
    FAILS(tessera_heap_malloc(NULL, 8) == NULL, EINVAL);
    FAILS(tessera_heap_calloc(NULL, 1, 8) == NULL, EINVAL);
    FAILS(tessera_heap_realloc(NULL, NULL, 8) == NULL, EINVAL);
    FAILS(tessera_heap_memalign(NULL, 64, 8) == NULL, EINVAL);
    FAILS(tessera_heap_memalign(h, SIZE_MAX / 2 + 2, 8) == NULL, EINVAL);
    FAILS(tessera_heap_malloc(h, SIZE_MAX) == NULL, ENOMEM);
    FAILS(tessera_heap_calloc(h, SIZE_MAX / 2, 3) == NULL, ENOMEM);
    KEEPS((p = tessera_heap_malloc(h, 100)) != NULL);
    FAILS(tessera_heap_realloc(h, p, SIZE_MAX) == NULL, ENOMEM);
    FAILS((tessera_heap_free(NULL, p), 1), EINVAL);
    FAILS(tessera_heap_usable_size(NULL, p) == 0, EINVAL);
    KEEPS(tessera_heap_usable_size(h, p) >= 100);
    FAILS(tessera_heap_trim(NULL, 0) == 0, EINVAL);
    struct tessera_stats s;
    FAILS((tessera_heap_stats(NULL, &s), 1), EINVAL);
    FAILS((tessera_heap_stats(h, NULL), 1), EINVAL);
    KEEPS((tessera_heap_stats(h, &s), s.inuse_chunks >= 1));
    FAILS((tessera_heap_malloc_stats(NULL), 1), EINVAL);
    FAILS(tessera_heap_footprint(NULL) == 0, EINVAL);
    FAILS(tessera_heap_max_footprint(NULL) == 0, EINVAL);
    FAILS(tessera_heap_footprint_limit(NULL) == 0, EINVAL);
    FAILS(tessera_heap_set_footprint_limit(NULL, 1 << 20) == 0, EINVAL);
    FAILS(tessera_heap_check(NULL) == -1, EINVAL);
    KEEPS(tessera_heap_check(h) == 0);
    FAILS(tessera_heap_write_snapshot(NULL, "x.snap", 1) == -1, EINVAL);
    FAILS(tessera_heap_write_snapshot(h, NULL, 1) == -1, EINVAL);
    FAILS(tessera_heap_write_snapshot(h, "/nonexistent/dir/x.snap", 1) == -1, ENOENT);
    /* A footprint limit makes growth fail with ENOMEM. */
    KEEPS(tessera_heap_set_footprint_limit(h, tessera_heap_footprint(h) + 4096) > 0);
    FAILS(tessera_heap_malloc(h, 8 << 20) == NULL, ENOMEM);
    KEEPS((tessera_heap_free(h, p), 1));
    KEEPS((tessera_heap_destroy(h), 1));
    KEEPS((tessera_heap_destroy(NULL), 1));
}

static void process_wide(void) {
    struct tessera_stats s;
    FAILS((tessera_stats(NULL), 1), EINVAL);
    KEEPS((tessera_stats(&s), s.footprint > 0));
    KEEPS(tessera_check() == 0);
    FAILS(tessera_write_snapshot(NULL, 1) == -1, EINVAL);
    FAILS(tessera_write_snapshot("/nonexistent/dir/x.snap", 1) == -1, ENOENT);
    KEEPS(tessera_set_footprint_limit(tessera_footprint() + (1 << 20)) > 0);
    FAILS(malloc(64 << 20) == NULL, ENOMEM);
    KEEPS(tessera_set_footprint_limit(0) == 0);
}

/* In a child with little address space left: creating a heap fails. */
static void heap_create_fails(void) {
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        struct rlimit rl = {32 << 20, 32 << 20};
        CHECK(setrlimit(RLIMIT_AS, &rl) == 0);
        FAILS(tessera_heap_create() == NULL, ENOMEM);
        _exit(0);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(void) {
    require_tessera();
    standard_functions();
    glibc_functions();
    separate_heaps();
    process_wide();
    heap_create_fails();
    printf("errno: ok\n");
    return 0;
}
