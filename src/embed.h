/* embed: files compiled into the binary by scripts/embed.sh (generated in build/gen/).
 * embed_prelude: the lua/ folder, run before app.lua. embed_client: the socket.io-client bundle served
 * at /socket.io/socket.io.js (from npm's socket.io-client dist/, installed by make setup).
 * embed_client_z: each bundle file compressed at build time, named NAME.br (brotli), NAME.gz (gzip)
 * and NAME.zz (HTTP deflate, the zlib format). embed_adminui: the Admin UI's page (npm's
 * @socket.io/admin-ui ui/dist/, without its source maps), named by their paths in that folder
 * ("index.html", "js/app.0d7d7845.js"); empty when the package was not installed at build time. */
#ifndef SL_EMBED_H
#define SL_EMBED_H

#include <stddef.h>

typedef struct {
    const char *name; /* file name without directory; NULL ends the list */
    const char *data; /* NUL-terminated for convenience; len excludes it */
    size_t len;
} embed_file_t;

extern const embed_file_t embed_prelude[];
extern const embed_file_t embed_client[];
extern const embed_file_t embed_client_z[];
extern const embed_file_t embed_adminui[];

const embed_file_t *embed_find(const embed_file_t *list, const char *name, size_t len);

#endif
