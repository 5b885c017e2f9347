/* supervisor: `siolua app.lua --workers N`. The first process binds the listening socket and runs
 * N workers, each `siolua` again (same arguments) with its own loop and Lua VM running app.lua; they
 * all accept from that one socket (fd 3) and each talks to the supervisor over a channel (fd 4,
 * wbus.h) that the supervisor relays between workers: the adapter's messages (broadcasts, rooms,
 * fetchSockets... span the workers) and the connections handed to the worker that holds their
 * session. The supervisor runs no Lua and serves no client. It says "siolua listening on ..."
 * once every worker is ready; restarts a worker that dies (its clients reconnect, the others'
 * are untouched); passes SIGHUP to every worker (each reloads app.lua, keeping its connections);
 * on SIGTERM/SIGINT passes it on and exits once every worker has, with the first non-zero status
 * a worker exited with (0 when all drained cleanly). */
#ifndef SL_SUPERVISOR_H
#define SL_SUPERVISOR_H

#include "options.h"

/* The environment variable that makes a process a worker: "SUPERVISOR_PID:INDEX". */
#define SUPERVISOR_ENV "SIOLUA_WORKER_OF"

/* Runs the supervisor of cfg->workers workers until they are all gone; argv is siolua's own (the
 * workers get the same). Returns the exit status: 0, or 1 (cannot listen, a worker could not
 * start, a worker exited with an error while stopping). */
int supervisor_run(const sl_config_t *cfg, char **argv);
/* In a worker (SUPERVISOR_ENV names our parent): our index (>= 0); else -1. */
int supervisor_worker_index(void);

#endif
