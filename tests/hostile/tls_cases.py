"""Hostile TLS input, run by hostile.py on a second server of its own that speaks HTTPS/WSS
(--tls-cert/--tls-key, a CA made here with the openssl CLI, the suite's short timeouts). Raw bytes
go to the TLS port (garbage and mutated ClientHellos, plain HTTP, stalled handshakes); pyOpenSSL
over a raw socket drives sessions that misbehave after the handshake (records over the maximum,
forged records, renegotiation, close_notify); the WebSocket helpers of lib.py run over TLS for
the limits. After each case the TLS server gets the same health check as the plain one (alive,
sockets back to the listener, a client over WSS completes connect -> emit -> ack, the app's
counts back to 1, no sanitizer report); the last case stops it and checks a clean exit."""

import atexit
import os
import random
import shutil
import socket
import ssl
import subprocess
import tempfile
import time

from OpenSSL import SSL

from lib import (CHECKER_IP, HOST, OP_TEXT, WAIT, Fail, Server, check, connect, http, poll_handshake, post_raw,
                 read_until_close, sio_call, sio_ws)

STATE = {}  # the TLS server and its files, made by the first case that needs them


def make_pki(dirname):
    def openssl(*args):
        subprocess.run(["openssl"] + list(args), check=True, capture_output=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    p = lambda f: os.path.join(dirname, f)  # noqa: E731
    openssl("req", "-x509", *ec, "-keyout", p("ca.key"), "-out", p("ca.pem"), "-days", "2",
            "-subj", "/CN=siolua hostile CA", "-addext", "basicConstraints=critical,CA:TRUE")
    with open(p("leaf.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    openssl("req", *ec, "-keyout", p("srv.key"), "-out", p("srv.csr"), "-subj", "/CN=127.0.0.1")
    openssl("x509", "-req", "-in", p("srv.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"), "-set_serial", "7",
            "-days", "2", "-extfile", p("leaf.ext"), "-out", p("srv.pem"))
    return p("ca.pem"), p("srv.pem"), p("srv.key")


def cleanup():
    """At exit, when the last case did not run (-k): the server stopped, the files removed."""
    if "srv" in STATE and STATE["srv"].alive():
        STATE["srv"].stop()
    shutil.rmtree(STATE.get("dir", ""), ignore_errors=True)


def tls_server(binary, app, args, logdir):
    if "srv" not in STATE:
        d = tempfile.mkdtemp(prefix="siolua-hostile-tls-")
        ca, cert, key = make_pki(d)
        ctx = ssl.create_default_context(cafile=ca)
        STATE.update(dir=d, ca=ca, ctx=ctx, cert=cert, key=key)
        STATE["srv"] = Server(binary, app, args + ["--tls-cert", cert, "--tls-key", key],
                              os.path.join(logdir, "server-tls.log"), ssl_context=ctx)
        atexit.register(cleanup)
    return STATE["srv"]


def raw(srv, data, timeout=WAIT):
    """data on a plain TCP connection to the TLS port; returns (what came back, how it ended)."""
    s = socket.create_connection((HOST, srv.port), timeout)
    try:
        s.sendall(data)
        return read_until_close(s, timeout)
    finally:
        s.close()


def clean_close(data, how, what):
    """Closed (FIN, or a reset when our bytes were still unread), with nothing written back but at
    most a TLS alert record."""
    check(how in ("eof", "reset"), "%s: the connection was not closed (%s)" % (what, how))
    check(data == b"" or (data[0] == 0x15 and len(data) <= 7), "%s: the server answered %r" % (what, data[:40]))


def client_hello(version=None, ciphers=None):
    """The bytes of a real ClientHello (pyOpenSSL in memory): for mutating, or of an old version
    (min and max) or with only the given ciphers (their security level is lifted to let the client
    offer them)."""
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    if version:
        ctx.set_min_proto_version(version)
        ctx.set_max_proto_version(version)
        ctx.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    if ciphers:
        ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
        ctx.set_cipher_list(ciphers + b":@SECLEVEL=0")
    c = SSL.Connection(ctx, None)
    c.set_connect_state()
    try:
        c.do_handshake()
    except SSL.WantReadError:
        pass
    return c.bio_read(65536)


class Session:
    """A pyOpenSSL client over a raw socket: the test can write raw bytes between records."""

    def __init__(self, srv, version=None, timeout=WAIT):
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        if version:
            ctx.set_min_proto_version(version)
            ctx.set_max_proto_version(version)
        ctx.load_verify_locations(STATE["ca"])
        ctx.set_verify(SSL.VERIFY_PEER, lambda *a: a[-1])
        self.sock = socket.create_connection((HOST, srv.port), timeout)
        self.c = SSL.Connection(ctx, None)
        self.c.set_connect_state()
        self.pump(lambda: self.c.do_handshake(), timeout)

    def flush(self):
        while True:
            try:
                out = self.c.bio_read(65536)
            except SSL.WantReadError:
                return
            self.sock.sendall(out)

    def pump(self, step, timeout=WAIT):
        """Runs step until it stops asking for input; returns its result."""
        end = time.monotonic() + timeout
        while True:
            try:
                r = step()
                self.flush()
                return r
            except SSL.WantReadError:
                self.flush()
                self.sock.settimeout(max(0.01, end - time.monotonic()))
                got = self.sock.recv(65536)
                if not got:
                    raise EOFError("the server closed the connection")
                self.c.bio_write(got)

    def send(self, data):
        self.c.sendall(data)
        self.flush()

    def recv(self, timeout=WAIT):
        return self.pump(lambda: self.c.recv(65536), timeout)

    def close(self):
        self.sock.close()


def expect_closed(sess, what, timeout=WAIT):
    data, how = read_until_close(sess.sock, timeout)
    check(how in ("eof", "reset"), "%s: still open (%s)" % (what, how))
    sess.close()


def register(case, binary, app, args, logdir, helpers):
    """case: hostile.py's decorator; args: its server's flags; helpers: hostile.py's health(srv,
    base_fds) (run here on the TLS server), slow_reader(srv),
    stop_clean(srv), max_buffer (its --max-http-buffer-size)."""
    health, max_buffer = helpers["health"], helpers["max_buffer"]
    slow_reader, stop_clean = helpers["slow_reader"], helpers["stop_clean"]

    def tls_case(name):
        def deco(fn):
            def run(_plain):
                srv = tls_server(binary, app, args, logdir)
                n0 = srv.nlines()
                try:
                    fn(srv)
                finally:
                    err = health(srv, 1)
                    san = srv.sanitizer_reports(n0)
                    if err or san:
                        raise Fail("TLS server: %s" % (err or "sanitizer: " + san[0]))
            return case("tls", name)(run)
        return deco

    @tls_case("garbage instead of a ClientHello: closed, nothing but an alert sent back")
    def _(srv):
        rnd = random.Random(16)
        for i in range(20):
            junk = bytes(rnd.randrange(256) for _ in range(rnd.choice((1, 5, 40, 600, 5000))))
            clean_close(*raw(srv, junk), what="junk #%d" % i)

    @tls_case("36 mutated ClientHellos (bytes flipped, cut, lengths lied): each closed cleanly")
    def _(srv):
        hello = client_hello()
        rnd = random.Random(1)
        for i in range(36):
            b = bytearray(hello)
            kind = i % 3
            if kind == 0:
                for _ in range(rnd.randrange(1, 8)):
                    b[rnd.randrange(len(b))] = rnd.randrange(256)
            elif kind == 1:
                b = b[:rnd.randrange(5, len(b))] + bytes(rnd.randrange(256) for _ in range(3))
            else:
                at = rnd.choice((3, 6, 43))  # the record, handshake and session-id lengths
                b[at] = 0xFF
            data, how = raw(srv, bytes(b), timeout=2.0)
            if how == "timeout":  # a cut that still looks incomplete: the deadline closes it
                continue
            check(how in ("eof", "reset"), "hello #%d: %s" % (i, how))

    @tls_case("plain HTTP on the TLS port: closed with nothing written back, and logged")
    def _(srv):
        n0 = srv.nlines()
        clean_close(*raw(srv, b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n"),
                    what="plain HTTP")
        data, how = raw(srv, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        check(data == b"", "answered %r" % data[:40])
        # the first line of the pair may have been folded into the rate limit's count: one of the
        # two, or a line that counts them, is in the log
        time.sleep(1.1)  # past the rate limit's second
        clean_close(*raw(srv, b"POST / HTTP/1.1\r\nHost: x\r\n\r\n"), what="plain HTTP")
        end = time.monotonic() + WAIT
        while time.monotonic() < end and not any("handshake failed: plain HTTP request" in l
                                                 for l in srv.lines_since(n0)):
            time.sleep(0.05)
        check(any("handshake failed: plain HTTP request" in l for l in srv.lines_since(n0)), "not logged")

    @tls_case("a burst of 200 bad handshakes is logged at most once a second, with a count")
    def _(srv):
        n0 = srv.nlines()
        t0 = time.monotonic()
        for _ in range(200):
            raw(srv, b"\x16\x03\x01\x00\x05hello")
        dt = time.monotonic() - t0
        time.sleep(1.1)
        raw(srv, b"\x16\x03\x01\x00\x05hello")  # this one's line counts those left out
        lines = [l for l in srv.lines_since(n0) if "handshake failed" in l]
        check(1 <= len(lines) <= dt + 3, "%d lines for 201 failures in %.1f s" % (len(lines), dt))
        check(any("more since the last such line" in l for l in lines), "no count: %r" % lines[-2:])

    @tls_case("half a ClientHello, then silence: closed at the header timeout")
    def _(srv):
        hello = client_hello()
        t0 = time.monotonic()
        data, how = raw(srv, hello[:len(hello) // 2], timeout=WAIT)
        dt = time.monotonic() - t0
        clean_close(data, how, "stalled handshake")
        check(0.5 <= dt <= 6.0, "closed after %.2f s (header timeout 0.8 s)" % dt)

    @tls_case("60 stalled handshakes are all closed by the deadline")
    def _(srv):
        hello = client_hello()
        socks = []
        for _ in range(60):
            s = socket.create_connection((HOST, srv.port), 3)
            s.sendall(hello[:20])
            socks.append(s)
        for s in socks:
            data, how = read_until_close(s)
            clean_close(data, how, "stalled handshake")
            s.close()

    @tls_case("a completed handshake and no request: 408 over TLS at the header timeout")
    def _(srv):
        s = connect(srv)
        data, how = read_until_close(s)
        s.close()
        check(data.startswith(b"HTTP/1.1 408 "), "got %r" % data[:40])
        check(how in ("eof", "reset"), "not closed: %s" % how)

    @tls_case("TLS 1.0 and 1.1 clients and a client with no common cipher are refused")
    def _(srv):
        for v, wire in ((SSL.TLS1_VERSION, b"\x03\x01"), (SSL.TLS1_1_VERSION, b"\x03\x02")):
            hello = client_hello(v)
            check(hello[9:11] == wire, "not a hello of that version: %r" % hello[:12])
            clean_close(*raw(srv, hello), what="old version")
        clean_close(*raw(srv, client_hello(ciphers=b"NULL-SHA256")), what="no shared cipher")

    @tls_case("after the handshake: a record that declares 40000 bytes closes the connection")
    def _(srv):
        s = Session(srv)
        s.sock.sendall(b"\x17\x03\x03\x9c\x40" + b"x" * 40000)
        expect_closed(s, "oversized record")

    @tls_case("after the handshake: a forged record (bad tag) closes the connection")
    def _(srv):
        s = Session(srv)
        s.sock.sendall(b"\x17\x03\x03\x00\x40" + os.urandom(64))
        expect_closed(s, "forged record")

    @tls_case("a TLS 1.2 client that renegotiates is refused; the server goes on")
    def _(srv):
        s = Session(srv, SSL.TLS1_2_VERSION)
        s.send(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n")
        check(s.recv().startswith(b"HTTP/1.1 200 "), "no answer before the renegotiation")
        s.c.renegotiate()
        try:
            s.pump(lambda: s.c.do_handshake())
            raise Fail("the renegotiation completed")
        except (SSL.Error, EOFError, socket.timeout, OSError):
            pass  # no_renegotiation: OpenSSL's client gives up on the session
        s.close()

    @tls_case("close_notify from the client: the server closes too")
    def _(srv):
        s = Session(srv)
        try:
            s.c.shutdown()
        except SSL.WantReadError:
            pass
        s.flush()
        expect_closed(s, "after close_notify")

    @tls_case("the limits hold over TLS: a polling POST over maxHttpBufferSize gets 413, a WSS message 1009")
    def _(srv):
        sid = poll_handshake(srv)
        resps, how, data = http(srv, post_raw(sid, "Content-Length: %d\r\n" % (max_buffer + 1), ""))
        check(resps and resps[0][0] == 413 and how in ("eof", "reset"), "got %r (%s)" % (data[:40], how))
        ws = sio_ws(srv)
        ws.send_frame(OP_TEXT, "42[", length=max_buffer + 10)  # the header says it all
        code = ws.recv_close(3.0)
        ws.close()
        check(code == 1009, "close code %r" % code)

    @tls_case("WSS echo of 90 KB (six records each way), from a client at another address")
    def _(srv):
        ws = sio_ws(srv, CHECKER_IP)
        big = "ok" * 45000
        check(sio_call(ws, 1, "echo", big) == [big], "echo differs")
        ws.close()

    @tls_case("a WSS client that asks for echoes and never reads stops being read: backpressure through TLS")
    def _(srv):
        # On a TLS server of its own with the default send timeout and slow heartbeats, as the plain
        # flood cases' quiet_server: with the suite's 1 s send timeout and 1.4 s heartbeat, a loaded
        # machine can see the server close the unread connection before its backlog settles.
        quiet = Server(binary, app, ["--no-watch", "--ping-interval", "10000", "--ping-timeout", "10000",
                                     "--tls-cert", STATE["cert"], "--tls-key", STATE["key"]],
                       os.path.join(logdir, "server-tls-quiet.log"), ssl_context=STATE["ctx"])
        try:
            slow_reader(quiet)
        finally:
            stop_clean(quiet)

    @case("tls", "the TLS server exits 0 on SIGTERM with no sanitizer (leak) report")
    def _(_plain):
        srv = tls_server(binary, app, args, logdir)
        rc = srv.stop()
        san = srv.sanitizer_reports(0)
        del STATE["srv"]
        shutil.rmtree(STATE["dir"], ignore_errors=True)
        check(rc == 0 and not san, "exit status %s; %s" % (rc, san[:2]))
