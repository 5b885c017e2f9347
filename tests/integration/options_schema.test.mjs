// The README's options stay true to the options schema (src/options.c): every flag and io.options
// key of `siolua --options-json` is in the README's "Options" table (or, for transport limits, the
// "Limits and security" table) and every flag and key those tables name exists, with the schema's
// defaults. siolua only (the reference has no such command line).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { ROOT, REF } from "./helpers.mjs";

const BIN = path.resolve(ROOT, process.env.SIOLUA_BIN || "./siolua");

/** The rows of the first Markdown table after the heading `title`: arrays of cell texts. */
function table(md, title) {
  const lines = md.slice(md.indexOf(`\n${title}\n`)).split("\n");
  const start = lines.findIndex((l) => l.startsWith("| "));
  const rows = [];
  for (let i = start + 2; i < lines.length && lines[i].startsWith("|"); i++)
    rows.push(lines[i].slice(1, -1).split("|").map((c) => c.trim()));
  return rows;
}

const flagsIn = (cell) => [...cell.matchAll(/`--([a-z0-9-]+)/g)].map((m) => m[1]);
const keyIn = (cell) => (cell.match(/^`([A-Za-z][A-Za-z0-9]*)(`| =)/) || [])[1];

test("the README's options and limits tables name the options of the schema, with its defaults", { skip: REF && "siolua's command line" }, () => {
  const schema = JSON.parse(execFileSync(BIN, ["--options-json"], { encoding: "utf8" }));
  const md = readFileSync(path.join(ROOT, "README.md"), "utf8");
  const options = table(md, "### Options");
  const limits = table(md, "## Limits and security");
  assert.ok(options.length > 10 && limits.length > 10, "the tables were found");

  const readmeFlags = new Map(); // flag -> the default cells of the rows that name it, options table first
  for (const [flag, , def] of options) for (const f of flagsIn(flag)) readmeFlags.set(f, [...(readmeFlags.get(f) || []), def]);
  for (const [, def, flag] of limits) for (const f of flagsIn(flag)) readmeFlags.set(f, [...(readmeFlags.get(f) || []), def]);
  const readmeKeys = new Set(options.map((r) => keyIn(r[1])).filter(Boolean));

  const flags = new Set(schema.filter((r) => r.flag).map((r) => r.flag));
  const keys = new Set(schema.filter((r) => r.key).map((r) => r.key));
  assert.deepEqual([...readmeFlags.keys()].filter((f) => !flags.has(f)), [], "README flags the schema does not have");
  assert.deepEqual([...flags].filter((f) => !readmeFlags.has(f)), [], "flags the README does not list");
  assert.deepEqual([...readmeKeys].filter((k) => !keys.has(k)), [], "README io.options keys the schema does not have");
  assert.deepEqual([...keys].filter((k) => !readmeKeys.has(k)), [], "io.options keys the README does not list");

  // a flag and its key are on one row of the options table
  for (const r of schema.filter((r) => r.flag && r.key)) {
    const row = options.find((o) => flagsIn(o[0]).includes(r.flag));
    assert.ok(row, `--${r.flag} is in the options table`);
    assert.equal(keyIn(row[1]), r.key, `--${r.flag} is io.options ${r.key}`);
  }
  // defaults: numbers and strings (not booleans, nor those that depend on the machine)
  for (const r of schema.filter((r) => r.flag && !r.computed && r.default !== undefined && r.type !== "boolean")) {
    const cell = readmeFlags.get(r.flag)[0];
    const want = r.default === 0 ? ["none", "0"] : [String(r.default)];
    assert.ok(want.some((w) => cell.includes(w)), `the README's default of --${r.flag} is ${r.default}: ${cell}`);
  }
});
