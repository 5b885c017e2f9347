// Helpers of the operations tests (ops_*.test.mjs): scrape /metrics and parse it with Debian's
// python3-prometheus-client (metrics_parse.py), GET a probe.
import { execFileSync } from "node:child_process";
import path from "node:path";
import assert from "node:assert/strict";
import { ROOT } from "./helpers.mjs";

/** GET url: { status, text, type }. */
export async function get(url) {
  const res = await fetch(url);
  return { status: res.status, text: await res.text(), type: res.headers.get("content-type") };
}

/**
 * Scrapes url (a /metrics URL) and parses it with the real parser. Resolves to
 * { families, value(name, labels) }: families as metrics_parse.py prints them, value() the sample
 * (undefined when absent).
 */
export async function scrape(url) {
  const { status, text, type } = await get(url);
  assert.equal(status, 200, text);
  assert.equal(type, "text/plain; version=0.0.4; charset=utf-8");
  const families = JSON.parse(
    execFileSync("/usr/bin/python3", [path.join(ROOT, "tests/integration/metrics_parse.py")], { input: text }).toString(),
  );
  const samples = new Map();
  const key = (name, labels = {}) =>
    name + JSON.stringify(Object.keys(labels).sort().map((k) => [k, labels[k]]));
  for (const f of Object.values(families)) for (const [name, labels, v] of f.samples) samples.set(key(name, labels), v);
  return { families, text, value: (name, labels) => samples.get(key(name, labels)) };
}
