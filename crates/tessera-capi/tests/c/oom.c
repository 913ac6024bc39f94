/* Out of memory for real: under an RLIMIT_AS a little above what the
 * process uses, every allocation function must fail with NULL (or
 * ENOMEM from posix_memalign) once the address space is gone, never crash,
 * leave the heap consistent (tessera_check), keep a failed realloc's block
 * intact, and reuse memory freed afterwards. */
#include "check.h"
#include <sys/resource.h>
#include "tessera.h"

#define MIB (1024UL * 1024UL)
#define MAXBLOCKS 4096

static size_t vm_size(void) {
    FILE *f = fopen("/proc/self/status", "r");
    CHECK(f != NULL);
    char line[256];
    size_t kib = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %zu kB", &kib) == 1)
            break;
    fclose(f);
    CHECK(kib > 0);
    return kib * 1024;
}

static void *blocks[MAXBLOCKS];

int main(void) {
    tessera_serves_this_process();
    /* Warm up every path (thread cache, arena, direct chunks) before the
     * limit, so that what fails below is the allocator, not its set-up. */
    free(malloc(100));
    free(malloc(100000));
    free(malloc(4 * MIB));

    struct rlimit rl = {vm_size() + 160 * MIB, RLIM_INFINITY};
    rl.rlim_max = rl.rlim_cur;
    CHECK(setrlimit(RLIMIT_AS, &rl) == 0);

    /* Fill the address space with a mix of sizes until malloc says no. */
    size_t n = 0, sizes[] = {64, 5000, 200000, 3 * MIB};
    int failed = 0;
    for (; n < MAXBLOCKS; n++) {
        size_t sz = sizes[n % 4];
        errno = 0;
        blocks[n] = malloc(sz);
        if (blocks[n] == NULL) {
            CHECK(errno == ENOMEM);
            failed = 1;
            break;
        }
        memset(blocks[n], (int)n, sz < 4096 ? sz : 4096);
    }
    CHECK(failed);
    CHECK(n > 10);

    /* Every entry point fails cleanly now, for a big request. */
    errno = 0;
    CHECK(malloc(64 * MIB) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(calloc(8, 8 * MIB) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(aligned_alloc(4096, 64 * MIB) == NULL && errno == ENOMEM);
    void *p = (void *)1;
    errno = 0;
    CHECK(posix_memalign(&p, 64, 64 * MIB) == ENOMEM);
    CHECK(p == (void *)1);  /* untouched on failure */
    CHECK(errno == ENOMEM); /* and the code set in errno, as glibc does */

    /* A failed realloc keeps the old block and its bytes. */
    char *keep = blocks[1];
    errno = 0;
    CHECK(realloc(keep, 64 * MIB) == NULL && errno == ENOMEM);
    for (int i = 0; i < 4096; i++)
        CHECK(keep[i] == (char)1);

    CHECK(tessera_check() == 0);

    /* Freed memory is reused under the same limit. */
    for (size_t i = 0; i < n; i += 2) {
        free(blocks[i]);
        blocks[i] = NULL;
    }
    for (size_t i = 0; i < n; i += 2) {
        blocks[i] = malloc(sizes[i % 4]);
        CHECK(blocks[i] != NULL);
        memset(blocks[i], 7, sizes[i % 4] < 4096 ? sizes[i % 4] : 4096);
    }
    CHECK(tessera_check() == 0);
    for (size_t i = 0; i < n; i++)
        free(blocks[i]);
    CHECK(tessera_check() == 0);

    /* After everything is freed, a large block fits again. */
    void *big = malloc(32 * MIB);
    CHECK(big != NULL);
    free(big);
    printf("oom: ok (%zu blocks before the limit)\n", n);
    return 0;
}
