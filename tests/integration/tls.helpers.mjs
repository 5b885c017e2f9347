// A test PKI made with the openssl CLI, for the HTTPS/WSS tests (tls.test.mjs, browser/chat_tls):
// one CA, and leaf certificates for 127.0.0.1 and localhost that it signs. The server is started
// on cur.pem / cur.key; rotate() replaces them (rename, as a deployment would) before a SIGHUP.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, renameSync, copyFileSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { X509Certificate } from "node:crypto";

const openssl = (...args) => execFileSync("openssl", args, { stdio: ["ignore", "pipe", "pipe"] });

/**
 * Makes the CA and `leaves` (names) in a fresh temporary folder. Leaf i has serial 0x1000 + i + 1.
 * Returns { dir, ca (path), caPem (Buffer), cert, key (the served files), leaf(name) ->
 * { cert, key, serial }, rotate(name), cleanup() }.
 */
export function makePki(leaves = ["one", "two"]) {
  const dir = mkdtempSync(path.join(tmpdir(), "siolua-tls-"));
  const p = (f) => path.join(dir, f);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  openssl("req", "-x509", ...ec, "-keyout", p("ca.key"), "-out", p("ca.pem"), "-days", "2",
    "-subj", "/CN=siolua test CA", "-addext", "basicConstraints=critical,CA:TRUE",
    "-addext", "keyUsage=critical,keyCertSign,cRLSign");
  writeFileSync(p("leaf.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n" +
    "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n");
  const made = {};
  leaves.forEach((name, i) => {
    const serial = (0x1001 + i).toString(16).toUpperCase();
    openssl("req", ...ec, "-keyout", p(`${name}.key`), "-out", p(`${name}.csr`), "-subj", `/CN=siolua test ${name}`);
    openssl("x509", "-req", "-in", p(`${name}.csr`), "-CA", p("ca.pem"), "-CAkey", p("ca.key"),
      "-set_serial", "0x" + serial, "-days", "2", "-extfile", p("leaf.ext"), "-out", p(`${name}.pem`));
    made[name] = { cert: p(`${name}.pem`), key: p(`${name}.key`), serial };
  });
  const pki = {
    dir,
    ca: p("ca.pem"),
    caPem: readFileSync(p("ca.pem")),
    cert: p("cur.pem"),
    key: p("cur.key"),
    leaf: (name) => made[name],
    /** Serves `name` from now on (the files are replaced whole, as a deployment would). */
    rotate(name) {
      copyFileSync(made[name].cert, p("cur.pem.tmp"));
      copyFileSync(made[name].key, p("cur.key.tmp"));
      renameSync(p("cur.pem.tmp"), p("cur.pem"));
      renameSync(p("cur.key.tmp"), p("cur.key"));
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
  pki.rotate(leaves[0]);
  return pki;
}

/** The serial number (hex, upper case) of a PEM or DER certificate as Node reports it. */
export function serialOf(raw) {
  return new X509Certificate(raw).serialNumber.replace(/^0+/, "");
}
