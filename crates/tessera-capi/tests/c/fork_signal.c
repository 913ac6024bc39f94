/* fork() from a signal handler of a single-threaded program (issue 16,
 * item 2). A timer sends SIGUSR1 every 400 microseconds (SIGEV_SIGNAL: no
 * helper thread, the process stays single-threaded); the handler forks, its
 * child leaves at once with _exit, and the handler reaps its children
 * that have ended. Meanwhile the main loop forks too (its children allocate
 * and free) and allocates and frees blocks of every kind, so the signal
 * lands inside malloc, free and the fork handlers. If a fork handler takes
 * a lock that the interrupted code holds, the handler never returns: the
 * watchdog (no round of the main loop finished for 10 seconds) ends the
 * process with exit code 3.
 *
 * argv[1]: seconds to run (default 2). */
#include "check.h"

#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>

static volatile sig_atomic_t handler_forks;
static atomic_long main_forks;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_alarm(int sig) {
    (void)sig;
    char msg[160];
    int n = snprintf(msg, sizeof msg,
                     "fork_signal: hang after %ld forks in main, %ld in the handler\n",
                     atomic_load(&main_forks), (long)handler_forks);
    if (n > 0)
        write(2, msg, (size_t)n);
    _exit(3);
}

/* The handler's children not yet reaped (only the handler touches it). */
static pid_t pending[64];

static void on_usr1(int sig) {
    (void)sig;
    int saved = errno;
    for (int i = 0; i < 64; i++)
        if (pending[i] > 0 && waitpid(pending[i], NULL, WNOHANG) == pending[i])
            pending[i] = 0;
    for (int i = 0; i < 64; i++) {
        if (pending[i] == 0) {
            pid_t pid = fork();
            if (pid == 0)
                _exit(0);
            if (pid > 0) {
                pending[i] = pid;
                handler_forks++;
            }
            break;
        }
    }
    errno = saved;
}

int main(int argc, char **argv) {
    require_tessera();
    double seconds = argc > 1 ? atof(argv[1]) : 2.0;
    signal(SIGALRM, on_alarm);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
    timer_t timer;
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGUSR1;
    CHECK(timer_create(CLOCK_MONOTONIC, &ev, &timer) == 0);
    struct itimerspec its = {{0, 400000}, {0, 400000}};
    CHECK(timer_settime(timer, 0, &its, NULL) == 0);

    uint64_t seed = 7;
    void *slots[64] = {0};
    long ops = 0;
    double end = now() + seconds;
    while (now() < end) {
        alarm(10);
        for (int k = 0; k < 200; k++) {
            int i = (int)(next_rand(&seed) % 64);
            free(slots[i]);
            size_t size = next_rand(&seed) % 4000;
            if (next_rand(&seed) % 32 == 0)
                size = 300000 + next_rand(&seed) % 300000; /* direct */
            slots[i] = (next_rand(&seed) & 1) ? malloc(size) : calloc(1, size);
            CHECK(slots[i] != NULL);
            ops++;
        }
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            void *p = malloc(1000);
            if (p == NULL)
                _exit(4);
            free(p);
            _exit(0);
        }
        int status;
        while (waitpid(pid, &status, 0) < 0)
            CHECK(errno == EINTR);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        atomic_fetch_add(&main_forks, 1);
    }
    alarm(30);
    struct itimerspec off = {{0, 0}, {0, 0}};
    CHECK(timer_settime(timer, 0, &off, NULL) == 0);
    signal(SIGUSR1, SIG_IGN);
    for (int i = 0; i < 64; i++)
        free(slots[i]);
    for (int i = 0; i < 64; i++)
        if (pending[i] > 0)
            CHECK(waitpid(pending[i], NULL, 0) == pending[i]);
    CHECK(atomic_load(&main_forks) >= 20 && handler_forks >= 100);
    printf("fork_signal: ok (%ld forks in main, %ld in the handler, %ld operations)\n",
           atomic_load(&main_forks), (long)handler_forks, ops);
    return 0;
}
