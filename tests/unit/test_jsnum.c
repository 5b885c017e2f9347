/* Unit tests for jsnum: numbers as JavaScript writes them. Every expected text is what Node's
 * String(x) prints (the integration suite compares many more, random ones, with the reference). */
#include <math.h>
#include <stdlib.h>

#include "jsnum.h"
#include "test.h"

static int fmt(double x, const char *want)
{
    char b[JSNUM_MAX];
    size_t n = jsnum_format(x, b);
    if (n != strlen(want) || memcmp(b, want, n) != 0) {
        fprintf(stderr, "  %.17g: got %.*s, expected %s\n", x, (int)n, b, want);
        return 0;
    }
    return 1;
}

TEST(format)
{
    CHECK(fmt(0, "0"));
    CHECK(fmt(-0.0, "0"));
    CHECK(fmt(1, "1"));
    CHECK(fmt(-42, "-42"));
    CHECK(fmt(0.1, "0.1"));
    CHECK(fmt(0.1 + 0.2, "0.30000000000000004"));
    CHECK(fmt(3.141592653589793, "3.141592653589793"));
    CHECK(fmt(9007199254740994.0, "9007199254740994"));
    CHECK(fmt(1.0000000000000002, "1.0000000000000002"));
    CHECK(fmt(1e21, "1e+21"));
    CHECK(fmt(1e20, "100000000000000000000"));
    CHECK(fmt(123456789012345680000.0, "123456789012345680000"));
    CHECK(fmt(12345678901234567890123.0, "1.2345678901234568e+22"));
    CHECK(fmt(1e-6, "0.000001"));
    CHECK(fmt(1e-7, "1e-7"));
    CHECK(fmt(1.5e-7, "1.5e-7"));
    CHECK(fmt(123e-20, "1.23e-18"));
    CHECK(fmt(1e100, "1e+100"));
    CHECK(fmt(5e-324, "5e-324"));
    CHECK(fmt(-5e-324, "-5e-324"));
    CHECK(fmt(1.5e-323, "1.5e-323"));
    CHECK(fmt(2.2250738585072014e-308, "2.2250738585072014e-308"));
    CHECK(fmt(1.7976931348623157e308, "1.7976931348623157e+308"));
    CHECK(fmt(-1.5, "-1.5"));
    CHECK(fmt(123.456, "123.456"));
    CHECK(fmt(1e16, "10000000000000000"));
    CHECK(fmt(4.35, "4.35"));
    CHECK(fmt(0.000123, "0.000123"));
}

TEST(integers)
{
    char b[JSNUM_MAX];
    CHECK_EQ_MEM(b, jsnum_int(0, b), "0");
    CHECK_EQ_MEM(b, jsnum_int(-7, b), "-7");
    CHECK_EQ_MEM(b, jsnum_int(INT64_MAX, b), "9223372036854775807");
    CHECK_EQ_MEM(b, jsnum_int(INT64_MIN, b), "-9223372036854775808");
}

TEST(round_trip)
{
    /* random bit patterns: the text reads back to the same double */
    uint64_t s = 88172645463325252ull;
    char b[JSNUM_MAX + 1];
    int bad = 0;
    for (int i = 0; i < 20000; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        double x;
        memcpy(&x, &s, sizeof x);
        if (!isfinite(x))
            continue;
        size_t n = jsnum_format(x, b);
        b[n] = '\0';
        if (jsnum_strtod(b, NULL) != x && !(x == 0 && b[0] == '0'))
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
}

int main(void)
{
    RUN(format);
    RUN(integers);
    RUN(round_trip);
    return test_summary();
}
