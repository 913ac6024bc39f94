/* A program to record with TESSERA_TRACE: every kind of call, from several
 * threads, with blocks handed between threads, some left live at exit and
 * one freed by an atexit handler. Ends with `exit(0)` or returns from main,
 * as argv[1] says. Prints how many blocks it leaves live. */
#include "check.h"

#include <malloc.h>
#include <pthread.h>

enum { THREADS = 4, ROUNDS = 3000 };
static void *handoff[THREADS][ROUNDS / 10];
static void *at_exit_block;

static void free_at_exit(void) { free(at_exit_block); }

static void *work(void *arg) {
    long id = (long)arg;
    uint64_t seed = (uint64_t)id * 77 + 1;
    void *slots[16] = {0};
    for (int r = 0; r < ROUNDS; r++) {
        int k = (int)(next_rand(&seed) % 16);
        void *old = slots[k];
        size_t size = next_rand(&seed) % 600;
        switch (next_rand(&seed) % 10) {
        case 0: free(old); slots[k] = malloc(size); break;
        case 1: free(old); slots[k] = calloc(3, size); break;
        case 2: slots[k] = realloc(old, size + 1); break;
        case 3: free(old); slots[k] = memalign(64, size); break;
        case 4: free(old); CHECK(posix_memalign(&slots[k], 256, size) == 0); break;
        case 5: free(old); slots[k] = aligned_alloc(32, size); break;
        case 6: free(old); slots[k] = valloc(size); break;
        case 7: free(old); slots[k] = pvalloc(size); break;
        case 8: free(old); slots[k] = reallocarray(NULL, 4, size + 1); break;
        case 9:
            if (old)
                CHECK(realloc(old, 0) == NULL);
            slots[k] = malloc(size);
            break;
        }
        CHECK(slots[k] != NULL);
        if (r % 10 == 0)
            handoff[id][r / 10] = malloc(40); /* freed by the main thread */
    }
    for (int k = 0; k < 16; k++)
        free(slots[k]);
    return NULL;
}

int main(int argc, char **argv) {
    tessera_serves_this_process();
    CHECK(argc == 2);
    at_exit_block = malloc(123);
    CHECK(atexit(free_at_exit) == 0);
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, work, (void *)i) == 0);
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    for (int i = 0; i < THREADS; i++)
        for (int j = 0; j < ROUNDS / 10; j++)
            free(handoff[i][j]);
    /* Leave 7 blocks live. */
    for (int i = 0; i < 7; i++)
        CHECK(malloc((size_t)i * 100) != NULL);
    printf("leaked 7\n");
    fflush(stdout);
    if (strcmp(argv[1], "exit") == 0)
        exit(0);
    return 0;
}
