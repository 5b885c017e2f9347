// What an app can reach is the documented API (issue 13): `siolua`'s fields are the ones the
// README names, `io` answers every `io.X` the README names, none of the former internals
// (siolua._core, siolua._hooks, siolua._fire, ...) is reachable from `siolua` or `io`, and the
// globals are Lua's own plus siolua, io and the timers. siolua only (the reference has no
// `siolua`): the app prints what it sees and ends with io.close() at its top level (exit 0).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ROOT, REF } from "./helpers.mjs";

const BIN = path.resolve(ROOT, process.env.SIOLUA_BIN || "./siolua");

// The internals the prelude shared through `siolua` before issue 13, and the names C used.
const FORMER = ["_bind", "_core", "_fire", "_hooks", "_is_parent", "_jsonable", "_new_op", "_nsp_methods",
  "_nsp_props", "_nsp_state", "_of_dynamic", "_op_methods", "_op_props", "_reserved", "_socket_methods",
  "_socket_props", "_targets", "cluster"];
const LUA_GLOBALS = ["_G", "_VERSION", "assert", "collectgarbage", "coroutine", "debug", "dofile", "error",
  "getmetatable", "io", "ipairs", "load", "loadfile", "math", "next", "os", "package", "pairs", "pcall", "print",
  "rawequal", "rawget", "rawlen", "rawset", "require", "select", "setmetatable", "string", "table", "tonumber",
  "tostring", "type", "utf8", "warn", "xpcall"];

test("siolua's fields, io's members and the globals are the README's API and nothing else", { skip: REF && "siolua's own API" }, () => {
  const md = readFileSync(path.join(ROOT, "README.md"), "utf8");
  const sioluaNames = new Set([...md.matchAll(/siolua\.([A-Za-z_]+)/g)].map((m) => m[1]).filter((n) => n !== "x")); // siolua.x: "any client" in the limits table
  const timers = md.slice(md.indexOf("#### Timers"), md.indexOf("#### The Engine.IO layer"));
  const timerNames = new Set([...timers.matchAll(/\b((?:set|clear)(?:Timeout|Interval))\(/g)].map((m) => m[1]));
  assert.ok(timers.includes("They are also `siolua.setTimeout` and so on"), "the README says the timers are siolua's too");
  for (const t of timerNames) sioluaNames.add(t);
  const ioNames = [...new Set([...md.matchAll(/`io\.([A-Za-z_]+)/g)].map((m) => m[1]))].sort();
  assert.ok(ioNames.length > 15 && sioluaNames.size > 8, "the README's names were found");

  const dir = mkdtempSync(path.join(os.tmpdir(), "siolua-public-"));
  const app = path.join(dir, "app.lua");
  const q = (list) => "{" + list.map((n) => JSON.stringify(n)).join(", ") + "}";
  writeFileSync(app, `
local function keys(t) local r = {} for k in pairs(t) do r[#r + 1] = tostring(k) end table.sort(r) return r end
local function line(tag, list) print(tag .. " " .. table.concat(list, " ")) end
line("SIOLUA", keys(siolua))
line("GLOBALS", keys(_G))
local missing, former = {}, {}
for _, n in ipairs(${q(ioNames)}) do if io[n] == nil then missing[#missing + 1] = n end end
for _, n in ipairs(${q(FORMER)}) do
  if io[n] ~= nil then former[#former + 1] = "io." .. n end
  if rawget(siolua, n) ~= nil or siolua[n] ~= nil then former[#former + 1] = "siolua." .. n end
end
line("IO_MISSING", missing)
line("FORMER", former)
io.close()
`);
  const r = spawnSync(BIN, [app, "--port", "0", "--no-watch"], { encoding: "utf8", timeout: 30000 });
  assert.equal(r.status, 0, `siolua exits 0 after io.close(): ${r.stderr}`);
  const out = r.stdout + r.stderr;
  const field = (tag) => {
    const m = out.match(new RegExp(`^(?:.*\\] )?${tag} ?(.*)$`, "m"));
    assert.ok(m, `the app printed ${tag}: ${out}`);
    return m[1].split(" ").filter(Boolean);
  };
  assert.deepEqual(field("SIOLUA"), [...sioluaNames].sort(), "siolua's fields are the README's siolua.X names");
  assert.deepEqual(field("IO_MISSING"), [], "every io.X of the README is there");
  assert.deepEqual(field("FORMER"), [], "no former internal is reachable");
  const extra = field("GLOBALS").filter((g) => !LUA_GLOBALS.includes(g));
  assert.deepEqual(extra.sort(), ["siolua", ...timerNames].sort(), "the globals are Lua's, siolua and the timers");
});
