/* Unit tests for log: the text and JSON forms of one event (log_format_line), JSON escaping of
 * quotes, control characters and invalid UTF-8 (repaired to U+FFFD), fields of every kind. */
#include <stdlib.h>

#include "log.h"
#include "test.h"

#define T0 1764990000123LL /* 2025-12-06T03:00:00.123Z */

static void line(buf_t *out, int fmt, int level, const log_field_t *f, size_t n, const char *msg, size_t len)
{
    out->len = 0;
    log_format_line(out, fmt, level, T0, f, n, msg, len);
}

TEST(text)
{
    buf_t b = BUF_INIT;
    line(&b, LOG_TEXT, LOG_INFO, NULL, 0, "hello", 5);
    CHECK_EQ_MEM(b.base, b.len, "hello\n");
    line(&b, LOG_TEXT, LOG_WARN, LOG_FIELDS(LOG_S("sid", "x")), "careful", 7);
    CHECK_EQ_MEM(b.base, b.len, "[warn] careful\n"); /* fields are JSON's; the message says it */
    line(&b, LOG_TEXT, LOG_ERROR, LOG_FIELDS(LOG_TRAIL("traceback", "stack traceback:\n\tapp.lua:3")), "error in x: y", 13);
    CHECK_EQ_MEM(b.base, b.len, "[error] error in x: y\nstack traceback:\n\tapp.lua:3\n");
    buf_free(&b);
}

TEST(json)
{
    buf_t b = BUF_INIT;
    line(&b, LOG_JSON, LOG_DEBUG, NULL, 0, "hi", 2);
    CHECK_EQ_MEM(b.base, b.len, "{\"time\":\"2025-12-06T03:00:00.123Z\",\"level\":\"debug\",\"msg\":\"hi\"}\n");
    line(&b, LOG_JSON, LOG_ERROR,
         LOG_FIELDS(LOG_S("sid", "abc"), LOG_S("nsp", NULL), LOG_I("n", -42), LOG_N("ms", 1.5), LOG_SN("cut", "abcdef", 3),
                    LOG_TRAIL("traceback", "stack traceback:\n\t[C]: in ?")),
         "a \"quoted\"\ttab", 14);
    CHECK_EQ_MEM(b.base, b.len,
                 "{\"time\":\"2025-12-06T03:00:00.123Z\",\"level\":\"error\",\"msg\":\"a \\\"quoted\\\"\\ttab\",\"sid\":\"abc\","
                 "\"n\":-42,\"ms\":1.5,\"cut\":\"abc\",\"traceback\":\"stack traceback:\\n\\t[C]: in ?\"}\n");
    buf_free(&b);
}

TEST(json_bytes)
{
    buf_t b = BUF_INIT;
    /* a peer's bytes: invalid UTF-8 becomes U+FFFD, a control character an escape, NUL too */
    line(&b, LOG_JSON, LOG_INFO, LOG_FIELDS(LOG_SN("url", "/\xff\x01", 3)), "x\xc3\x28\0y", 5);
    CHECK_EQ_MEM(b.base, b.len,
                 "{\"time\":\"2025-12-06T03:00:00.123Z\",\"level\":\"info\",\"msg\":\"x\xEF\xBF\xBD(\\u0000y\",\"url\":\"/"
                 "\xEF\xBF\xBD\\u0001\"}\n");
    buf_free(&b);
}

TEST(levels)
{
    CHECK_EQ_INT(log_level_parse("error"), LOG_ERROR);
    CHECK_EQ_INT(log_level_parse("warn"), LOG_WARN);
    CHECK_EQ_INT(log_level_parse("info"), LOG_INFO);
    CHECK_EQ_INT(log_level_parse("debug"), LOG_DEBUG);
    CHECK_EQ_INT(log_level_parse("trace"), -1);
}

int main(void)
{
    RUN(text);
    RUN(json);
    RUN(json_bytes);
    RUN(levels);
    return test_summary();
}
