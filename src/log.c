/* log: see log.h. JSON lines are written by yajl's generator (Debian's libyajl, the parser the
 * value codec already uses), never by printf: it escapes quotes and control characters; invalid
 * UTF-8 (a peer's bytes in a message) is repaired to U+FFFD first so that every line parses. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <yajl/yajl_gen.h>

#include "utf8.h"

int log_level = LOG_INFO;
int log_format = LOG_TEXT;
int log_worker = -1;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

/* A string value, repaired to valid UTF-8 when it is not. */
static void gen_str(yajl_gen g, const char *s, size_t n)
{
    if (utf8_valid_prefix(s, n) == n) {
        yajl_gen_string(g, (const unsigned char *)s, n);
    } else {
        buf_t tmp = BUF_INIT;
        utf8_repair(&tmp, s, n, 0);
        yajl_gen_string(g, (const unsigned char *)tmp.base, tmp.len);
        buf_free(&tmp);
    }
}

static void gen_key(yajl_gen g, const char *k)
{
    yajl_gen_string(g, (const unsigned char *)k, strlen(k));
}

static void format_json(buf_t *out, int level, long long time_ms, const log_field_t *f, size_t n, const char *msg,
                        size_t msg_len)
{
    char ts[40];
    time_t sec = (time_t)(time_ms / 1000);
    struct tm tm;
    const unsigned char *text;
    size_t len;
    yajl_gen g = yajl_gen_alloc(NULL);
    gmtime_r(&sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + strlen(ts), sizeof(ts) - strlen(ts), ".%03dZ", (int)(time_ms % 1000));
    yajl_gen_map_open(g);
    gen_key(g, "time");
    gen_str(g, ts, strlen(ts));
    gen_key(g, "level");
    gen_str(g, level_names[level], strlen(level_names[level]));
    gen_key(g, "msg");
    gen_str(g, msg, msg_len);
    for (size_t i = 0; i < n; i++) {
        if ((f[i].kind == LOG_F_STR || f[i].kind == LOG_F_TRAIL) && f[i].str == NULL)
            continue;
        gen_key(g, f[i].key);
        switch (f[i].kind) {
        case LOG_F_INT:
            yajl_gen_integer(g, f[i].i);
            break;
        case LOG_F_NUM:
            if (yajl_gen_double(g, f[i].d) != yajl_gen_status_ok) /* NaN, infinities */
                yajl_gen_null(g);
            break;
        default:
            gen_str(g, f[i].str, f[i].len == (size_t)-1 ? strlen(f[i].str) : f[i].len);
        }
    }
    yajl_gen_map_close(g);
    yajl_gen_get_buf(g, &text, &len);
    buf_append(out, text, len);
    buf_appendc(out, '\n');
    yajl_gen_free(g);
}

void log_format_line(buf_t *out, int fmt, int level, long long time_ms, const log_field_t *f, size_t n,
                     const char *msg, size_t msg_len)
{
    if (fmt == LOG_JSON) {
        format_json(out, level, time_ms, f, n, msg, msg_len);
        return;
    }
    if (level != LOG_INFO) {
        buf_appendc(out, '[');
        buf_appendstr(out, level_names[level]);
        buf_append(out, "] ", 2);
    }
    buf_append(out, msg, msg_len);
    for (size_t i = 0; i < n; i++)
        if (f[i].kind == LOG_F_TRAIL && f[i].str != NULL) {
            buf_appendc(out, '\n');
            buf_append(out, f[i].str, f[i].len == (size_t)-1 ? strlen(f[i].str) : f[i].len);
        }
    buf_appendc(out, '\n');
}

static void vlog(int level, const log_field_t *f, size_t n, const char *fmt, va_list ap)
{
    char small[512];
    buf_t line = BUF_INIT, big = BUF_INIT;
    const char *msg = small;
    struct timespec now;
    va_list ap2;
    int len;
    va_copy(ap2, ap);
    len = vsnprintf(small, sizeof(small), fmt, ap);
    if (len < 0)
        len = 0;
    if ((size_t)len >= sizeof(small)) {
        buf_reserve(&big, (size_t)len + 1);
        vsnprintf(big.base, (size_t)len + 1, fmt, ap2);
        msg = big.base;
    }
    va_end(ap2);
    clock_gettime(CLOCK_REALTIME, &now);
    size_t mlen = (size_t)len;
    buf_t tagged = BUF_INIT;
    log_field_t fw[16];
    if (log_worker >= 0 && log_format == LOG_TEXT) { /* --workers: text lines start with "[wN] " */
        char tag[24];
        int tl = snprintf(tag, sizeof(tag), "[w%d] ", log_worker);
        buf_append(&tagged, tag, (size_t)tl);
        buf_append(&tagged, msg, mlen);
        msg = tagged.base;
        mlen = tagged.len;
    } else if (log_worker >= 0) { /* ... JSON ones get "worker": N */
        size_t k = n < 15 ? n : 15;
        if (k > 0) /* (log_msg's f is NULL) */
            memcpy(fw, f, k * sizeof(*f));
        fw[k] = LOG_I("worker", log_worker);
        f = fw;
        n = k + 1;
    }
    log_format_line(&line, log_format, level, (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000, f, n, msg,
                    mlen);
    fwrite(line.base, 1, line.len, stderr); /* one write per event: lines of two processes never mix */
    fflush(stderr);
    buf_free(&line);
    buf_free(&tagged);
    buf_free(&big);
}

void log_fields(int level, const log_field_t *f, size_t n, const char *fmt, ...)
{
    va_list ap;
    if (level > log_level)
        return;
    va_start(ap, fmt);
    vlog(level, f, n, fmt, ap);
    va_end(ap);
}

void log_msg(int level, const char *fmt, ...)
{
    va_list ap;
    if (level > log_level)
        return;
    va_start(ap, fmt);
    vlog(level, NULL, 0, fmt, ap);
    va_end(ap);
}
