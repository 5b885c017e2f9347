/* buf: see buf.h. */
#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void oom(size_t n)
{
    fprintf(stderr, "siolua: out of memory allocating %zu bytes\n", n);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom(n);
    return p;
}

void *xcalloc(size_t nmemb, size_t n)
{
    void *p = calloc(nmemb ? nmemb : 1, n ? n : 1);
    if (p == NULL)
        oom(nmemb * n);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (p == NULL)
        oom(n);
    return p;
}

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

int slice_eq(slice_t a, const char *lit)
{
    size_t n = strlen(lit);
    return a.len == n && memcmp(a.ptr, lit, n) == 0;
}

int slice_caseeq(slice_t a, const char *lit)
{
    size_t n = strlen(lit);
    return a.len == n && strncasecmp(a.ptr, lit, n) == 0;
}

void buf_reserve(buf_t *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap - b->len < extra)
        cap *= 2;
    b->base = xrealloc(b->base, cap);
    b->cap = cap;
}

void buf_append(buf_t *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    buf_reserve(b, n);
    memcpy(b->base + b->len, p, n);
    b->len += n;
}

void buf_appendc(buf_t *b, char c)
{
    buf_reserve(b, 1);
    b->base[b->len++] = c;
}

void buf_appendstr(buf_t *b, const char *s)
{
    buf_append(b, s, strlen(s));
}

void buf_consume(buf_t *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->base, b->base + n, b->len - n);
    b->len -= n;
}

void buf_free(buf_t *b)
{
    free(b->base);
    b->base = NULL;
    b->len = b->cap = 0;
}

rbuf_t *rbuf_new(size_t len)
{
    rbuf_t *b = xmalloc(sizeof(*b) + RBUF_HEADROOM + len);
    b->refs = 1;
    b->len = (uint32_t)len;
    b->flags = 0;
    b->hdr = 0;
    b->alt = NULL;
    return b;
}

rbuf_t *rbuf_from(const void *p, size_t len)
{
    rbuf_t *b = rbuf_new(len);
    if (len)
        memcpy(rbuf_payload(b), p, len);
    return b;
}

void rbuf_unref(rbuf_t *b)
{
    if (b != NULL && --b->refs == 0) {
        rbuf_unref(b->alt);
        free(b);
    }
}
