/* log: the server log, the one logger. One event per call, to stderr, in one of two formats:
 *   text (default)  "[level] message" (info has no tag), the message as the caller formatted it;
 *   json            one object per line: {"time","level","msg", then the call's fields}.
 * A call gives a human message (printf-style) and optional structured fields (socket id,
 * namespace, reason...): text shows the message, JSON the message and the fields, so each event
 * is formatted once and both formats carry the same events. A field marked LOG_F_TRAIL (a Lua
 * traceback) is its own field in JSON and follows the message on the next lines in text.
 * Lua's print() ends up here too (lvm.c). Levels: error < warn < info < debug (README). */
#ifndef SL_LOG_H
#define SL_LOG_H

#include <stddef.h>

#include "buf.h"

enum { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };
enum { LOG_TEXT = 0, LOG_JSON = 1 };

/* the mutable file-scope values: set once by main() from --log-level / --log-format, and the
 * worker's number under --workers (-1: not a worker) */
extern int log_level;
extern int log_format;
extern int log_worker;

enum { LOG_F_STR = 0, LOG_F_INT = 1, LOG_F_NUM = 2, LOG_F_TRAIL = 3 };

typedef struct {
    const char *key;   /* a static name: "sid", "nsp", "reason" ... */
    int kind;          /* LOG_F_* */
    const char *str;   /* STR, TRAIL: the value, borrowed for the call (NULL: field left out) */
    size_t len;        /* its length; (size_t)-1: NUL-terminated */
    long long i;       /* INT */
    double d;          /* NUM */
} log_field_t;

#define LOG_S(k, v) ((log_field_t){.key = (k), .kind = LOG_F_STR, .str = (v), .len = (size_t)-1})
#define LOG_SN(k, v, n) ((log_field_t){.key = (k), .kind = LOG_F_STR, .str = (v), .len = (n)})
#define LOG_I(k, v) ((log_field_t){.key = (k), .kind = LOG_F_INT, .i = (long long)(v)})
#define LOG_N(k, v) ((log_field_t){.key = (k), .kind = LOG_F_NUM, .d = (double)(v)})
#define LOG_TRAIL(k, v) ((log_field_t){.key = (k), .kind = LOG_F_TRAIL, .str = (v), .len = (size_t)-1})
/* LOG_FIELDS(LOG_S(..), LOG_I(..)): the (array, count) pair log_fields() takes */
#define LOG_FIELDS(...) (const log_field_t[]){__VA_ARGS__}, sizeof((log_field_t[]){__VA_ARGS__}) / sizeof(log_field_t)

/* Logs one event at level (nothing when level > log_level) with n fields f (borrowed). */
void log_fields(int level, const log_field_t *f, size_t n, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) do { if (log_level >= LOG_DEBUG) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)
/* log_with(LOG_WARN, LOG_FIELDS(LOG_S("sid", id)), "fmt", ...) */
#define log_with(level, ...) do { if (log_level >= (level)) log_fields((level), __VA_ARGS__); } while (0)

/* Appends the line log_fields() writes (with its '\n') to out, in format fmt (LOG_TEXT/JSON),
 * time_ms the wall clock in ms since the epoch. msg is msg_len bytes, not necessarily valid
 * UTF-8 (JSON gets it repaired: U+FFFD, as every string value). Pure: for the unit tests. */
void log_format_line(buf_t *out, int fmt, int level, long long time_ms, const log_field_t *f, size_t n,
                     const char *msg, size_t msg_len);
/* "error" .. "debug" -> LOG_*, or -1. */
int log_level_parse(const char *name);

#endif
