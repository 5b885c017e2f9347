/* jsnum: numbers as JavaScript writes them (ECMAScript Number::toString, which JSON.stringify
 * uses): the shortest decimal digits that read back to the same double, laid out in fixed
 * notation for exponents -7 < e < 21 and as d.ddde+X otherwise ("0.1", "1e+21", "1e-7",
 * "123456789012345680000", "5e-324"). -0 is written "0". Pure; no allocation. */
#ifndef SL_JSNUM_H
#define SL_JSNUM_H

#include <stddef.h>
#include <stdint.h>

#define JSNUM_MAX 32 /* longest text, with room to spare: "-1.2345678901234567e-308" is 24 */

/* Writes finite x to out[0..JSNUM_MAX) (not NUL-terminated); returns the length. */
size_t jsnum_format(double x, char *out);

/* strtod in the "C" numeric locale whatever the process's is (an app may call os.setlocale). */
double jsnum_strtod(const char *s, char **end);

/* Writes the decimal digits of v (a leading '-' when negative) to out[0..JSNUM_MAX); returns the
 * length. */
size_t jsnum_int(int64_t v, char *out);

#endif
