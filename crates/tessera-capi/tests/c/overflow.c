/* Overflows into chunks the allocator keeps for itself (issue 16, item 7):
 * a block written past its end into the next chunk, when that chunk sits
 * in the thread's cache or is parked on its arena's quick list, is caught
 * when the block is freed (not later, when the neighbour is reused), and a
 * write after free into a cached block's link is reported with that
 * block's address (not with the link value it left). One case per run
 * (argv[1]); the program prints the addresses the message must name on
 * stdout, then does the misuse. It must die with SIGABRT and a message,
 * inside that free for the overflows (it prints "overflow: free returned"
 * after it), and prints "overflow: survived" if nothing was noticed.
 *
 * Cases: cached-A, cached-NUL, cached-b, cached-16 (one byte 'A', one NUL
 * byte, one 'b', 16 bytes into a cached neighbour: 'A' and NUL clear the
 * head's CINUSE bit, 'b' its PINUSE bit); parked-A (one byte into a parked
 * neighbour); link (a write after free into a cached block's link). Each
 * runs in a fresh thread, whose first small allocations come from one
 * refill of its own cache. Before the misuse, the program checks in a
 * snapshot of the heap that the neighbour really is cached (or parked). */
#include "check.h"

#include <malloc.h>
#include <pthread.h>
#include <tessera.h>

static const char *which;

/* The kind of the chunk at `chunk` in a fresh snapshot ("cached",
 * "parked", "inuse", ...), in a static buffer. */
static const char *kind_of(uintptr_t chunk) {
    static char text[1 << 22];
    CHECK(tessera_write_snapshot("overflow.snapshot", 0) == 0);
    FILE *f = fopen("overflow.snapshot", "r");
    CHECK(f != NULL);
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
    remove("overflow.snapshot");
    char key[64];
    snprintf(key, sizeof key, "chunk 0x%lx ", (unsigned long)chunk);
    const char *line = strstr(text, key);
    CHECK(line != NULL);
    static char kind[32];
    CHECK(sscanf(line, "chunk %*s %*s %*s %31s", kind) == 1);
    return kind;
}

/* Among `n` blocks of `size` bytes from one refill, one whose successor
 * in memory is not among them (so it is still cached). */
static char *with_cached_successor(char **b, int n, size_t step) {
    for (int i = 0; i < n; i++) {
        int taken = 0;
        for (int j = 0; j < n; j++)
            taken |= b[j] == b[i] + step;
        if (!taken)
            return b[i];
    }
    return NULL;
}

static void report(const char *culprit_name, void *culprit, void *neighbour) {
    printf("%s %p\nneighbour %p\n", culprit_name, culprit, neighbour);
    fflush(stdout);
}

static void *run(void *arg) {
    (void)arg;
    if (strncmp(which, "cached-", 7) == 0) {
        char *b[3];
        for (int i = 0; i < 3; i++)
            CHECK((b[i] = malloc(24)) != NULL);
        size_t step = malloc_usable_size(b[0]) + 8; /* the chunk size, 32 */
        char *x = with_cached_successor(b, 3, step);
        CHECK(x != NULL);
        char *next = x + step;
        CHECK(strcmp(kind_of((uintptr_t)next - 16), "cached") == 0);
        report("culprit", x, next);
        size_t u = malloc_usable_size(x);
        if (strcmp(which, "cached-A") == 0)
            x[u] = 'A';
        else if (strcmp(which, "cached-NUL") == 0)
            x[u] = 0;
        else if (strcmp(which, "cached-b") == 0)
            x[u] = 'b';
        else
            memset(x, 'A', u + 16);
        free(x);
        puts("overflow: free returned");
        fflush(stdout);
    } else if (strcmp(which, "parked-A") == 0) {
        /* N blocks of 40 bytes (48-byte chunks); x and its successor n
         * stay. CAP frees of others (CAP: the thread cache's capacity for
         * the class, 256) fill the class at least once, so that a flush has
         * left it more than half full; then n; then CAP / 2 - 1 more frees
         * fill it again and the flush that follows gives the most recent
         * half, n among them, to the arena, which parks it. */
        enum { N = 1200, CAP = 256 };
        static char *b[N];
        for (int i = 0; i < N; i++)
            CHECK((b[i] = malloc(40)) != NULL);
        size_t step = malloc_usable_size(b[0]) + 8;
        int xi = -1, ni = -1;
        /* (Both of the class's own size: the last chunk of a refill may be
         * 16 bytes larger, of the next class.) */
        for (int i = 0; i < N && xi < 0; i++)
            for (int j = 0; j < N; j++)
                if (b[j] == b[i] + step && malloc_usable_size(b[j]) == step - 8) {
                    xi = i;
                    ni = j;
                    break;
                }
        CHECK(xi >= 0);
        int freed = 0;
        for (int i = 0; i < N && freed < CAP + CAP / 2 - 1; i++) {
            if (i == xi || i == ni)
                continue;
            free(b[i]);
            b[i] = NULL;
            if (++freed == CAP)
                free(b[ni]);
        }
        char *x = b[xi], *next = x + step;
        CHECK(strcmp(kind_of((uintptr_t)next - 16), "parked") == 0);
        report("culprit", x, next);
        x[malloc_usable_size(x)] = 'A';
        free(x);
        puts("overflow: free returned");
        fflush(stdout);
    } else if (strcmp(which, "link") == 0) {
        char *p = malloc(24);
        char *q = malloc(24);
        CHECK(p != NULL && q != NULL);
        free(q);
        free(p); /* p is cached, at the head of its list */
        report("freed", p, q);
        memset(p, 'Z', 8); /* its link */
        for (int i = 0; i < 4; i++)
            CHECK(malloc(24) != NULL);
    } else {
        fprintf(stderr, "overflow: unknown case %s\n", which);
        exit(2);
    }
    return NULL;
}

int main(int argc, char **argv) {
    require_tessera();
    CHECK(argc == 2);
    which = argv[1];
    pthread_t t;
    CHECK(pthread_create(&t, NULL, run, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    puts("overflow: survived");
    return 0;
}
