/* zip: the Accept-Encoding choice as the npm negotiator 0.6 makes it (the table's answers were
 * printed by negotiator itself), and gzip / zlib output that zlib's own inflate reads back. */
#include <zlib.h>

#include "test.h"
#include "zip.h"

TEST(accept_encoding_as_negotiator)
{
    static const char *const ge[] = {"gzip", "deflate"}, *const bge[] = {"br", "gzip", "deflate"};
    static const struct {
        const char *h, *ge, *bge;
    } cases[] = {
        {NULL, NULL, NULL},
        {"", NULL, NULL},
        {"gzip, deflate, br", "gzip", "gzip"},
        {"deflate, gzip", "deflate", "deflate"},
        {"gzip;q=0.5, deflate", "deflate", "deflate"},
        {"*", "gzip", "br"},
        {"*;q=0, gzip", "gzip", "gzip"},
        {"identity", NULL, NULL},
        {"br", NULL, "br"},
        {"gzip;q=0", NULL, NULL},
        {"GZIP", "gzip", "gzip"},
        {"deflate;q=0.5, *;q=0.8", "gzip", "br"},
        {"gzip;q=abc, deflate;q=0.1", "deflate", "deflate"},
        {"gzip ;q=1", "gzip", "gzip"},
        {"gzip;q= 0.4, deflate;q=.5e0", "deflate", "deflate"},
        {"x;q=0, gzip;q=0.001", "gzip", "gzip"},
        {"gzip,deflate;q=1e400", "deflate", "deflate"},
        {"identity;q=0, *", "gzip", "br"},
        {"gzip;foo=bar;q=0.2, deflate;q=0.1", "gzip", "gzip"},
        {"gzip deflate", NULL, NULL},
        {";q=1, deflate", "deflate", "deflate"},
        {"gzip;q=0.5;q=1, deflate;q=0.6", "deflate", "deflate"},
        {"*, gzip;q=0.2", "deflate", "br"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *h = cases[i].h;
        int a = zip_accept_encoding(h, h ? strlen(h) : 0, ge, 2);
        int b = zip_accept_encoding(h, h ? strlen(h) : 0, bge, 3);
        const char *ga = a < 0 ? NULL : ge[a], *gb = b < 0 ? NULL : bge[b];
        if ((ga == NULL) != (cases[i].ge == NULL) || (ga && strcmp(ga, cases[i].ge)) ||
            (gb == NULL) != (cases[i].bge == NULL) || (gb && strcmp(gb, cases[i].bge))) {
            fprintf(stderr, "  \"%s\": got %s / %s\n", h ? h : "(none)", ga ? ga : "-", gb ? gb : "-");
            test_failed_now = 1;
        }
    }
}

TEST(gzip_and_zlib_round_trip)
{
    char t[10000];
    for (size_t i = 0; i < sizeof(t); i++)
        t[i] = "socket.io rooms "[(i + i / 1000) % 16];
    for (int fmt = ZIP_ZLIB; fmt <= ZIP_GZIP; fmt++) {
        buf_t out = BUF_INIT;
        zip_params_t p = {9, 9, 0, 15};
        zip_compress((zip_format_t)fmt, &p, 0, t, 10000, &out);
        CHECK(out.len > 10 && out.len < 10000);
        z_stream s;
        memset(&s, 0, sizeof(s));
        CHECK_EQ_INT(inflateInit2(&s, fmt == ZIP_GZIP ? 31 : 15), Z_OK);
        char back[10001];
        s.next_in = (Bytef *)out.base;
        s.avail_in = (uInt)out.len;
        s.next_out = (Bytef *)back;
        s.avail_out = sizeof(back);
        CHECK_EQ_INT(inflate(&s, Z_FINISH), Z_STREAM_END);
        CHECK(s.total_out == 10000 && memcmp(back, t, 10000) == 0);
        inflateEnd(&s);
        buf_free(&out);
    }
    const char *err;
    zip_params_t bad = {10, 8, 0, 15};
    CHECK_EQ_INT(zip_params_check(&bad, &err), -1);
    zip_params_t def = ZIP_DEFAULTS;
    CHECK_EQ_INT(zip_params_check(&def, &err), 0);
}

int main(void)
{
    RUN(accept_encoding_as_negotiator);
    RUN(gzip_and_zlib_round_trip);
    zip_release();
    return test_summary();
}
