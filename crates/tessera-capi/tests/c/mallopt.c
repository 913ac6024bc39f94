/* mallopt (issue 16, item 4): every parameter glibc knows is accepted with
 * glibc's value ranges, and those with a meaning in Tessera have it.
 *
 * `mallopt reference` runs the table of return values against the malloc
 * the program was started with, and expects glibc 2.36's answers: run
 * without Tessera, it checks the table itself against glibc. Without an
 * argument it expects Tessera's answers (the same, except for codes glibc
 * does not know, which glibc accepts and ignores and Tessera refuses with
 * EINVAL), then checks what M_MXFAST, M_CHECK_ACTION, M_ARENA_TEST and
 * M_ARENA_MAX do, each in a child process of its own. */
#include "check.h"

#include <malloc.h>
#include <pthread.h>
#include <sys/wait.h>

struct row {
    int param;
    const char *name;
    int value;
    int glibc; /* glibc 2.36's answer */
    int tessera;
};

#define ROW(p, v, g, t) {p, #p, v, g, t}

static const struct row TABLE[] = {
    /* M_MXFAST: 0 ..= 160 (80 * sizeof(size_t) / 4). */
    ROW(M_MXFAST, 0, 1, 1),
    ROW(M_MXFAST, 64, 1, 1),
    ROW(M_MXFAST, 160, 1, 1),
    ROW(M_MXFAST, 161, 0, 0),
    ROW(M_MXFAST, -1, 0, 0),
    /* Any value (negative ones wrap to huge sizes). */
    ROW(M_TRIM_THRESHOLD, 0, 1, 1),
    ROW(M_TRIM_THRESHOLD, 1 << 30, 1, 1),
    ROW(M_TRIM_THRESHOLD, -1, 1, 1),
    ROW(M_TRIM_THRESHOLD, 128 << 10, 1, 1),
    ROW(M_TOP_PAD, 0, 1, 1),
    ROW(M_TOP_PAD, 1 << 20, 1, 1),
    ROW(M_TOP_PAD, -1, 1, 1),
    ROW(M_TOP_PAD, 0, 1, 1),
    /* Any value since glibc 2.35 (before: at most 32 MiB). */
    ROW(M_MMAP_THRESHOLD, 0, 1, 1),
    ROW(M_MMAP_THRESHOLD, 64 << 20, 1, 1),
    ROW(M_MMAP_THRESHOLD, -1, 1, 1),
    ROW(M_MMAP_THRESHOLD, 128 << 10, 1, 1),
    ROW(M_MMAP_MAX, 0, 1, 1),
    ROW(M_MMAP_MAX, -1, 1, 1),
    ROW(M_MMAP_MAX, 65536, 1, 1),
    ROW(M_CHECK_ACTION, 0, 1, 1),
    ROW(M_CHECK_ACTION, 7, 1, 1),
    ROW(M_CHECK_ACTION, -1, 1, 1),
    ROW(M_CHECK_ACTION, 3, 1, 1),
    ROW(M_PERTURB, 0x5a, 1, 1),
    ROW(M_PERTURB, -1, 1, 1),
    ROW(M_PERTURB, 0, 1, 1),
    /* Values below 1 are ignored, and still answered with 1. */
    ROW(M_ARENA_TEST, 0, 1, 1),
    ROW(M_ARENA_TEST, -5, 1, 1),
    ROW(M_ARENA_TEST, 8, 1, 1),
    ROW(M_ARENA_MAX, 0, 1, 1),
    ROW(M_ARENA_MAX, -3, 1, 1),
    ROW(M_ARENA_MAX, 100, 1, 1),
    /* SVID's codes, unused by glibc: accepted. */
    ROW(M_NLBLKS, 1, 1, 1),
    ROW(M_GRAIN, 1, 1, 1),
    ROW(M_KEEP, 1, 1, 1),
    /* Codes glibc does not know: glibc answers 1 and does nothing. */
    ROW(12345, 1, 1, 0),
    ROW(-9, 1, 1, 0),
};

static int check_table(int reference) {
    int bad = 0;
    for (size_t i = 0; i < sizeof TABLE / sizeof TABLE[0]; i++) {
        const struct row *r = &TABLE[i];
        int want = reference ? r->glibc : r->tessera;
        errno = 0;
        int got = mallopt(r->param, r->value);
        if (got != want) {
            fprintf(stderr, "mallopt(%s, %d) = %d, expected %d\n", r->name, r->value, got,
                    want);
            bad++;
        }
        if (!reference && got == 0 && errno != EINVAL) {
            fprintf(stderr, "mallopt(%s, %d) refused without EINVAL (errno %d)\n", r->name,
                    r->value, errno);
            bad++;
        }
    }
    return bad;
}

/* Runs `f` in a child process; it must exit with 0. */
static void in_child(const char *what, void (*f)(void)) {
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        f();
        _exit(0);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "mallopt: %s failed (status %#x)\n", what, status);
        exit(1);
    }
}

/* Frees 200 blocks of `size` bytes: the thread cache overflows and gives
 * half a class back to the arena, which parks those chunks on its quick
 * list (Tessera's fastbins) when the chunk size is allowed there. Returns
 * the bytes parked (mallinfo2's fsmblks). */
static size_t parked_after_frees(size_t size) {
    CHECK(malloc_trim(0) >= 0); /* nothing parked before */
    CHECK(mallinfo2().fsmblks == 0);
    /* More than a thread cache class holds (256 entries at most), so that
       frees overflow it and flush to the arena. */
    enum { K = 2000 };
    static void *p[K];
    for (int i = 0; i < K; i++)
        CHECK((p[i] = malloc(size)) != NULL);
    for (int i = 0; i < K; i++)
        free(p[i]);
    return mallinfo2().fsmblks;
}

static void mxfast(void) {
    /* Tessera's default parks every small class (chunks up to 1040 bytes). */
    CHECK(parked_after_frees(1000) > 0);
    CHECK(parked_after_frees(64) > 0);
    CHECK(mallopt(M_MXFAST, 0) == 1);
    CHECK(parked_after_frees(64) == 0);
    CHECK(parked_after_frees(24) == 0);
    CHECK(mallopt(M_MXFAST, 64) == 1); /* chunks of 80 bytes and less */
    CHECK(parked_after_frees(64) > 0);
    CHECK(parked_after_frees(24) > 0);
    CHECK(parked_after_frees(100) == 0);
    CHECK(mallopt(M_MXFAST, 160) == 1);
    CHECK(parked_after_frees(100) > 0);
    CHECK(parked_after_frees(200) == 0);
    CHECK(mallopt(M_MXFAST, 161) == 0); /* refused: the setting stays */
    CHECK(parked_after_frees(160) > 0);
}

/* A double free under M_CHECK_ACTION `action`, in a grandchild whose stderr
 * is captured: returns its wait status and stores what it printed. */
static int double_free_with(int action, char *said, size_t cap) {
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        CHECK(mallopt(M_CHECK_ACTION, action) == 1);
        char *volatile p = malloc(100);
        free(p);
        free(p);
        _exit(0); /* not reached */
    }
    close(fds[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(fds[0], said + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    said[n] = 0;
    close(fds[0]);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    return status;
}

static void check_action(void) {
    char said[512];
    int s = double_free_with(3, said, sizeof said);
    CHECK(WIFSIGNALED(s) && WTERMSIG(s) == SIGABRT);
    CHECK(strstr(said, "tessera: double free at 0x") != NULL);
    s = double_free_with(2, said, sizeof said);
    CHECK(WIFSIGNALED(s) && WTERMSIG(s) == SIGABRT);
    CHECK(said[0] == 0);
    s = double_free_with(1, said, sizeof said);
    CHECK(WIFEXITED(s) && WEXITSTATUS(s) == 127);
    CHECK(strstr(said, "tessera: double free at 0x") != NULL);
    s = double_free_with(0, said, sizeof said);
    CHECK(WIFEXITED(s) && WEXITSTATUS(s) == 127);
    CHECK(said[0] == 0);
}

/* Counts the arenas: one <heap> element each in malloc_info. */
static int arenas(void) {
    static char xml[1 << 20];
    FILE *f = tmpfile();
    CHECK(f != NULL);
    CHECK(malloc_info(0, f) == 0);
    rewind(f);
    size_t n = fread(xml, 1, sizeof xml - 1, f);
    xml[n] = 0;
    fclose(f);
    int heaps = 0;
    for (const char *p = strstr(xml, "<heap nr="); p; p = strstr(p + 1, "<heap nr="))
        heaps++;
    return heaps;
}

static pthread_barrier_t all_bound;

static void *bind_and_wait(void *arg) {
    (void)arg;
    free(malloc(100)); /* binds the thread to an arena */
    pthread_barrier_wait(&all_bound);
    pthread_barrier_wait(&all_bound); /* until the arenas were counted */
    return NULL;
}

/* Starts `n` threads that each bind to an arena and stay; returns the
 * number of arenas then. */
static int arenas_with_threads(int n) {
    pthread_t t[200];
    CHECK(n <= 200);
    CHECK(pthread_barrier_init(&all_bound, NULL, (unsigned)n + 1) == 0);
    for (int i = 0; i < n; i++)
        CHECK(pthread_create(&t[i], NULL, bind_and_wait, NULL) == 0);
    pthread_barrier_wait(&all_bound);
    int count = arenas();
    pthread_barrier_wait(&all_bound);
    for (int i = 0; i < n; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    return count;
}

static int ncpu(void) { return (int)sysconf(_SC_NPROCESSORS_ONLN); }

static int min(int a, int b) { return a < b ? a : b; }

static void arena_default(void) {
    /* Tessera's default is 2 x cores (glibc's 8 x cores), or one arena per
     * two threads once there are more than 4 x cores of them, up to 8 x
     * cores. Threads that bind together may each see the others not yet
     * bound, so the count may lag the rule by a few arenas: well beyond
     * 16 x cores threads it reaches the cap. */
    int few = 4 * ncpu() - 1; /* with this thread: 4 x cores */
    CHECK(arenas_with_threads(few) == min(2 * ncpu(), 128));
    int many = 16 * ncpu() + 40;
    int cap = min(8 * ncpu(), 128);
    if (many <= 200) {
        CHECK(arenas_with_threads(many) == cap);
    } else {
        int n = arenas_with_threads(200);
        CHECK(n > 2 * ncpu() && n <= cap);
    }
}

static void arena_test(void) {
    /* More arenas may be made than 8 x cores before the cores count. */
    int test = 8 * ncpu() + 10;
    CHECK(mallopt(M_ARENA_TEST, test) == 1);
    CHECK(arenas_with_threads(test + 10) == min(test, 128));
}

static void arena_max(void) {
    CHECK(mallopt(M_ARENA_MAX, 3) == 1);
    CHECK(arenas_with_threads(20) == 3);
    CHECK(mallopt(M_ARENA_MAX, 0) == 1); /* ignored: the limit stays */
    CHECK(arenas_with_threads(20) == 3);
}

int main(int argc, char **argv) {
    printf("mallopt: start\n"); /* stdout's buffer exists from here on */
    if (argc > 1 && strcmp(argv[1], "reference") == 0) {
        int bad = check_table(1);
        /* Back to sane settings before anything else allocates. */
        mallopt(M_TOP_PAD, 0);
        mallopt(M_MMAP_THRESHOLD, 128 << 10);
        mallopt(M_PERTURB, 0);
        CHECK(bad == 0);
        printf("mallopt: ok (reference)\n");
        return 0;
    }
    require_tessera();
    /* The meanings first, each in a child with the default settings. */
    in_child("M_MXFAST", mxfast);
    in_child("M_CHECK_ACTION", check_action);
    in_child("the default arena limit", arena_default);
    if (8 * ncpu() + 20 <= 120)
        in_child("M_ARENA_TEST", arena_test);
    in_child("M_ARENA_MAX", arena_max);
    /* Then the answers, which change the settings of this process. */
    int bad = check_table(0);
    mallopt(M_TOP_PAD, 0);
    mallopt(M_MMAP_THRESHOLD, 128 << 10);
    mallopt(M_PERTURB, 0);
    CHECK(bad == 0);
    /* Large requests still work after the extreme settings. */
    void *big = malloc(40 << 20);
    CHECK(big != NULL);
    free(big);
    printf("mallopt: ok\n");
    return 0;
}
