/* fork() while other threads are inside malloc, free and stdio: the child
 * must be able to allocate, free and print. A hang is a failure: children
 * and the parent arm alarms, and the test harness has its own timeout. */
#include "check.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>

static atomic_int stop;
static FILE *devnull;

static void *churn(void *arg) {
    uint64_t seed = (uintptr_t)arg * 0x9E3779B97F4A7C15ULL + 1;
    void *slots[64] = {0};
    unsigned long rounds = 0;
    while (!atomic_load(&stop)) {
        int i = (int)(next_rand(&seed) % 64);
        free(slots[i]);
        size_t size = next_rand(&seed) % 2000;
        if (next_rand(&seed) % 64 == 0)
            size = 300000 + next_rand(&seed) % 300000; /* direct */
        slots[i] = (next_rand(&seed) & 1) ? malloc(size) : calloc(1, size);
        CHECK(slots[i] != NULL);
        memset(slots[i], 1, size < 64 ? size : 64);
        if (++rounds % 16 == 0) {
            /* stdio takes its own locks and may call malloc. */
            fprintf(devnull, "thread %lu round %lu %s\n", (unsigned long)(uintptr_t)arg,
                    rounds, "some text to format");
            if (rounds % 256 == 0)
                fflush(devnull);
        }
    }
    for (int i = 0; i < 64; i++)
        free(slots[i]);
    return NULL;
}

static int child(int round) {
    alarm(20);
    void *p[100];
    for (int i = 0; i < 100; i++) {
        p[i] = malloc((size_t)(i * 37 + round) % 5000);
        if (!p[i])
            return 2;
    }
    void *big = malloc(1 << 20);
    if (!big)
        return 3;
    memset(big, 2, 1 << 20);
    for (int i = 0; i < 100; i += 2)
        free(p[i]);
    char *s = NULL;
    if (asprintf(&s, "child %d says hello %d", round, 42) < 0)
        return 4;
    fprintf(devnull, "%s\n", s);
    fflush(devnull);
    free(s);
    for (int i = 1; i < 100; i += 2)
        free(p[i]);
    free(big);
    /* Half the children leave through exit() (atexit handlers, destructors,
     * stdio flush); the others through _exit(). */
    if (round % 2)
        exit(0);
    _exit(0);
}

int main(void) {
    tessera_serves_this_process();
    alarm(240);
    devnull = fopen("/dev/null", "w");
    CHECK(devnull != NULL);
    enum { THREADS = 4, FORKS = 300 };
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, churn, (void *)(i + 1)) == 0);
    for (int round = 0; round < FORKS; round++) {
        fflush(stdout);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0)
            child(round);
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "fork round %d: child %s %d\n", round,
                    WIFSIGNALED(status) ? "killed by signal" : "exited with",
                    WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
            return 1;
        }
        /* The parent keeps allocating too. */
        free(malloc((size_t)round * 13));
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    printf("fork: ok (%d forks)\n", FORKS);
    return 0;
}
