/* ltimer: JS-style timers for Lua apps on the libuv loop:
 *   local t = setTimeout(fn, ms, ...)   clearTimeout(t)
 *   local t = setInterval(fn, ms, ...)  clearInterval(t)
 * (also siolua.setTimeout ...). A timer is a userdata "siolua.timer"; C keeps it alive (registry
 * ref) while it is armed, so dropping the handle does not stop it, as in JS. The callback runs like
 * any handler (own coroutine, errors logged). Every armed timer is on its VM's list, so
 * ltimer_close_all() stops them all when the VM goes away. */
#ifndef SL_LTIMER_H
#define SL_LTIMER_H

#include <lua.h>

#include "lvm.h"

/* Registers the four functions as globals and in the table at the top (siolua). [-0, +0, e] */
void ltimer_open(lua_State *L);
/* Stops every timer of this VM (shutdown, reload). */
void ltimer_close_all(lvm_t *vm);

#endif
