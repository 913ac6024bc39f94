/* M_PERTURB and MALLOC_PERTURB_ (issue 16, item 5). With perturb byte b,
 * every block malloc (and realloc, memalign, aligned_alloc, posix_memalign,
 * valloc, pvalloc) hands out is filled with b ^ 0xff up to the size asked
 * for, calloc's blocks are zero, and a freed block is filled with b (the
 * words the allocator keeps in a free chunk aside: its links at the start,
 * the boundary tag at the end). Off again, freed blocks keep their bytes.
 *
 * `perturb env`: started with MALLOC_PERTURB_=90 (0x5a), checked from the
 * first allocation on. `perturb mallopt`: set with mallopt(M_PERTURB) by
 * the main thread, checked there and in a thread started afterwards. Then
 * off again with mallopt(M_PERTURB, 0). */
#include "check.h"

#include <malloc.h>
#include <pthread.h>

static int b; /* the perturb byte in effect */

static const size_t SIZES[] = {1,    8,     24,    40,     64,     100,     250, 1000,
                               1032, 1500,  4000,  20000,  65000,  70000,   200000,
                               300000, 2000000};

/* Bytes [from, to) of p all equal v. */
static int all(const unsigned char *p, size_t from, size_t to, int v) {
    for (size_t i = from; i < to; i++)
        if (p[i] != (unsigned char)v) {
            fprintf(stderr, "byte %zu of %p is %#x, expected %#x\n", i, (void *)p, p[i],
                    (unsigned char)v);
            return 0;
        }
    return 1;
}

/* A block of `n` bytes from malloc: b ^ 0xff throughout. Freed: b, apart
 * from the first 48 bytes (links of a free chunk) and the last 8 (the
 * boundary tag may lie there); blocks of 128 KiB and more may be unmapped,
 * so they are not read after the free. A neighbour keeps the block from
 * merging into top. */
static void check_malloc_free(size_t n) {
    unsigned char *p = malloc(n);
    CHECK(p != NULL);
    CHECK(all(p, 0, n, b ^ 0xff));
    void *guard = malloc(16);
    CHECK(guard != NULL);
    memset(p, 0x11, n);
    free(p);
    if (n >= 64 && n < (128 << 10))
        CHECK(all(p, 48, n - 8, b));
    free(guard);
}

static void check_all_kinds(void) {
    for (size_t i = 0; i < sizeof SIZES / sizeof SIZES[0]; i++)
        check_malloc_free(SIZES[i]);
    /* calloc: zero, not perturbed. */
    for (size_t i = 0; i < sizeof SIZES / sizeof SIZES[0]; i++) {
        unsigned char *c = calloc(1, SIZES[i]);
        CHECK(c != NULL && all(c, 0, SIZES[i], 0));
        free(c);
    }
    /* The aligned allocators. */
    unsigned char *a = memalign(256, 3000);
    CHECK(a != NULL && all(a, 0, 3000, b ^ 0xff));
    free(a);
    a = aligned_alloc(64, 500);
    CHECK(a != NULL && all(a, 0, 500, b ^ 0xff));
    free(a);
    void *v = NULL;
    CHECK(posix_memalign(&v, 4096, 10000) == 0);
    CHECK(all(v, 0, 10000, b ^ 0xff));
    free(v);
    a = valloc(5000);
    CHECK(a != NULL && all(a, 0, 5000, b ^ 0xff));
    free(a);
    a = pvalloc(100);
    CHECK(a != NULL && all(a, 0, 4096, b ^ 0xff));
    free(a);
    /* realloc: the old bytes move, the new ones are perturbed. */
    unsigned char *r = malloc(100);
    CHECK(r != NULL);
    memset(r, 0x22, 100);
    size_t old = 100;
    size_t grow[] = {120, 2000, 50000, 400000, 3000000};
    for (size_t i = 0; i < sizeof grow / sizeof grow[0]; i++) {
        r = realloc(r, grow[i]);
        CHECK(r != NULL);
        CHECK(all(r, 0, 100, 0x22));
        CHECK(all(r, old, grow[i], b ^ 0xff));
        memset(r + 100, 0x33, grow[i] - 100);
        old = grow[i];
    }
    free(r);
}

static void *in_thread(void *arg) {
    (void)arg;
    check_all_kinds();
    return NULL;
}

/* Perturbing off: a freed block keeps what the program wrote (past the
 * words a cached or free chunk uses). */
static void check_off(void) {
    CHECK(mallopt(M_PERTURB, 0) == 1);
    for (int round = 0; round < 3; round++) {
        unsigned char *p = malloc(200);
        void *guard = malloc(16);
        CHECK(p != NULL && guard != NULL);
        memset(p, 0x44, 200);
        free(p);
        CHECK(all(p, 48, 192, 0x44));
        free(guard);
    }
}

int main(int argc, char **argv) {
    require_tessera();
    CHECK(argc == 2);
    if (strcmp(argv[1], "env") == 0) {
        const char *e = getenv("MALLOC_PERTURB_");
        CHECK(e != NULL);
        b = atoi(e);
    } else {
        CHECK(strcmp(argv[1], "mallopt") == 0);
        /* Blocks cached before the setting, in this thread. */
        for (int i = 0; i < 100; i++)
            free(malloc(64));
        b = 0x5a;
        CHECK(mallopt(M_PERTURB, b) == 1);
    }
    check_all_kinds();
    pthread_t t;
    CHECK(pthread_create(&t, NULL, in_thread, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    check_off();
    printf("perturb: ok (%s, byte %#x)\n", argv[1], b);
    return 0;
}
