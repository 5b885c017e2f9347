/* buf: the byte containers every module shares.
 * slice_t is a borrowed view (ptr,len) that is never stored past the call that lent it.
 * buf_t is a growable owned buffer (base/len/cap + consume), as h2o_buffer_t.
 * rbuf_t is a refcounted immutable block: encode once, queue by reference on many connections. */
#ifndef SL_BUF_H
#define SL_BUF_H

#include <stddef.h>
#include <stdint.h>

/* Abort with a message when memory runs out (h2o_mem_alloc): callers never test for NULL.
 * Sizes a peer controls must be checked against their limit before they reach these. */
void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrndup(const char *s, size_t n);

typedef struct {
    const char *ptr;
    size_t len;
} slice_t;

#define SLICE_LIT(s) ((slice_t){(s), sizeof(s) - 1})
int slice_eq(slice_t a, const char *lit);           /* 1 if a equals the C string lit */
int slice_caseeq(slice_t a, const char *lit);       /* same, ASCII case-insensitive */

typedef struct {
    char *base;
    size_t len;
    size_t cap;
} buf_t;

#define BUF_INIT {NULL, 0, 0}
void buf_reserve(buf_t *b, size_t extra);           /* ensure cap >= len + extra */
void buf_append(buf_t *b, const void *p, size_t n);
void buf_appendc(buf_t *b, char c);
void buf_appendstr(buf_t *b, const char *s);
void buf_consume(buf_t *b, size_t n);               /* drop n bytes from the front */
void buf_free(buf_t *b);                            /* frees storage; b is BUF_INIT after */

/* Refcounted block. `data` has RBUF_HEADROOM spare bytes in front of the payload so a transport
 * can prepend its framing once (a WebSocket header is at most 10 bytes for server frames) and
 * every recipient then shares the same framed bytes. */
#define RBUF_HEADROOM 10

enum {
    RBUF_BINARY = 1,    /* payload is binary (Engine.IO binary message) */
    RBUF_FRAMED = 2,    /* a WebSocket header has been written into the headroom */
    RBUF_DEFLATED = 4,  /* payload is a compressed WebSocket message (permessage-deflate: RSV1) */
    RBUF_NODEFLATE = 8, /* not worth compressing: compression did not make it shorter */
};

typedef struct rbuf {
    uint32_t refs;     /* owners; freed when it drops to 0 */
    uint32_t len;      /* payload bytes, starting at data + RBUF_HEADROOM */
    uint8_t flags;     /* RBUF_* */
    uint8_t hdr;       /* with RBUF_FRAMED: header length, the frame starts at data + HEADROOM - hdr */
    struct rbuf *alt;  /* the same message compressed (ws.c, permessage-deflate), made on first
                          need and shared by every recipient; owned: released with this block */
    char data[];       /* [headroom][payload] */
} rbuf_t;

rbuf_t *rbuf_new(size_t len);                       /* refs = 1, payload uninitialised */
rbuf_t *rbuf_from(const void *p, size_t len);       /* refs = 1, payload copied */
static inline char *rbuf_payload(rbuf_t *b) { return b->data + RBUF_HEADROOM; }
static inline rbuf_t *rbuf_ref(rbuf_t *b) { b->refs++; return b; }
void rbuf_unref(rbuf_t *b);                         /* NULL is a no-op */

#endif
