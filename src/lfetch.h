/* lfetch: siolua.fetch, an HTTP client for app handlers (the shape of fetch() and its Response).
 *   local res = siolua.fetch(url [, { method = "GET", headers = { name = value }, body = "...",
 *                                     timeout = 30000, maxSize = 16 MiB, redirect = "follow",
 *                                     ca = "/path/to/ca.pem" }])
 *   res.status (200), res.ok (200-299), res.headers ({ ["content-type"] = ... }: names lower-case,
 *   repeated ones joined with ", "), res.body (string), res.url (after redirects), res.redirected
 * http and https only; HTTPS checks the certificate and the host name against the system's CAs
 * (or `ca`); redirects are followed (at most 20, fetch's limit; redirect = "manual" returns the
 * 3xx, "error" raises); compressed bodies are decoded; a body over maxSize (after decoding) or
 * headers over 256 KiB abort the transfer with an error. Network failures, timeouts and bad
 * arguments raise "siolua.fetch: ..."; an HTTP error status does not (as fetch).
 * Runs on libcurl's multi interface driven by the loop (a uv_poll per socket, one uv_timer), with
 * libcurl's threaded resolver: no call blocks the loop. The multi handle is made on the first
 * siolua.fetch() of a VM and closed with it. */
#ifndef SL_LFETCH_H
#define SL_LFETCH_H

#include <lua.h>

/* Adds siolua.fetch. [-0, +0, e] */
void lfetch_open(lua_State *L);

#endif
