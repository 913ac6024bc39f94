/* memalign, posix_memalign and aligned_alloc for every power-of-two
 * alignment from 8 B to 16 MiB, with sizes around the alignment, mixed
 * with plain mallocs; every block is written in full, and the heap is
 * checked at the end. */
#include "check.h"

#include <malloc.h>
#include <tessera.h>

enum { MEMALIGN, POSIX, ALIGNED, KINDS };

static void *get(int kind, size_t align, size_t size) {
    void *p = NULL;
    switch (kind) {
    case MEMALIGN:
        p = memalign(align, size);
        break;
    case POSIX:
        CHECK(posix_memalign(&p, align, size) == 0);
        break;
    case ALIGNED:
        p = aligned_alloc(align, size);
        break;
    }
    CHECK(p != NULL);
    CHECK(((uintptr_t)p & (align - 1)) == 0);
    CHECK(malloc_usable_size(p) >= size);
    return p;
}

int main(void) {
    tessera_serves_this_process();
    uint64_t seed = 0x243f6a8885a308d3ULL;
    for (size_t align = 8; align <= (16u << 20); align *= 2) {
        size_t sizes[] = {0, 1, 8, 100, align - 1, align, align + 1, 3 * align};
        void *held[KINDS * 8];
        int n = 0;
        for (int kind = 0; kind < KINDS; kind++) {
            for (size_t s = 0; s < 8; s++) {
                size_t size = sizes[s];
                if (align >= (4u << 20) && size > align)
                    size = align + 1; /* keep the 16 MiB case to ~50 MiB */
                void *spacer = malloc(next_rand(&seed) % 200);
                void *p = get(kind, align, size);
                memset(p, 0x77, size);
                held[n++] = p;
                free(spacer);
            }
        }
        /* Free in a scrambled order so that neighbours coalesce. */
        for (int i = 0; i < n; i++) {
            int j = (int)(next_rand(&seed) % (uint64_t)n);
            void *t = held[i];
            held[i] = held[j];
            held[j] = t;
        }
        for (int i = 0; i < n; i++)
            free(held[i]);
        CHECK(tessera_check() == 0);
    }
    /* Many small aligned blocks live at once. */
    void *many[4096];
    for (int i = 0; i < 4096; i++) {
        size_t align = (size_t)8 << (next_rand(&seed) % 10);
        many[i] = get(i % KINDS, align, next_rand(&seed) % 300);
    }
    for (int i = 0; i < 4096; i += 2)
        free(many[i]);
    for (int i = 1; i < 4096; i += 2)
        free(many[i]);
    CHECK(tessera_check() == 0);
    puts("align: ok");
    return 0;
}
