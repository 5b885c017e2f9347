/* main: the command line. Parses flags into the configuration (options.h: flags win over
 * io.options in the script), starts the server and runs the loop. Exit codes: 0 after a clean
 * shutdown, 1 when the app fails to load or the port cannot be bound, 2 for usage errors. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "server.h"

#define SIOLUA_VERSION "0.1.0"

int main(int argc, char **argv)
{
    sl_server_t srv;
    uv_loop_t *loop = uv_default_loop();
    int rc;
    memset(&srv, 0, sizeof(srv));
    options_defaults(&srv.cfg);
    rc = options_parse_argv(&srv.cfg, argc, argv, SIOLUA_VERSION);
    if (rc != 0) {
        options_free(&srv.cfg);
        return rc > 0 ? 0 : 2;
    }
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stderr, NULL, _IOLBF, 0);
    rc = sl_server_start(&srv, loop);
    if (rc >= 0) { /* serving, or closed by the app at its top level */
        uv_run(loop, UV_RUN_DEFAULT);
        uv_run(loop, UV_RUN_NOWAIT); /* close callbacks of what the shutdown closed */
    }
    sl_server_free(&srv);
    return rc < 0 ? 1 : 0;
}
