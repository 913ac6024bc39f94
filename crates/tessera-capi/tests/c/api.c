/* Every exported function of libtessera.so, with each error case of the
 * issue: run linked against the library and under LD_PRELOAD. */
#include "check.h"

#include <malloc.h>
#include <tessera.h>

/* C23, not declared by glibc 2.36's headers. */
void free_sized(void *ptr, size_t size);
void free_aligned_sized(void *ptr, size_t alignment, size_t size);

#define PAGE 4096

static int aligned_to(void *p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

/* Reads a whole file into a static buffer. */
static const char *slurp(FILE *f) {
    static char buf[1 << 20];
    fflush(f);
    rewind(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    return buf;
}

static void malloc_free_usable(void) {
    void *a = malloc(0), *b = malloc(0);
    CHECK(a && b && a != b);
    CHECK(aligned_to(a, 16) && aligned_to(b, 16));
    free(a);
    free(b);
    free(NULL);
    CHECK(malloc_usable_size(NULL) == 0);
    for (size_t n = 1; n < 70000; n = n * 3 / 2 + 1) {
        char *p = malloc(n);
        CHECK(p != NULL);
        CHECK(malloc_usable_size(p) >= n);
        memset(p, 0xab, malloc_usable_size(p));
        free(p);
    }
    /* A few large ones (direct mappings). */
    for (size_t n = 300000; n < (64u << 20); n *= 3) {
        char *p = malloc(n);
        CHECK(p != NULL && malloc_usable_size(p) >= n);
        p[0] = p[n - 1] = 1;
        free(p);
    }
}

static void errno_is_kept_on_success(void) {
    errno = 1234;
    void *p = malloc(100);
    CHECK(p && errno == 1234);
    p = realloc(p, 100000);
    CHECK(p && errno == 1234);
    p = realloc(p, 10);
    CHECK(p && errno == 1234);
    free(p);
    CHECK(errno == 1234);
    p = calloc(10, 10);
    CHECK(p && errno == 1234);
    free(p);
    p = memalign(256, 10);
    CHECK(p && errno == 1234);
    free(p);
    CHECK(malloc_trim(0) >= 0 && errno == 1234);
}

static void impossible_requests(void) {
    size_t sizes[] = {SIZE_MAX, SIZE_MAX - 4096, SIZE_MAX / 2, (size_t)PTRDIFF_MAX,
                      (size_t)1 << 62,
                      /* More than the 47-bit user address space. */
                      (size_t)1 << 47};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        errno = 0;
        CHECK(malloc(sizes[i]) == NULL && errno == ENOMEM);
        errno = 0;
        CHECK(calloc(1, sizes[i]) == NULL && errno == ENOMEM);
        errno = 0;
        CHECK(memalign(64, sizes[i]) == NULL && errno == ENOMEM);
        errno = 0;
        CHECK(valloc(sizes[i]) == NULL && errno == ENOMEM);
    }
    /* Exhaust the address space: 1 TiB reservations until refused. */
    void *held[300];
    int n = 0;
    errno = 0;
    while (n < 300) {
        void *p = malloc((size_t)1 << 40);
        if (!p)
            break;
        held[n++] = p;
    }
    CHECK(n < 300 && errno == ENOMEM);
    while (n > 0)
        free(held[--n]);
    void *p = malloc(100);
    CHECK(p != NULL);
    free(p);
}

static void calloc_rules(void) {
    errno = 0;
    CHECK(calloc(SIZE_MAX / 2, 3) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(calloc((size_t)1 << 32, (size_t)1 << 32) == NULL && errno == ENOMEM);
    void *z = calloc(0, 0);
    CHECK(z != NULL);
    free(z);
    /* Recycled memory comes back zeroed. */
    for (int round = 0; round < 3; round++) {
        size_t sizes[] = {8, 24, 100, 1000, 5000, 70000, 300000, 3000000};
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            char *dirty = malloc(sizes[i]);
            CHECK(dirty != NULL);
            memset(dirty, 0x5a, sizes[i]);
            free(dirty);
            unsigned char *c = calloc(1, sizes[i]);
            CHECK(c != NULL);
            for (size_t j = 0; j < sizes[i]; j++)
                CHECK(c[j] == 0);
            free(c);
        }
    }
}

static void realloc_rules(void) {
    char *p = realloc(NULL, 100);
    CHECK(p != NULL);
    for (int i = 0; i < 100; i++)
        p[i] = (char)i;
    size_t sizes[] = {200, 5000, 70000, 1 << 20, 5 << 20, 300, 50, 4 << 20, 16};
    size_t keep = 100;
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        p = realloc(p, sizes[s]);
        CHECK(p != NULL && malloc_usable_size(p) >= sizes[s]);
        if (sizes[s] < keep)
            keep = sizes[s];
        for (size_t i = 0; i < keep; i++)
            CHECK(p[i] == (char)i);
    }
    /* Failure leaves the block intact. */
    errno = 0;
    CHECK(realloc(p, SIZE_MAX) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(realloc(p, (size_t)1 << 47) == NULL && errno == ENOMEM);
    for (size_t i = 0; i < keep; i++)
        CHECK(p[i] == (char)i);
    /* realloc(p, 0) frees and returns NULL without touching errno. */
    errno = 77;
    CHECK(realloc(p, 0) == NULL);
    CHECK(errno == 77);
    /* realloc(NULL, 0) is malloc(0). */
    p = realloc(NULL, 0);
    CHECK(p != NULL);
    free(p);
}

static void reallocarray_rules(void) {
    int *a = reallocarray(NULL, 10, sizeof(int));
    CHECK(a != NULL);
    for (int i = 0; i < 10; i++)
        a[i] = i;
    errno = 0;
    CHECK(reallocarray(a, SIZE_MAX / 2, 4) == NULL && errno == ENOMEM);
    for (int i = 0; i < 10; i++)
        CHECK(a[i] == i);
    a = reallocarray(a, 1000, sizeof(int));
    CHECK(a != NULL);
    for (int i = 0; i < 10; i++)
        CHECK(a[i] == i);
    free(a);
}

static void memalign_rules(void) {
    for (size_t a = 1; a <= (1 << 20); a *= 2) {
        void *p = memalign(a, 100);
        CHECK(p != NULL && aligned_to(p, a));
        free(p);
    }
    /* Non-powers of two round up, as in glibc. */
    void *p = memalign(24, 10);
    CHECK(p != NULL && aligned_to(p, 32));
    free(p);
    p = memalign(3000, 10);
    CHECK(p != NULL && aligned_to(p, 4096));
    free(p);
    p = memalign(0, 10);
    CHECK(p != NULL);
    free(p);
    errno = 0;
    CHECK(memalign(SIZE_MAX / 2 + 2, 10) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(memalign(SIZE_MAX, 10) == NULL && errno == EINVAL);
}

static void posix_memalign_rules(void) {
    void *sentinel = (void *)0x1234, *p = sentinel;
    size_t bad[] = {0, 1, 2, 4, 12, 24, 40, 48, 1000, SIZE_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 99;
        CHECK(posix_memalign(&p, bad[i], 8) == EINVAL);
        CHECK(p == sentinel && errno == EINVAL);
    }
    errno = 99;
    CHECK(posix_memalign(&p, 64, SIZE_MAX) == ENOMEM);
    CHECK(p == sentinel && errno == ENOMEM);
    errno = 99;
    CHECK(posix_memalign(&p, SIZE_MAX / 2 + 1, 8) == ENOMEM);
    CHECK(p == sentinel && errno == ENOMEM);
    errno = 99;
    CHECK(posix_memalign(&p, 8, 0) == 0 && p != sentinel && errno == 99);
    free(p);
    CHECK(posix_memalign(&p, 4096, 10000) == 0 && aligned_to(p, 4096) && errno == 99);
    free(p);
}

static void aligned_alloc_rules(void) {
    /* glibc 2.38 / C17: any power of two (1 included) with any size. */
    for (size_t a = 1; a <= 8192; a *= 2) {
        size_t sizes[] = {0, 1, 3, 100, 4097};
        for (size_t s = 0; s < 5; s++) {
            void *p = aligned_alloc(a, sizes[s]);
            CHECK(p != NULL && aligned_to(p, a));
            free(p);
        }
    }
    size_t bad[] = {0, 3, 24, 1000, SIZE_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        CHECK(aligned_alloc(bad[i], 16) == NULL && errno == EINVAL);
    }
    errno = 0;
    CHECK(aligned_alloc(SIZE_MAX / 2 + 1, 1) == NULL && errno == ENOMEM);
}

static void page_aligned(void) {
    void *p = valloc(1);
    CHECK(p != NULL && aligned_to(p, PAGE));
    free(p);
    p = valloc(3 * PAGE + 1);
    CHECK(p != NULL && aligned_to(p, PAGE) && malloc_usable_size(p) >= 3 * PAGE + 1);
    free(p);
    p = pvalloc(1);
    CHECK(p != NULL && aligned_to(p, PAGE) && malloc_usable_size(p) >= PAGE);
    free(p);
    p = pvalloc(PAGE + 1);
    CHECK(p != NULL && aligned_to(p, PAGE) && malloc_usable_size(p) >= 2 * PAGE);
    free(p);
    errno = 0;
    CHECK(pvalloc(SIZE_MAX - 10) == NULL && errno == ENOMEM);
}

static void c23_frees(void) {
    void *p = malloc(100);
    free_sized(p, 100);
    p = aligned_alloc(64, 128);
    free_aligned_sized(p, 64, 128);
    free_sized(NULL, 0);
    free_aligned_sized(NULL, 64, 0);
}

static void introspection(void) {
    FILE *f = tmpfile();
    CHECK(f != NULL);

    /* malloc_stats writes to stderr: catch it in a file. */
    fflush(stderr);
    int saved = dup(2);
    CHECK(saved >= 0 && dup2(fileno(f), 2) == 2);
    malloc_stats();
    fflush(stderr);
    CHECK(dup2(saved, 2) == 2);
    close(saved);
    const char *text = slurp(f);
    CHECK(strstr(text, "Arena 0:\nsystem bytes     = ") != NULL);
    CHECK(strstr(text, "in use bytes     = ") != NULL);
    CHECK(strstr(text, "Total (incl. mmap):\n") != NULL);
    CHECK(strstr(text, "max mmap regions = ") != NULL);
    CHECK(strstr(text, "max mmap bytes   = ") != NULL);

    struct mallinfo2 m2 = mallinfo2();
    struct mallinfo m1 = mallinfo();
    CHECK(m2.arena > 0 && m2.arena == m2.uordblks + m2.fordblks);
    CHECK(m2.ordblks >= 1 && m2.keepcost <= m2.fordblks);
    CHECK((size_t)m1.arena == m2.arena && (size_t)m1.uordblks == m2.uordblks);
    CHECK((size_t)m1.hblks == m2.hblks);

    /* malloc_info: options must be 0. */
    CHECK(malloc_info(1, f) == EINVAL);
    CHECK(ftruncate(fileno(f), 0) == 0);
    rewind(f);
    CHECK(malloc_info(0, f) == 0);
    text = slurp(f);
    CHECK(strncmp(text, "<malloc version=\"1\">\n<heap nr=\"0\">\n<sizes>\n", 43) == 0);
    CHECK(strstr(text, "<total type=\"mmap\" count=\"") != NULL);
    CHECK(strstr(text, "</malloc>\n") != NULL);
    fclose(f);

    int trimmed = malloc_trim(0);
    CHECK(trimmed == 0 || trimmed == 1);
}

static void mallopt_rules(void) {
    /* glibc 2.35 and later take any threshold (mallopt.c has the table). */
    CHECK(mallopt(M_MMAP_THRESHOLD, 64 << 20) == 1);
    CHECK(mallopt(M_MMAP_THRESHOLD, -1) == 1);
    CHECK(mallopt(12345, 1) == 0 && errno == EINVAL); /* unknown code */
    CHECK(mallopt(M_TRIM_THRESHOLD, 1 << 20) == 1);
    CHECK(mallopt(M_TOP_PAD, 64 << 10) == 1);
    CHECK(mallopt(M_ARENA_MAX, 8) == 1);
    CHECK(mallopt(M_MMAP_MAX, 65536) == 1);

    /* The mmap threshold moves what is mapped directly. (As in dlmalloc
     * and glibc, a large request is still served from top when top is big
     * enough, so top is trimmed first.) */
    size_t h0 = mallinfo2().hblks;
    CHECK(mallopt(M_MMAP_THRESHOLD, 128 << 10) == 1);
    malloc_trim(0);
    void *p = malloc(512 << 10);
    CHECK(p && mallinfo2().hblks == h0 + 1);
    free(p);
    CHECK(mallopt(M_MMAP_THRESHOLD, 1 << 20) == 1);
    p = malloc(512 << 10);
    CHECK(p && mallinfo2().hblks == h0);
    free(p);
    malloc_trim(0);
    /* M_MMAP_MAX 0: no direct mappings below what a segment can hold. */
    CHECK(mallopt(M_MMAP_MAX, 0) == 1);
    p = malloc(1 << 20);
    CHECK(p && mallinfo2().hblks == h0);
    free(p);
    CHECK(mallopt(M_MMAP_MAX, 65536) == 1);
    CHECK(mallopt(M_MMAP_THRESHOLD, 256 << 10) == 1);
    CHECK(mallopt(M_TRIM_THRESHOLD, 2 << 20) == 1);
    CHECK(mallopt(M_TOP_PAD, 128 << 10) == 1);
}

static void extra_api(void) {
    /* Single-threaded: nothing moves between these calls, so the
     * statistics and the footprint calls agree exactly. */
    struct tessera_stats s, t;
    tessera_stats(&s);
    CHECK(s.footprint == tessera_footprint());
    CHECK(s.max_footprint == tessera_max_footprint());
    CHECK(s.footprint == s.arena + s.hblkhd);
    CHECK(s.arena == s.uordblks + s.fordblks);
    CHECK(s.max_footprint >= s.footprint);
    CHECK(tessera_check() == 0);
    /* A block too big for a segment is one more mapping, and the footprint
     * grows by exactly that mapping (its header and page rounding, under
     * 8 KiB), and shrinks back by as much when it is freed. */
    enum { BIG = 40 << 20 };
    void *big = malloc(BIG);
    CHECK(big != NULL);
    tessera_stats(&t);
    CHECK(t.hblks == s.hblks + 1);
    CHECK(t.hblkhd - s.hblkhd >= BIG && t.hblkhd - s.hblkhd <= BIG + 8192);
    CHECK(t.footprint - s.footprint == t.hblkhd - s.hblkhd);
    CHECK(t.footprint == tessera_footprint());
    CHECK(t.arena == s.arena && t.uordblks == s.uordblks && t.inuse_chunks == s.inuse_chunks);
    CHECK(tessera_max_footprint() >= t.footprint);
    free(big);
    tessera_stats(&t);
    CHECK(t.hblks == s.hblks && t.hblkhd == s.hblkhd && t.footprint == s.footprint);
    CHECK(tessera_footprint() == s.footprint);

    /* A footprint limit makes big requests fail with ENOMEM. */
    CHECK(tessera_footprint_limit() == 0);
    size_t lim = tessera_set_footprint_limit(tessera_footprint() + (4 << 20));
    CHECK(lim >= tessera_footprint() + (4 << 20) && lim % 4096 == 0);
    errno = 0;
    CHECK(malloc(64 << 20) == NULL && errno == ENOMEM);
    void *p = malloc(100);
    CHECK(p != NULL);
    free(p);
    CHECK(tessera_set_footprint_limit(0) == 0);
    p = malloc(64 << 20);
    CHECK(p != NULL);
    free(p);

    errno = 0;
    CHECK(tessera_write_snapshot(NULL, 1) == -1 && errno == EINVAL);
    CHECK(tessera_write_snapshot("/nonexistent-dir/x", 1) == -1 && errno == ENOENT);
}

int main(void) {
    tessera_serves_this_process();
    malloc_free_usable();
    errno_is_kept_on_success();
    impossible_requests();
    calloc_rules();
    realloc_rules();
    reallocarray_rules();
    memalign_rules();
    posix_memalign_rules();
    aligned_alloc_rules();
    page_aligned();
    c23_frees();
    introspection();
    mallopt_rules();
    extra_api();
    CHECK(tessera_check() == 0);
    puts("api: ok");
    return 0;
}
