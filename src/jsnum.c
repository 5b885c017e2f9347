/* jsnum: see jsnum.h.
 *
 * The digits. glibc's printf("%.*e") rounds correctly (it works on the exact binary value), and so
 * does strtod, so the correctly rounded p-digit decimal of x reads back to x exactly when some
 * p-digit decimal does (the ones that do form an interval around x). We try p = 15, 16, 17 and keep
 * the first that reads back: 17 always does. p = 15 also finds every shorter answer: a decimal of
 * k <= 15 digits that reads back is within half an ulp (2^-53 relative) of x, far closer than half
 * the 15-digit spacing (5e-16 relative), so it is the correctly rounded 15-digit one, with trailing
 * zeros (which we strip); for subnormals, whose precision is lower, we start at p = 1. Where two p-digit decimals are
 * equally short, ECMAScript wants the closer one: the correctly rounded one is. The layout is Number::toString's
 * (ECMA-262 6.1.6.1.20) with k digits and n the decimal exponent (x = 0.d1d2...dk x 10^n). */
#include "jsnum.h"

#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t jsnum_int(int64_t v, char *out)
{
    char tmp[24];
    size_t n = 0, len = 0;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        out[len++] = '-';
    while (n)
        out[len++] = tmp[--n];
    return len;
}

double jsnum_strtod(const char *s, char **end)
{
    static locale_t c_numeric; /* a cache of a constant: made once, never changed */
    if (c_numeric == (locale_t)0)
        c_numeric = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    return c_numeric != (locale_t)0 ? strtod_l(s, end, c_numeric) : strtod(s, end);
}

/* The shortest round-trip digits of x > 0 (finite): fills digits (no dot, no trailing zero),
 * returns k and sets *n. */
static int shortest(double x, char digits[20], int *n)
{
    char buf[48], check[48];
    /* below DBL_MIN (subnormals) precision is lower and shorter answers exist: 5e-324 */
    for (int p = x < 2.2250738585072014e-308 ? 1 : 15; p <= 17; p++) {
        snprintf(buf, sizeof buf, "%.*e", p - 1, x);
        /* buf: d[<radix>ddd]e[+-]XX, the radix character being the locale's (an app may call
         * os.setlocale): read the digits and the exponent, and check with a locale-free strtod */
        int k = 0;
        const char *s = buf;
        for (; *s != 'e'; s++)
            if (*s >= '0' && *s <= '9')
                digits[k++] = *s;
        int e = atoi(s + 1);
        if (p < 17) {
            snprintf(check, sizeof check, "%c.%.*se%d", digits[0], k - 1, digits + 1, e);
            if (jsnum_strtod(check, NULL) != x)
                continue;
        }
        *n = e + 1;
        while (k > 1 && digits[k - 1] == '0')
            k--;
        return k;
    }
    return 0; /* not reached: p = 17 always returns */
}

size_t jsnum_format(double x, char *out)
{
    size_t len = 0;
    if (x == 0) {
        out[0] = '0';
        return 1;
    }
    if (x == floor(x) && fabs(x) < 9007199254740992.0) /* integral: its digits are the shortest */
        return jsnum_int((int64_t)x, out);
    if (x < 0) {
        out[len++] = '-';
        x = -x;
    }
    char d[20];
    int n, k = shortest(x, d, &n);
    if (k <= n && n <= 21) { /* 123456789012345680000 */
        memcpy(out + len, d, (size_t)k);
        len += (size_t)k;
        for (int i = k; i < n; i++)
            out[len++] = '0';
    } else if (0 < n && n <= 21) { /* 3.14 */
        memcpy(out + len, d, (size_t)n);
        len += (size_t)n;
        out[len++] = '.';
        memcpy(out + len, d + n, (size_t)(k - n));
        len += (size_t)(k - n);
    } else if (-6 < n && n <= 0) { /* 0.000001 */
        out[len++] = '0';
        out[len++] = '.';
        for (int i = n; i < 0; i++)
            out[len++] = '0';
        memcpy(out + len, d, (size_t)k);
        len += (size_t)k;
    } else { /* 1e+21, 1.5e-7 */
        out[len++] = d[0];
        if (k > 1) {
            out[len++] = '.';
            memcpy(out + len, d + 1, (size_t)(k - 1));
            len += (size_t)(k - 1);
        }
        out[len++] = 'e';
        out[len++] = n - 1 < 0 ? '-' : '+';
        len += jsnum_int(n - 1 < 0 ? 1 - n : n - 1, out + len);
    }
    return len;
}
