/* fork() while other threads hold stdio locks and call malloc under them
 * (issue 16, item 1). Readers loop over fopen / getline / fclose: getline
 * allocates while it holds its stream's lock. A flusher loops over
 * fflush(NULL), which takes stdio's list lock and then every stream's lock.
 * Threads come and go, each starting with a getline, so their first malloc
 * (binding an arena, maybe creating one) happens under a stream lock. One
 * thread forks as fast as it can. If a lock the forker holds while it
 * waits for stdio's list lock is one that a thread under a stream lock
 * waits for, the process hangs: the watchdog (no fork finished for 10
 * seconds) then ends it with exit code 3 (and the test harness has its own
 * timeout).
 *
 * argv[1]: most seconds to fork for (default 6); argv[2]: most forks
 * (default 2000). Without the fix one of the first few forks hangs; at
 * least 100 must complete (a loaded machine manages only a hundred or two
 * a second: every fork makes the busy threads fault on their copy-on-write
 * pages). */
#include "check.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>

static atomic_int stop;
static atomic_long forks, lines_read, threads_run;
static const char *const FILE_NAME = "fork_stdio.lines";

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_alarm(int sig) {
    (void)sig;
    char msg[128];
    int n = snprintf(msg, sizeof msg, "fork_stdio: hang after %ld forks\n",
                     atomic_load(&forks));
    if (n > 0)
        write(2, msg, (size_t)n);
    _exit(3);
}

/* One pass over the file: getline allocates (and grows) its buffer with the
 * stream locked; every few lines the buffer is dropped so that the next
 * getline allocates afresh. */
static void read_file(uint64_t *seed) {
    FILE *f = fopen(FILE_NAME, "r");
    CHECK(f != NULL);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        atomic_fetch_add(&lines_read, 1);
        if (next_rand(seed) % 4 == 0) {
            free(line);
            line = NULL;
            cap = 0;
        }
        if (atomic_load(&stop))
            break;
    }
    free(line);
    CHECK(fclose(f) == 0);
}

static void *reader(void *arg) {
    uint64_t seed = (uintptr_t)arg * 0x9E3779B97F4A7C15ULL + 3;
    while (!atomic_load(&stop))
        read_file(&seed);
    return NULL;
}

static void *flusher(void *arg) {
    (void)arg;
    FILE *out = fopen("/dev/null", "w");
    CHECK(out != NULL);
    unsigned long i = 0;
    while (!atomic_load(&stop)) {
        fprintf(out, "flush %lu\n", i++);
        fflush(NULL);
    }
    fclose(out);
    return NULL;
}

/* A short-lived thread: its first allocation happens inside getline. */
static void *visitor(void *arg) {
    uint64_t seed = (uintptr_t)arg * 0x2545F4914F6CDD1DULL + 1;
    FILE *f = fopen(FILE_NAME, "r");
    CHECK(f != NULL);
    char *line = NULL;
    size_t cap = 0;
    for (int i = 0; i < 20 && getline(&line, &cap, f) > 0; i++) {
        void *p = malloc(16 + next_rand(&seed) % 5000);
        CHECK(p != NULL);
        free(p);
    }
    free(line);
    fclose(f);
    atomic_fetch_add(&threads_run, 1);
    return NULL;
}

static void *spawner(void *arg) {
    uintptr_t k = (uintptr_t)arg * 1000000;
    while (!atomic_load(&stop)) {
        pthread_t t[4];
        for (int i = 0; i < 4; i++)
            CHECK(pthread_create(&t[i], NULL, visitor, (void *)(k++)) == 0);
        for (int i = 0; i < 4; i++)
            CHECK(pthread_join(t[i], NULL) == 0);
    }
    return NULL;
}

int main(int argc, char **argv) {
    require_tessera();
    double seconds = argc > 1 ? atof(argv[1]) : 6.0;
    long max_forks = argc > 2 ? atol(argv[2]) : 2000;
    signal(SIGALRM, on_alarm);

    /* Lines of very different lengths, so that getline grows its buffer
     * through the small, medium and arena sizes. */
    FILE *f = fopen(FILE_NAME, "w");
    CHECK(f != NULL);
    uint64_t seed = 42;
    for (int i = 0; i < 400; i++) {
        size_t len = next_rand(&seed) % 64 == 0 ? 20000 + next_rand(&seed) % 100000
                                                : 1 + next_rand(&seed) % 3000;
        for (size_t j = 0; j < len; j++)
            fputc('a' + (int)(j % 26), f);
        fputc('\n', f);
    }
    CHECK(fclose(f) == 0);

    enum { READERS = 3, SPAWNERS = 2 };
    pthread_t r[READERS], s[SPAWNERS], fl;
    for (long i = 0; i < READERS; i++)
        CHECK(pthread_create(&r[i], NULL, reader, (void *)(i + 1)) == 0);
    for (long i = 0; i < SPAWNERS; i++)
        CHECK(pthread_create(&s[i], NULL, spawner, (void *)(i + 1)) == 0);
    CHECK(pthread_create(&fl, NULL, flusher, NULL) == 0);

    double end = now() + seconds;
    while (now() < end && atomic_load(&forks) < max_forks) {
        alarm(10);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            /* The child can allocate and use stdio. */
            char *p = malloc(100);
            if (p == NULL)
                _exit(4);
            snprintf(p, 100, "child %ld", atomic_load(&forks));
            free(p);
            _exit(0);
        }
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        atomic_fetch_add(&forks, 1);
    }
    alarm(30);
    atomic_store(&stop, 1);
    for (int i = 0; i < READERS; i++)
        CHECK(pthread_join(r[i], NULL) == 0);
    for (int i = 0; i < SPAWNERS; i++)
        CHECK(pthread_join(s[i], NULL) == 0);
    CHECK(pthread_join(fl, NULL) == 0);
    remove(FILE_NAME);
    long n = atomic_load(&forks);
    CHECK(n >= 100);
    printf("fork_stdio: ok (%ld forks, %ld lines, %ld threads)\n", n,
           atomic_load(&lines_read), atomic_load(&threads_run));
    return 0;
}
