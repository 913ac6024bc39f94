/* Force-included (-include weak.h) when a test program is built to run
 * under LD_PRELOAD: the library is not linked in, so the functions only it
 * defines (tessera.h, and C23's free_sized family that glibc 2.36 lacks)
 * are declared weak and bound by the dynamic loader to the preloaded copy. */
#pragma weak free_sized
#pragma weak free_aligned_sized
#pragma weak tessera_heap_create
#pragma weak tessera_heap_destroy
#pragma weak tessera_heap_malloc
#pragma weak tessera_heap_calloc
#pragma weak tessera_heap_realloc
#pragma weak tessera_heap_memalign
#pragma weak tessera_heap_free
#pragma weak tessera_heap_usable_size
#pragma weak tessera_heap_trim
#pragma weak tessera_heap_stats
#pragma weak tessera_heap_malloc_stats
#pragma weak tessera_heap_footprint
#pragma weak tessera_heap_max_footprint
#pragma weak tessera_heap_footprint_limit
#pragma weak tessera_heap_set_footprint_limit
#pragma weak tessera_heap_check
#pragma weak tessera_heap_write_snapshot
#pragma weak tessera_footprint
#pragma weak tessera_max_footprint
#pragma weak tessera_footprint_limit
#pragma weak tessera_set_footprint_limit
#pragma weak tessera_stats
#pragma weak tessera_check
#pragma weak tessera_write_snapshot
