/* libFuzzer harness for the recovery state file (rstore_parse): the input is a state file without
 * its checksum, which the harness appends (so that the fuzzer reaches the parser, not only the
 * checksum test). A file it accepts must give a consistent store: every session can be asked for
 * with every offset and replayed, and freed, without a sanitizer report. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "rstore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void count(void *ud, rbuf_t *pkt, rbuf_t *const *att, size_t natt)
{
    (void)att;
    *(size_t *)ud += pkt->len + natt;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *p = malloc(size + 4);
    const char *err = NULL;
    memcpy(p, data, size);
    uint32_t c = (uint32_t)crc32(0L, p, (uInt)size);
    for (int i = 0; i < 4; i++)
        p[size + i] = (uint8_t)(c >> (8 * i));
    rstore_t *st = rstore_parse(p, size + 4, 0, &err);
    free(p);
    if (st == NULL) {
        if (err == NULL)
            abort(); /* a refusal always says why */
        return 0;
    }
    rstore_stats_t s;
    rstore_stats(st, &s);
    /* ask for a few pids with each stored offset */
    static const char *const pids[] = {"PID1", "PID3", "a", ""};
    for (uint64_t q = s.first_seq; q < s.next_seq && q < s.first_seq + 8; q++) {
        char off[RSTORE_OFFSET_MAX];
        rstore_t *tmp = rstore_new(q);
        rstore_next_offset(tmp, off);
        rstore_free(tmp);
        for (int i = 0; i < 4; i++) {
            rstore_session_t sess;
            slice_t pid = {pids[i], strlen(pids[i])}, o = {off, strlen(off)};
            if (rstore_take(st, 0, "/", pid, o, &sess) == 0) {
                size_t n = 0;
                if (rstore_replay(st, &sess, count, &n) < 0)
                    abort(); /* nothing was evicted in between */
                rstore_session_free(&sess);
            }
        }
    }
    rstore_free(st);
    return 0;
}
