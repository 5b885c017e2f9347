/* main: the command line. Parses flags into the configuration (options.h: flags win over
 * io.options in the script), starts the server and runs the loop. Exit codes: 0 after a clean
 * shutdown, 1 when the app fails to load or the port cannot be bound, 2 for usage errors. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "server.h"
#include "supervisor.h"

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
    srv.cfg.worker = supervisor_worker_index();
    if (srv.cfg.worker >= 0) { /* a worker of --workers: its number in the logs and in its session ids */
        log_worker = srv.cfg.worker;
        eio_set_worker(srv.cfg.worker);
    } else if (srv.cfg.workers > 1) {
        rc = supervisor_run(&srv.cfg, argv);
        options_free(&srv.cfg);
        return rc;
    }
    rc = sl_server_start(&srv, loop);
    if (rc == 2) { /* io.options{workers = N}: this process becomes their supervisor */
        static char flag[] = "--workers";
        char n[16], exe[4096], **args = calloc((size_t)argc + 3, sizeof(char *));
        size_t len = sizeof(exe);
        snprintf(n, sizeof(n), "%d", srv.cfg.workers);
        log_info("siolua: io.options{workers = %d}: starting again as their supervisor", srv.cfg.workers);
        if (args != NULL && uv_exepath(exe, &len) == 0) {
            memcpy(args, argv, (size_t)argc * sizeof(char *));
            args[argc] = flag;
            args[argc + 1] = n;
            execv(exe, args); /* (every descriptor of this run is close-on-exec) */
        }
        log_error("siolua: cannot start the supervisor for io.options{workers = %d}", srv.cfg.workers);
        free(args);
        rc = -1;
    }
    if (rc >= 0) { /* serving, or closed by the app at its top level */
        uv_run(loop, UV_RUN_DEFAULT);
        uv_run(loop, UV_RUN_NOWAIT); /* close callbacks of what the shutdown closed */
    }
    sl_server_free(&srv);
    return rc < 0 ? 1 : 0;
}
