/* Prints what the environment configured, for the configuration tests:
 * whether a 512 KiB block is mapped directly (the mmap threshold), the
 * usable size of a 5,000-byte block (rounded up to its medium class unless
 * TESSERA_TCACHE_MEDIUM=0) and how many arenas 8 busy threads end up using
 * (TESSERA_ARENA_MAX). */
#include "check.h"

#include <malloc.h>
#include <pthread.h>

static pthread_barrier_t go;

static void *busy(void *arg) {
    (void)arg;
    pthread_barrier_wait(&go);
    for (int i = 0; i < 20000; i++)
        free(malloc((size_t)(i % 50) * 16 + 8));
    return NULL;
}

int main(void) {
    tessera_serves_this_process();
    size_t h0 = mallinfo2().hblks;
    void *p = malloc(512 << 10);
    CHECK(p != NULL);
    printf("direct=%zu\n", mallinfo2().hblks - h0);
    free(p);
    void *m = malloc(5000);
    CHECK(m != NULL);
    printf("usable5000=%zu\n", malloc_usable_size(m));
    free(m);

    pthread_t t[8];
    CHECK(pthread_barrier_init(&go, NULL, 8) == 0);
    for (int i = 0; i < 8; i++)
        CHECK(pthread_create(&t[i], NULL, busy, NULL) == 0);
    for (int i = 0; i < 8; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    static char xml[1 << 20];
    FILE *f = fmemopen(xml, sizeof xml, "w");
    CHECK(f != NULL);
    CHECK(malloc_info(0, f) == 0);
    fclose(f);
    int heaps = 0;
    for (const char *s = strstr(xml, "<heap nr="); s; s = strstr(s + 1, "<heap nr="))
        heaps++;
    printf("arenas=%d\n", heaps);
    return 0;
}
