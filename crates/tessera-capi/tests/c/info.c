/* mallinfo2, mallinfo and malloc_info agree with each other and with what
 * the program allocated. Single-threaded, so nothing moves between the
 * calls; the malloc_info stream has its own buffer, so writing it does not
 * allocate either. */
#include "check.h"

#include <malloc.h>

static char xml[1 << 20];
static char stream_buf[1 << 16];

/* The value of attribute `attr` in the last element starting with `elem`. */
static size_t last_attr(const char *elem, const char *attr) {
    const char *hit = NULL;
    for (const char *p = strstr(xml, elem); p; p = strstr(p + 1, elem))
        hit = p;
    CHECK(hit != NULL);
    const char *a = strstr(hit, attr);
    CHECK(a != NULL && a < strchr(hit, '>'));
    return strtoull(a + strlen(attr), NULL, 10);
}

static void info_xml(void) {
    FILE *f = tmpfile();
    CHECK(f != NULL);
    CHECK(setvbuf(f, stream_buf, _IOFBF, sizeof stream_buf) == 0);
    struct mallinfo2 before = mallinfo2();
    CHECK(malloc_info(0, f) == 0);
    struct mallinfo2 after = mallinfo2();
    CHECK(before.uordblks == after.uordblks && before.hblks == after.hblks);
    fflush(f);
    rewind(f);
    size_t n = fread(xml, 1, sizeof xml - 1, f);
    xml[n] = 0;
    fclose(f);

    CHECK(strncmp(xml, "<malloc version=\"1\">\n", 21) == 0);
    CHECK(n > 10 && strcmp(xml + n - 10, "</malloc>\n") == 0);
    /* The totals match mallinfo2. */
    CHECK(last_attr("<total type=\"rest\"", "count=\"") == after.ordblks);
    /* (fordblks also counts the chunks parked on quick lists: fsmblks.) */
    CHECK(last_attr("<total type=\"rest\"", "size=\"") == after.fordblks - after.fsmblks);
    CHECK(last_attr("<total type=\"fast\"", "size=\"") >= after.fsmblks);
    CHECK(last_attr("<total type=\"mmap\"", "count=\"") == after.hblks);
    CHECK(last_attr("<total type=\"mmap\"", "size=\"") == after.hblkhd);
    CHECK(last_attr("<system type=\"current\"", "size=\"") == after.arena);
    CHECK(last_attr("<system type=\"max\"", "size=\"") >= after.arena);
    CHECK(last_attr("<aspace type=\"mprotect\"", "size=\"") == after.arena);
    CHECK(last_attr("<aspace type=\"total\"", "size=\"") >= after.arena);
    /* The free chunks listed by bin add up to at most the free total (top
     * is not in a bin); every listed range is well formed. */
    size_t listed = 0, heaps = 0;
    for (const char *p = strstr(xml, "<heap nr=\""); p; p = strstr(p + 1, "<heap nr=\""))
        heaps++;
    CHECK(heaps >= 1);
    for (const char *p = xml; (p = strstr(p, " from=\"")) != NULL; p++) {
        size_t from = strtoull(p + 7, NULL, 10);
        const char *t = strstr(p, " to=\""), *tot = strstr(p, " total=\""),
                   *c = strstr(p, " count=\"");
        CHECK(t && tot && c);
        size_t to = strtoull(t + 5, NULL, 10), total = strtoull(tot + 8, NULL, 10),
               count = strtoull(c + 8, NULL, 10);
        CHECK(from <= to && count >= 1 && total >= from * count && total <= to * count);
        listed += total;
    }
    CHECK(listed <= after.fordblks);
}

int main(void) {
    tessera_serves_this_process();
    struct mallinfo2 m0 = mallinfo2();
    CHECK(m0.arena == m0.uordblks + m0.fordblks);

    /* 2000 blocks of 200 bytes: in use grows by at least 400 kB. */
    enum { N = 2000 };
    static void *small[N];
    for (int i = 0; i < N; i++) {
        small[i] = malloc(200);
        CHECK(small[i] != NULL);
    }
    struct mallinfo2 m1 = mallinfo2();
    CHECK(m1.arena == m1.uordblks + m1.fordblks);
    CHECK(m1.uordblks >= m0.uordblks + N * 200);
    CHECK(m1.uordblks <= m0.uordblks + N * 256 + (256 << 10));
    CHECK(m1.hblks == m0.hblks);

    /* A 4 MiB block is mapped directly. */
    void *big = malloc(4 << 20);
    CHECK(big != NULL);
    struct mallinfo2 m2 = mallinfo2();
    CHECK(m2.hblks == m1.hblks + 1);
    CHECK(m2.hblkhd >= m1.hblkhd + (4 << 20) && m2.hblkhd <= m1.hblkhd + (4 << 20) + 8192);
    CHECK(m2.uordblks == m1.uordblks);

    /* mallinfo is mallinfo2 in ints. */
    struct mallinfo i2 = mallinfo();
    CHECK((size_t)i2.arena == m2.arena && (size_t)i2.uordblks == m2.uordblks &&
          (size_t)i2.fordblks == m2.fordblks && (size_t)i2.hblks == m2.hblks &&
          (size_t)i2.hblkhd == m2.hblkhd && (size_t)i2.ordblks == m2.ordblks &&
          (size_t)i2.keepcost == m2.keepcost);

    /* Freeing every other block makes free chunks (in bins, or parked on
       the arena's quick list for the next refill: Tessera's fastbins,
       smblks/fsmblks): malloc_info lists them. */
    for (int i = 0; i < N; i += 2)
        free(small[i]);
    struct mallinfo2 m3 = mallinfo2();
    CHECK(m3.ordblks + m3.smblks > m2.ordblks + m2.smblks);
    CHECK(m3.fsmblks <= m3.fordblks && m3.fsmblks % 16 == 0);
    /* (Less what the thread cache keeps of the class, which mallinfo
       counts as in use: at most 256 entries of 208 bytes.) */
    CHECK(m3.uordblks + N / 2 * 200 <= m2.uordblks + 256 * 208);
    info_xml();
    CHECK(strstr(xml, "<size from=\"208\" to=\"208\"") != NULL);

    free(big);
    struct mallinfo2 m4 = mallinfo2();
    CHECK(m4.hblks == m0.hblks && m4.hblkhd == m0.hblkhd);
    for (int i = 1; i < N; i += 2)
        free(small[i]);
    struct mallinfo2 m5 = mallinfo2();
    CHECK(m5.uordblks <= m0.uordblks + (64 << 10));
    info_xml();
    puts("info: ok");
    return 0;
}
