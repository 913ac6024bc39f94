/* Deliberate misuse, one kind per run (argv[1]); the library must stop the
 * program with a one-line message. Never prints "misuse: survived" unless
 * the misuse went unnoticed. */
#include "check.h"

int main(int argc, char **argv) {
    tessera_serves_this_process();
    CHECK(argc == 2);
    char *volatile p = malloc(100);
    CHECK(p != NULL);
    if (strcmp(argv[1], "double-free") == 0) {
        free(p);
        free(p);
    } else if (strcmp(argv[1], "write-after-free") == 0) {
        /* Needs TESSERA_CHECK=2: freed memory is filled and verified. */
        void *keep = malloc(100); /* keeps p's chunk from merging into top */
        free(p);
        p[60] = 'x';
        for (int i = 0; i < 100; i++)
            free(malloc(100));
        free(keep);
    } else if (strcmp(argv[1], "overflow") == 0) {
        /* Overwrites the next chunk's header; caught when it is freed. */
        char *q = malloc(100);
        memset(p, 0x41, 140);
        free(q);
        free(p);
    } else if (strcmp(argv[1], "foreign") == 0) {
        static char not_heap[64];
        free(not_heap + 16);
    }
    puts("misuse: survived");
    return 0;
}
