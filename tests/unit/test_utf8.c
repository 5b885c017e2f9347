/* Unit tests for utf8: sequences, the valid prefix, and repair with one U+FFFD per maximal subpart
 * (the WHATWG decoder's replacement; the expected bytes are what Node's Buffer.toString() gives). */
#include <stdlib.h>

#include "test.h"
#include "utf8.h"

#define FFFD "\xEF\xBF\xBD"

static int repaired(const char *in, size_t n, const char *want, size_t wn, size_t fixes, int wtf8)
{
    buf_t out = BUF_INIT;
    size_t k = utf8_repair(&out, in, n, wtf8);
    int ok = k == fixes && out.len == wn && (wn == 0 || memcmp(out.base, want, wn) == 0);
    if (!ok)
        fprintf(stderr, "  repair of %zu bytes: %zu fixes, %zu bytes out\n", n, k, out.len);
    buf_free(&out);
    return ok;
}
#define REPAIRED(in, want, fixes) repaired(in, sizeof(in) - 1, want, sizeof(want) - 1, fixes, 0)

TEST(sequences)
{
    uint32_t cp;
    CHECK_EQ_INT(utf8_seq((const unsigned char *)"a", 1, &cp, 0), 1);
    CHECK_EQ_INT(cp, 'a');
    CHECK_EQ_INT(utf8_seq((const unsigned char *)"\xC3\xA9", 2, &cp, 0), 2);
    CHECK_EQ_INT(cp, 0xE9);
    CHECK_EQ_INT(utf8_seq((const unsigned char *)"\xE2\x82\xAC", 3, &cp, 0), 3);
    CHECK_EQ_INT(cp, 0x20AC);
    CHECK_EQ_INT(utf8_seq((const unsigned char *)"\xF0\x9F\x98\x80", 4, &cp, 0), 4);
    CHECK_EQ_INT(cp, 0x1F600);
    CHECK_EQ_INT(utf8_seq((const unsigned char *)"\xF4\x8F\xBF\xBF", 4, &cp, 0), 4);
    CHECK_EQ_INT(cp, 0x10FFFF);
    /* ill-formed: the length of the maximal subpart */
    CHECK_EQ_INT(utf8_seq((const unsigned char *)"\x80", 1, &cp, 0), -1);
    CHECK_EQ_INT(utf8_seq((const unsigned char *)"\xC0\x80", 2, &cp, 0), -1);     /* overlong lead */
    CHECK_EQ_INT(utf8_seq((const unsigned char *)"\xE0\x80\x80", 3, &cp, 0), -1); /* overlong */
    CHECK_EQ_INT(utf8_seq((const unsigned char *)"\xE2\x82", 2, &cp, 0), -2);     /* truncated */
    CHECK_EQ_INT(utf8_seq((const unsigned char *)"\xE2\x82x", 3, &cp, 0), -2);
    CHECK_EQ_INT(utf8_seq((const unsigned char *)"\xF0\x9F\x98", 3, &cp, 0), -3);
    CHECK_EQ_INT(utf8_seq((const unsigned char *)"\xF4\x90\x80\x80", 4, &cp, 0), -1); /* > 10FFFF */
    CHECK_EQ_INT(utf8_seq((const unsigned char *)"\xF5\x80\x80\x80", 4, &cp, 0), -1);
    CHECK_EQ_INT(utf8_seq((const unsigned char *)"\xFF", 1, &cp, 0), -1);
    /* a surrogate: ill-formed UTF-8, well-formed WTF-8 */
    CHECK_EQ_INT(utf8_seq((const unsigned char *)"\xED\xA0\x80", 3, &cp, 0), -1);
    CHECK_EQ_INT(utf8_seq((const unsigned char *)"\xED\xA0\x80", 3, &cp, 1), 3);
    CHECK_EQ_INT(cp, 0xD800);
    CHECK_EQ_INT(utf8_seq((const unsigned char *)"\xED\xBF\xBF", 3, &cp, 1), 3);
    CHECK_EQ_INT(cp, 0xDFFF);
    CHECK_EQ_INT(utf8_seq((const unsigned char *)"\xED\x9F\xBF", 3, &cp, 0), 3);
    CHECK_EQ_INT(cp, 0xD7FF);
}

TEST(valid_prefix)
{
    CHECK_EQ_INT(utf8_valid_prefix("", 0), 0);
    CHECK_EQ_INT(utf8_valid_prefix("hello, world: ascii only", 24), 24);
    CHECK_EQ_INT(utf8_valid_prefix("0123456789abcdef\xC3\xA9", 18), 18);
    CHECK_EQ_INT(utf8_valid_prefix("0123456789abcdef\xC3", 17), 16);
    CHECK_EQ_INT(utf8_valid_prefix("ab\xFF"
                                   "cd",
                                   5),
                 2);
    CHECK_EQ_INT(utf8_valid_prefix("\xF0\x9F\x98\x80\xED\xA0\x80", 7), 4);
}

TEST(repair)
{
    CHECK(REPAIRED("plain", "plain", 0));
    CHECK(REPAIRED("a\xFF"
                   "b",
                   "a" FFFD "b", 1));
    /* the example checked against Node: a, ff, e2 82 (truncated), b, ed a0 80, f0 9f 98 (end) */
    CHECK(REPAIRED("a\xFF\xE2\x82"
                   "b\xED\xA0\x80\xF0\x9F\x98",
                   "a" FFFD FFFD "b" FFFD FFFD FFFD FFFD, 6));
    CHECK(REPAIRED("\xC0\xAF", FFFD FFFD, 2));
    CHECK(REPAIRED("\xE0\x80\xAF", FFFD FFFD FFFD, 3));
    CHECK(REPAIRED("\xF0\x80\x80\x80", FFFD FFFD FFFD FFFD, 4));
    CHECK(REPAIRED("\xF4\x90\x80\x80", FFFD FFFD FFFD FFFD, 4));
    CHECK(REPAIRED("\xE2\x82\xE2\x82\xAC", FFFD "\xE2\x82\xAC", 1));
    CHECK(REPAIRED("\x80\x80", FFFD FFFD, 2));
    /* with wtf8, a surrogate's form is one character, hence one U+FFFD */
    CHECK(repaired("a\xED\xA0\x80z", 5, "a" FFFD "z", 5, 1, 1));
    /* ...but one cut short is two maximal subparts, as in UTF-8 */
    CHECK(repaired("a\xED\xA0z", 4, "a" FFFD FFFD "z", 8, 2, 1));
}

TEST(put)
{
    char b[4];
    uint32_t cp;
    static const uint32_t cps[] = {0, 0x7F, 0x80, 0x7FF, 0x800, 0xD800, 0xDFFF, 0xFFFF, 0x10000, 0x10FFFF};
    for (size_t i = 0; i < sizeof cps / sizeof cps[0]; i++) {
        size_t n = utf8_put(b, cps[i]);
        CHECK_EQ_INT(utf8_seq((const unsigned char *)b, n, &cp, 1), (int)n);
        CHECK_EQ_INT(cp, cps[i]);
    }
}

int main(void)
{
    RUN(sequences);
    RUN(valid_prefix);
    RUN(repair);
    RUN(put);
    return test_summary();
}
