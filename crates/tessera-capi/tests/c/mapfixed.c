/* Other memory mapped with MAP_FIXED right before and right after a 16 MiB
 * block (issue 16, item 8). A program that does this owns those pages as
 * far as it knows; the allocator must not keep anything there that its
 * checks or its frees read. Round after round, with separate heaps and
 * arenas (segments) and other large blocks coming and going so that the
 * layout changes, the program
 *   - takes a 16 MiB block (directly mapped: M_MMAP_THRESHOLD is 1 MiB),
 *   - maps a page of its own with MAP_FIXED over the page just before the
 *     block and the page just after it, and fills them, unless that page
 *     belongs to a file (a library), the stack or the kernel, or is the
 *     anonymous tail of a library (its .bss), which are not the
 *     allocator's, or a page of its other large blocks,
 *   - frees the block (which must not abort), checks every heap, and
 *     goes on allocating.
 * Pages that were free before are unmapped again; pages that replaced
 * something stay (the program now owns them).
 *
 * argv[1]: rounds (default 200). */
#include "check.h"

#include <malloc.h>
#include <sys/mman.h>
#include <tessera.h>

#define PAGE 4096UL

/* What /proc/self/maps says about the page at `addr`: 0 = nothing mapped
 * there, 1 = an anonymous mapping no file mapping touches from below,
 * 2 = anything else (a file, [stack], [vdso], a library's .bss). */
static int page_kind(uintptr_t addr) {
    FILE *f = fopen("/proc/self/maps", "r");
    CHECK(f != NULL);
    char line[512];
    int kind = 0;
    uintptr_t prev_end = 0;
    int prev_file = 0;
    while (fgets(line, sizeof line, f)) {
        uintptr_t lo, hi;
        unsigned long inode = 0;
        char path[256] = "";
        if (sscanf(line, "%lx-%lx %*s %*s %*s %lu %255s", &lo, &hi, &inode, path) < 3)
            continue;
        int file = path[0] != 0;
        if (addr >= lo && addr < hi) {
            int bss = !file && prev_file && prev_end == lo;
            kind = (file || bss) ? 2 : 1;
            break;
        }
        prev_end = hi;
        prev_file = file;
    }
    fclose(f);
    return kind;
}

/* The program's other large blocks: it never maps over pages they touch. */
static void *other[3];

static int in_other_block(uintptr_t addr) {
    for (int i = 0; i < 3; i++) {
        uintptr_t q = (uintptr_t)other[i];
        if (q != 0 && addr >= (q & ~(PAGE - 1)) &&
            addr < ((q + malloc_usable_size(other[i]) + PAGE - 1) & ~(PAGE - 1)))
            return 1;
    }
    return 0;
}

/* Maps a page of the program's own at `addr` if that is allowed (see the
 * header); returns 1 if it replaced a mapping, 0 if it filled a hole, -1
 * if it left the page alone. */
static int take_page(uintptr_t addr, int fill) {
    int kind = page_kind(addr);
    if (kind == 2 || in_other_block(addr))
        return -1;
    void *m = mmap((void *)addr, PAGE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    CHECK(m == (void *)addr);
    memset(m, fill, PAGE);
    return kind;
}

int main(int argc, char **argv) {
    require_tessera();
    int rounds = argc > 1 ? atoi(argv[1]) : 200;
    alarm(30); /* a lock word overwritten would hang: fail instead */
    CHECK(mallopt(M_MMAP_THRESHOLD, 1 << 20) == 1);
    uint64_t seed = 99;
    void *small[64] = {0};
    tessera_heap *heaps[4] = {0};
    int replaced = 0, filled = 0;
    for (int r = 0; r < rounds; r++) {
        /* Change the layout: a separate heap (a segment of its own) and
         * other large blocks come and go. */
        int h = (int)(next_rand(&seed) % 4);
        if (heaps[h] != NULL)
            tessera_heap_destroy(heaps[h]);
        heaps[h] = tessera_heap_create();
        CHECK(heaps[h] != NULL);
        for (int i = 0; i < 20; i++)
            CHECK(tessera_heap_malloc(heaps[h], 16 + next_rand(&seed) % 3000) != NULL);
        int o = (int)(next_rand(&seed) % 3);
        free(other[o]);
        other[o] = malloc((1 << 20) + next_rand(&seed) % (8 << 20));
        CHECK(other[o] != NULL);
        for (int i = 0; i < 64; i++) {
            free(small[i]);
            small[i] = malloc(next_rand(&seed) % 5000);
            CHECK(small[i] != NULL);
        }

        size_t n = 16 << 20;
        char *p = malloc(n);
        CHECK(p != NULL);
        size_t usable = malloc_usable_size(p);
        CHECK(usable >= n);
        memset(p, 0x5c, PAGE);
        memset(p + usable - PAGE, 0x5c, PAGE);
        uintptr_t before = ((uintptr_t)p & ~(PAGE - 1)) - PAGE;
        uintptr_t after = ((uintptr_t)p + usable + PAGE - 1) & ~(PAGE - 1);
        int kb = take_page(before, 0xAA);
        int ka = take_page(after, 0xBB);
        free(p); /* must not abort */
        CHECK(tessera_check() == 0);
        for (int i = 0; i < 4; i++)
            if (heaps[i] != NULL)
                CHECK(tessera_heap_check(heaps[i]) == 0);
        replaced += (kb == 1) + (ka == 1);
        filled += (kb == 0) + (ka == 0);
        /* The program's own pages keep what it wrote; holes go back. */
        if (kb >= 0) {
            CHECK(((unsigned char *)before)[100] == 0xAA);
            if (kb == 0)
                CHECK(munmap((void *)before, PAGE) == 0);
        }
        if (ka >= 0) {
            CHECK(((unsigned char *)after)[100] == 0xBB);
            if (ka == 0)
                CHECK(munmap((void *)after, PAGE) == 0);
        }
    }
    for (int i = 0; i < 64; i++)
        free(small[i]);
    for (int i = 0; i < 3; i++)
        free(other[i]);
    for (int i = 0; i < 4; i++)
        tessera_heap_destroy(heaps[i]);
    CHECK(tessera_check() == 0);
    printf("mapfixed: ok (%d rounds; %d pages were holes, %d replaced anonymous memory)\n",
           rounds, filled, replaced);
    return 0;
}
