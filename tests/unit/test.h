/* A tiny test harness for the unit tests: one executable per tests/unit/test_*.c.
 *   TEST(name) { CHECK(cond); CHECK_EQ_INT(a, b); CHECK_EQ_MEM(p, n, "lit"); }
 *   int main(void) { RUN(name); ...; return test_summary(); }
 * Prints "ok N name" / "not ok N name" lines and the closing "N passed, N failed". */
#ifndef SL_TEST_H
#define SL_TEST_H

#include <stdio.h>
#include <string.h>

static int test_failed_now, test_passed_n, test_failed_n;

#define TEST(name) static void test_##name(void)
#define CHECK(cond)                                                                                          \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);                       \
            test_failed_now = 1;                                                                             \
        }                                                                                                    \
    } while (0)
#define CHECK_EQ_INT(a, b)                                                                                   \
    do {                                                                                                     \
        long long a_ = (long long)(a), b_ = (long long)(b);                                                  \
        if (a_ != b_) {                                                                                      \
            fprintf(stderr, "  %s:%d: %s == %lld, expected %lld\n", __FILE__, __LINE__, #a, a_, b_);         \
            test_failed_now = 1;                                                                             \
        }                                                                                                    \
    } while (0)
#define CHECK_EQ_MEM(p, n, lit)                                                                              \
    do {                                                                                                     \
        size_t n_ = (size_t)(n);                                                                             \
        if (n_ != sizeof(lit) - 1 || memcmp((p), (lit), n_) != 0) {                                          \
            fprintf(stderr, "  %s:%d: got \"%.*s\", expected \"%s\"\n", __FILE__, __LINE__, (int)n_,         \
                    (const char *)(p), lit);                                                                 \
            test_failed_now = 1;                                                                             \
        }                                                                                                    \
    } while (0)
#define RUN(name)                                                                                            \
    do {                                                                                                     \
        test_failed_now = 0;                                                                                 \
        test_##name();                                                                                       \
        if (test_failed_now)                                                                                 \
            test_failed_n++;                                                                                 \
        else                                                                                                 \
            test_passed_n++;                                                                                 \
        printf("%s %d %s\n", test_failed_now ? "not ok" : "ok", test_passed_n + test_failed_n, #name);       \
    } while (0)

static inline int test_summary(void)
{
    printf("%d passed, %d failed\n", test_passed_n, test_failed_n);
    return test_failed_n ? 1 : 0;
}

#endif
