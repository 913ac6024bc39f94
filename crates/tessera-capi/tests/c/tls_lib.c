/* Loaded with dlopen by tls.c: its thread-local storage is dynamic, so the
 * dynamic loader allocates each thread's block with malloc on the thread's
 * first access (from inside __tls_get_addr). */
#include <stdlib.h>
#include <string.h>

static __thread char big[20000];
static __thread char *owned;

/* Fills this thread's TLS; returns a checksum. */
long tls_touch(int seed) {
    memset(big, seed & 0x7f, sizeof big);
    if (!owned)
        owned = malloc(100 + (size_t)seed % 500);
    long sum = 0;
    for (size_t i = 0; i < sizeof big; i += 512)
        sum += big[i];
    return sum;
}

void tls_release(void) {
    free(owned);
    owned = NULL;
}
