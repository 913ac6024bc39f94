/* Calls the allocator from the places a program does not see: the dynamic
 * loader (dlopen, and dynamic TLS blocks made inside __tls_get_addr on a
 * new thread's first access), thread-specific-data destructors at thread
 * exit, atexit handlers and destructors after main returns. */
#include "check.h"

#include <dlfcn.h>
#include <pthread.h>

static long (*tls_touch)(int);
static void (*tls_release)(void);
static pthread_key_t key;
static char *late;

static void *thread(void *arg) {
    int seed = (int)(uintptr_t)arg;
    long want = (long)(seed & 0x7f) * (20000 / 512 + 1);
    CHECK(tls_touch(seed) == want);
    /* Freed by the key's destructor when the thread exits. */
    CHECK(pthread_setspecific(key, malloc(64 + (size_t)seed)) == 0);
    if (seed % 2)
        tls_release();
    return NULL;
}

static void at_exit(void) {
    free(late);
    char *p = malloc(1000);
    CHECK(p != NULL);
    memset(p, 1, 1000);
    free(p);
}

__attribute__((destructor)) static void last(void) {
    void *p = calloc(10, 10);
    CHECK(p != NULL);
    p = realloc(p, 100000);
    CHECK(p != NULL);
    free(p);
    puts("tls: destructor ran");
}

int main(int argc, char **argv) {
    tessera_serves_this_process();
    CHECK(argc == 2);
    alarm(60);
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    tls_touch = (long (*)(int))dlsym(lib, "tls_touch");
    tls_release = (void (*)(void))dlsym(lib, "tls_release");
    CHECK(tls_touch && tls_release);
    CHECK(pthread_key_create(&key, free) == 0);
    for (int round = 0; round < 50; round++) {
        pthread_t t[8];
        for (int i = 0; i < 8; i++)
            CHECK(pthread_create(&t[i], NULL, thread, (void *)(uintptr_t)(round * 8 + i)) == 0);
        for (int i = 0; i < 8; i++)
            CHECK(pthread_join(t[i], NULL) == 0);
    }
    /* dlerror's message buffer is malloc'd by libc. */
    CHECK(dlsym(lib, "no_such_symbol") == NULL && dlerror() != NULL);
    late = strdup("freed by an atexit handler");
    CHECK(atexit(at_exit) == 0);
    puts("tls: ok");
    fflush(stdout);
    return 0;
}
