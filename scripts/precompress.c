/* precompress: a build-time tool (not part of siolua). Writes FILE's compressed forms for the three
 * encodings the reference's serve() offers, at their best settings, once per build:
 *   precompress FILE OUTDIR   ->  OUTDIR/NAME.br (brotli, quality 11), NAME.gz (gzip, level 9),
 *                                 NAME.zz (HTTP "deflate": zlib format, level 9)
 * where NAME is FILE's base name. siolua embeds them (scripts/embed.sh) and serves the one the
 * request's Accept-Encoding prefers; brotli at quality 11 takes about a second for the bundle,
 * too long to do at every start-up. Exit status 1 on any failure. */
#include <brotli/encode.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static int write_file(const char *dir, const char *name, const char *ext, const void *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s%s", dir, name, ext);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
        perror(path);
        return -1;
    }
    return 0;
}

/* gzip (wbits 31) or zlib (wbits 15) at level 9 */
static unsigned char *zlib_form(const unsigned char *in, size_t n, int wbits, size_t *outn)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, 9, Z_DEFLATED, wbits, 9, Z_DEFAULT_STRATEGY) != Z_OK)
        return NULL;
    size_t cap = deflateBound(&z, (uLong)n);
    unsigned char *out = malloc(cap);
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    int r = deflate(&z, Z_FINISH);
    *outn = cap - z.avail_out;
    deflateEnd(&z);
    if (r != Z_STREAM_END) {
        free(out);
        return NULL;
    }
    return out;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: precompress FILE OUTDIR\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (f == NULL) {
        perror(argv[1]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    unsigned char *in = malloc(len > 0 ? (size_t)len : 1);
    if (len < 0 || fread(in, 1, (size_t)len, f) != (size_t)len) {
        perror(argv[1]);
        return 1;
    }
    fclose(f);
    const char *name = strrchr(argv[1], '/') ? strrchr(argv[1], '/') + 1 : argv[1];
    size_t n = (size_t)len, brn = BrotliEncoderMaxCompressedSize(n), gzn, zzn;
    unsigned char *br = malloc(brn ? brn : 64);
    if (brn == 0 ||
        !BrotliEncoderCompress(BROTLI_MAX_QUALITY, BROTLI_DEFAULT_WINDOW, BROTLI_MODE_TEXT, n, in, &brn, br)) {
        fprintf(stderr, "precompress: brotli failed on %s\n", argv[1]);
        return 1;
    }
    unsigned char *gz = zlib_form(in, n, 31, &gzn), *zz = zlib_form(in, n, 15, &zzn);
    if (gz == NULL || zz == NULL) {
        fprintf(stderr, "precompress: zlib failed on %s\n", argv[1]);
        return 1;
    }
    if (write_file(argv[2], name, ".br", br, brn) || write_file(argv[2], name, ".gz", gz, gzn) ||
        write_file(argv[2], name, ".zz", zz, zzn))
        return 1;
    free(in);
    free(br);
    free(gz);
    free(zz);
    return 0;
}
