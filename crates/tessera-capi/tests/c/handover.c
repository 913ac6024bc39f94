/* A block smaller than a cache line that one thread allocated and another
 * freed is not handed out again by the thread that freed it (the thread
 * cache's foreign classes: no passive false sharing, as in the
 * cache-scratch benchmark), while a larger one is reused at once. */
#include "check.h"

#include <pthread.h>

enum { SEEDS = 4, LATER = 64 };

static void *small_seeds[SEEDS];
static void *large_seeds[SEEDS];
static int small_back, large_back;

static void *worker(void *arg) {
    (void)arg;
    /* The worker's own blocks first: it gets an arena of its own. */
    void *own_small = malloc(8);
    void *own_large = malloc(200);
    CHECK(own_small != NULL && own_large != NULL);

    for (int i = 0; i < SEEDS; i++)
        free(small_seeds[i]);
    void *got[LATER];
    for (int i = 0; i < LATER; i++) {
        got[i] = malloc(8);
        CHECK(got[i] != NULL);
        memset(got[i], 0x5a, 8);
        for (int j = 0; j < SEEDS; j++)
            small_back += got[i] == small_seeds[j];
    }
    for (int i = 0; i < LATER; i++)
        free(got[i]);

    for (int i = 0; i < SEEDS; i++)
        free(large_seeds[i]);
    for (int i = 0; i < SEEDS; i++) {
        got[i] = malloc(200);
        CHECK(got[i] != NULL);
        for (int j = 0; j < SEEDS; j++)
            large_back += got[i] == large_seeds[j];
    }
    for (int i = 0; i < SEEDS; i++)
        free(got[i]);
    free(own_small);
    free(own_large);
    return NULL;
}

int main(void) {
    tessera_serves_this_process();
    for (int i = 0; i < SEEDS; i++) {
        small_seeds[i] = malloc(8);
        large_seeds[i] = malloc(200);
        CHECK(small_seeds[i] != NULL && large_seeds[i] != NULL);
        memset(small_seeds[i], 1, 8);
        memset(large_seeds[i], 2, 200);
    }
    pthread_t t;
    CHECK(pthread_create(&t, NULL, worker, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    printf("handover: %d of %d small blocks handed back, %d of %d large\n", small_back,
           SEEDS, large_back, SEEDS);
    CHECK(small_back == 0);
    CHECK(large_back == SEEDS);
    printf("handover: ok\n");
    return 0;
}
