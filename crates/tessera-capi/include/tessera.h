/* tessera.h: the extra API of libtessera.so.
 *
 * libtessera.so replaces the standard allocation functions (malloc, free,
 * calloc, realloc, reallocarray, memalign, posix_memalign, aligned_alloc,
 * valloc, pvalloc, malloc_usable_size, free_sized, free_aligned_sized) and
 * glibc's malloc_trim, malloc_stats, mallinfo, mallinfo2, mallopt and
 * malloc_info; their declarations are in <stdlib.h> and <malloc.h>. This
 * header adds what only Tessera has:
 *
 *  - separate heaps, like dlmalloc's mspaces: a heap of your own, with its
 *    own memory, that you can destroy in one call;
 *  - the footprint (bytes obtained from the OS) and a limit on it;
 *  - the full consistency checker;
 *  - heap snapshots, written to a file in the text format documented in
 *    the Rust crate `tessera` (module `inspect`), which the `tessera`
 *    command and the visualiser read.
 *
 * Link with -ltessera (or preload the library). See docs/c-library.md.
 */
#ifndef TESSERA_H
#define TESSERA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Statistics of a heap, or of the whole process-wide allocator. Sizes in
 * bytes. arena == uordblks + fordblks, footprint == arena + hblkhd. */
struct tessera_stats {
    size_t arena;         /* committed in segments */
    size_t ordblks;       /* free chunks, top included */
    size_t hblks;         /* directly mapped chunks */
    size_t hblkhd;        /* bytes mapped for them */
    size_t uordblks;      /* in use within segments */
    size_t fordblks;      /* free within segments, top included */
    size_t keepcost;      /* size of the top chunk (what trimming can free) */
    size_t footprint;     /* obtained from the OS now */
    size_t max_footprint; /* the most ever obtained at once */
    size_t inuse_chunks;  /* in-use chunks within segments */
    size_t segments;      /* number of segments */
};

/* ---- Separate heaps ------------------------------------------------------
 * A heap is safe to share between threads (each call takes the heap's
 * lock) and survives fork in the child. Blocks of a heap must be freed or
 * resized through the same heap: free() of such a block, or
 * tessera_heap_free() on the wrong heap, is detected and aborts. Calls on
 * separate heaps are not recorded by TESSERA_TRACE. */
typedef struct tessera_heap tessera_heap;

/* A new, empty heap; NULL with errno ENOMEM if the OS refuses memory. */
tessera_heap *tessera_heap_create(void);
/* Returns all of the heap's memory to the OS. Every block of the heap
 * becomes invalid. No other thread may be using the heap. NULL: no-op. */
void tessera_heap_destroy(tessera_heap *heap);

/* The standard functions, on one heap, with the same rules (NULL and
 * ENOMEM on failure; realloc(p, 0) frees p and returns NULL; memalign
 * rounds a non-power-of-two alignment up, EINVAL beyond SIZE_MAX/2+1).
 * Every tessera_heap_ function given a NULL heap does nothing, returns
 * NULL, 0 or -1, and sets errno to EINVAL (tessera_heap_destroy(NULL)
 * aside, which is a no-op like free(NULL)). */
void *tessera_heap_malloc(tessera_heap *heap, size_t size);
void *tessera_heap_calloc(tessera_heap *heap, size_t n, size_t size);
void *tessera_heap_realloc(tessera_heap *heap, void *ptr, size_t size);
void *tessera_heap_memalign(tessera_heap *heap, size_t alignment, size_t size);
void tessera_heap_free(tessera_heap *heap, void *ptr);
size_t tessera_heap_usable_size(tessera_heap *heap, void *ptr);
/* Gives free memory back to the OS, keeping pad bytes at the top; 1 if
 * anything was released. */
int tessera_heap_trim(tessera_heap *heap, size_t pad);

/* Statistics of one heap. */
void tessera_heap_stats(tessera_heap *heap, struct tessera_stats *out);
/* Like malloc_stats(), for one heap, on stderr. */
void tessera_heap_malloc_stats(tessera_heap *heap);
size_t tessera_heap_footprint(tessera_heap *heap);
size_t tessera_heap_max_footprint(tessera_heap *heap);
/* 0 = no limit. Requests that would take the heap's footprint past the
 * limit fail (NULL, ENOMEM). The setter rounds up to whole pages and
 * returns the limit in effect. */
size_t tessera_heap_footprint_limit(tessera_heap *heap);
size_t tessera_heap_set_footprint_limit(tessera_heap *heap, size_t bytes);
/* Full consistency check: 0, or -1 after one line on stderr (errno
 * ENOTRECOVERABLE). */
int tessera_heap_check(tessera_heap *heap);
/* Writes a snapshot of the heap (layout of every chunk, plus the raw bytes
 * of at most max_pages pages) to path. 0, or -1 with errno. */
int tessera_heap_write_snapshot(tessera_heap *heap, const char *path, size_t max_pages);

/* ---- The process-wide allocator (what malloc uses) ---------------------- */
size_t tessera_footprint(void);
size_t tessera_max_footprint(void);
size_t tessera_footprint_limit(void);
size_t tessera_set_footprint_limit(size_t bytes);
void tessera_stats(struct tessera_stats *out);
int tessera_check(void);
/* One snapshot per arena, one after the other, each with at most
 * max_pages pages of raw bytes. 0, or -1 with errno. */
int tessera_write_snapshot(const char *path, size_t max_pages);

#ifdef __cplusplus
}
#endif

#endif /* TESSERA_H */
