"""Raw-socket tools for the hostile suite: a siolua process, HTTP over a plain socket, a WebSocket
client that can send any frame (masked or not, any opcode, bits or length), and Engine.IO /
Socket.IO on top of it. Nothing here follows redirects, retries or fixes input: it sends what it
is told. Every wait is bounded (socket timeouts), so a misbehaving server fails a case instead of
hanging the suite."""

import base64
import json
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time

HOST = "127.0.0.1"
# s: the default bound of every wait for something that must happen (an answer, a close, a frame).
# Only a failing case waits that long: it is set for a loaded 2-core machine running the ASan
# build, not as a measure of speed.
WAIT = 8.0
CHECKER_IP = "127.0.0.2"  # the health checker connects from its own address (per-IP limits)
SAN_RE = re.compile(r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|"
                    r"SUMMARY: (Address|UndefinedBehavior|Leak)Sanitizer|AddressSanitizer:DEADLYSIGNAL")


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


# ------------------------------------------------------------------------------------ the server

class Server:
    """One siolua process on a free port, its stderr collected line by line. ssl_context (an
    ssl.SSLContext): the server speaks TLS, and connect() below wraps every client socket in it."""

    def __init__(self, binary, app, args, logpath, rlimit_nofile=None, ssl_context=None):
        self.ssl_context = ssl_context
        self.lines = []
        self.lock = threading.Lock()
        self.logf = open(logpath, "w")
        pre = None
        if rlimit_nofile:
            def pre():
                import resource
                resource.setrlimit(resource.RLIMIT_NOFILE, (rlimit_nofile, rlimit_nofile))
        env = dict(os.environ)
        # leaks are checked at exit; abort_on_error off so a report is printed, not a core; a
        # small quarantine so that RSS measures live memory rather than ASan's pool of freed blocks
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:quarantine_size_mb=16")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        self.proc = subprocess.Popen([binary, app, "--port", "0", "--log-level", "debug"] + args,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=pre,
                                     env=env)
        self.pid = self.proc.pid
        self.port = None
        got = threading.Event()

        def reader():
            for raw in self.proc.stderr:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self.logf.write(line + "\n")
                self.logf.flush()
                with self.lock:
                    self.lines.append(line)
                m = re.search(r"listening on https?://[^:]+:(\d+)", line)
                if m and self.port is None:
                    self.port = int(m.group(1))
                    got.set()
            got.set()

        self.thread = threading.Thread(target=reader, daemon=True)
        self.thread.start()
        got.wait(15)
        if self.port is None:
            self.stop()
            raise RuntimeError("siolua did not start: " + "\n".join(self.lines[-20:]))

    def alive(self):
        return self.proc.poll() is None

    def nlines(self):
        with self.lock:
            return len(self.lines)

    def lines_since(self, n):
        with self.lock:
            return self.lines[n:]

    def sanitizer_reports(self, since=0):
        return [l for l in self.lines_since(since) if SAN_RE.search(l)]

    def socket_fds(self):
        """Sockets the server holds (listener and connections)."""
        n = 0
        try:
            for fd in os.listdir("/proc/%d/fd" % self.pid):
                try:
                    if os.readlink("/proc/%d/fd/%s" % (self.pid, fd)).startswith("socket:"):
                        n += 1
                except OSError:
                    pass
        except OSError:
            return -1
        return n

    def rss_kb(self):
        try:
            with open("/proc/%d/status" % self.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return -1

    def cpu_ticks(self):
        with open("/proc/%d/stat" % self.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime

    def stop(self, timeout=15):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.thread.join(5)
        self.logf.close()
        return self.proc.returncode


# ------------------------------------------------------------------------------------ TCP / HTTP

def connect(srv, src=None, timeout=WAIT, rcvbuf=None):
    """rcvbuf: a small receive buffer set before connecting, so that the window the server sees is
    small from the start (a client that does not read then really stops the server's output)."""
    s = socket.socket()
    s.settimeout(timeout)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if src:
        s.bind((src, 0))
    s.connect((HOST, srv.port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if getattr(srv, "ssl_context", None) is not None:
        s = srv.ssl_context.wrap_socket(s, server_hostname=HOST)
    return s


def reset(s):
    """Closes with RST instead of FIN."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def read_until_close(s, timeout=WAIT, limit=64 << 20):
    """Reads until EOF, reset or timeout. Returns (bytes, "eof" | "reset" | "timeout")."""
    data = b""
    end = time.monotonic() + timeout
    while len(data) < limit:
        left = end - time.monotonic()
        if left <= 0:
            return data, "timeout"
        s.settimeout(left)
        try:
            b = s.recv(65536)
        except socket.timeout:
            return data, "timeout"
        except (ConnectionResetError, BrokenPipeError):
            return data, "reset"
        if not b:
            return data, "eof"
        data += b
    return data, "limit"


def parse_responses(data):
    """Splits HTTP/1.1 responses (Content-Length framed). Returns [(status, headers, body)]."""
    out = []
    while data:
        head_end = data.find(b"\r\n\r\n")
        if head_end < 0:
            break
        head = data[:head_end].decode("latin-1").split("\r\n")
        parts = head[0].split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1
        hdrs = {}
        for h in head[1:]:
            k, _, v = h.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        n = int(hdrs.get("content-length", "0") or 0)
        body = data[head_end + 4:head_end + 4 + n]
        out.append((status, hdrs, body))
        data = data[head_end + 4 + n:]
    return out


def http(srv, raw, timeout=WAIT, src=None):
    """Sends raw bytes on a fresh connection; returns (responses, how the connection ended, raw)."""
    s = connect(srv, src)
    try:
        s.sendall(raw)
        data, how = read_until_close(s, timeout)
    finally:
        s.close()
    return parse_responses(data), how, data


def http_one(srv, raw, timeout=WAIT, src=None):
    """One request, whose response is read as soon as it is complete (keep-alive or not)."""
    s = connect(srv, src)
    try:
        s.sendall(raw)
        return read_response(s, timeout)
    finally:
        s.close()


def read_response(s, timeout=WAIT):
    data = b""
    end = time.monotonic() + timeout
    while True:
        r = parse_responses(data)
        if r:
            head_end = data.find(b"\r\n\r\n")
            n = int(r[0][1].get("content-length", "0") or 0)
            if len(data) >= head_end + 4 + n:
                return r[0]
        left = end - time.monotonic()
        if left <= 0:
            raise Fail("no complete response in %.1fs (got %r)" % (timeout, data[:200]))
        s.settimeout(left)
        try:
            b = s.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            b = b""
        if not b:
            raise Fail("connection closed before a complete response (got %r)" % data[:200])
        data += b


def get(path, extra=""):
    return ("GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path, extra)).encode()


def eio_error(resp):
    status, hdrs, body = resp
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


# ------------------------------------------------------------------------------------ WebSocket

OP_CONT, OP_TEXT, OP_BIN, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def frame(op, payload=b"", fin=True, mask=True, rsv=0, length=None, ext_len=None):
    """A client frame. length/ext_len force the encoded length (lies, non-minimal encodings)."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | op
    m = 0x80 if mask else 0
    if ext_len == 8 or (ext_len is None and n > 0xFFFF):
        hdr = struct.pack("!BBQ", b0, m | 127, n)
    elif ext_len == 2 or (ext_len is None and n > 125):
        hdr = struct.pack("!BBH", b0, m | 126, n)
    else:
        hdr = struct.pack("!BB", b0, m | n)
    if not mask:
        return hdr + payload
    key = os.urandom(4)
    body = bytes(c ^ key[i & 3] for i, c in enumerate(payload))
    return hdr + key + body


class WS:
    """A WebSocket client on a raw socket. recv_frame() returns (fin, opcode, payload) or None at
    EOF; every wait is bounded."""

    def __init__(self, srv, path="/socket.io/?EIO=4&transport=websocket", headers=None, src=None,
                 timeout=WAIT, expect=101, rcvbuf=None):
        self.s = connect(srv, src, timeout, rcvbuf)
        key = base64.b64encode(os.urandom(16)).decode()
        hdrs = {"Host": "x", "Upgrade": "websocket", "Connection": "Upgrade",
                "Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "13"}
        if headers:
            hdrs.update(headers)
        req = "GET %s HTTP/1.1\r\n" % path + "".join(
            "%s: %s\r\n" % (k, v) for k, v in hdrs.items() if v is not None) + "\r\n"
        self.s.sendall(req.encode())
        self.buf = b""
        end = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            self._fill(end)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        self.status = int(head.split(b" ")[1])
        self.head = head
        if expect is not None:
            check(self.status == expect, "handshake answered %d, expected %d: %r" % (self.status, expect, head[:200]))

    def _fill(self, end):
        left = end - time.monotonic()
        if left <= 0:
            raise socket.timeout("timed out")
        self.s.settimeout(left)
        b = self.s.recv(65536)
        if not b:
            raise EOFError("server closed the connection")
        self.buf += b

    def send(self, data):
        self.s.sendall(data)

    def send_frame(self, op, payload=b"", **kw):
        self.s.sendall(frame(op, payload, **kw))

    def text(self, t):
        self.send_frame(OP_TEXT, t)

    def recv_frame(self, timeout=WAIT):
        end = time.monotonic() + timeout
        try:
            while True:
                if len(self.buf) >= 2:
                    b0, b1 = self.buf[0], self.buf[1]
                    n = b1 & 0x7F
                    off = 2
                    if n == 126:
                        if len(self.buf) < 4:
                            self._fill(end)
                            continue
                        n = struct.unpack("!H", self.buf[2:4])[0]
                        off = 4
                    elif n == 127:
                        if len(self.buf) < 10:
                            self._fill(end)
                            continue
                        n = struct.unpack("!Q", self.buf[2:10])[0]
                        off = 10
                    check(not (b1 & 0x80), "the server sent a masked frame")
                    if len(self.buf) >= off + n:
                        payload = self.buf[off:off + n]
                        self.buf = self.buf[off + n:]
                        return bool(b0 & 0x80), b0 & 0x0F, payload
                self._fill(end)
        except (EOFError, ConnectionResetError):
            return None

    def recv_close(self, timeout=WAIT):
        """Reads frames until a close frame (returns its code, or None without one / at EOF)."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise Fail("no close frame in %.1fs" % timeout)
            try:
                f = self.recv_frame(left)
            except socket.timeout:
                raise Fail("no close frame in %.1fs" % timeout)
            if f is None:
                return None
            if f[1] == OP_CLOSE:
                return struct.unpack("!H", f[2][:2])[0] if len(f[2]) >= 2 else 1005

    def expect_eof(self, timeout=WAIT):
        """Waits for the server to close TCP (frames before it are skipped)."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise Fail("the server kept the connection open for %.1fs" % timeout)
            try:
                if self.recv_frame(left) is None:
                    return
            except socket.timeout:
                raise Fail("the server kept the connection open for %.1fs" % timeout)

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


# ------------------------------------------------------------------------------------ Engine.IO / Socket.IO

def eio_ws(srv, src=None, path="/socket.io/?EIO=4&transport=websocket", rcvbuf=None):
    """A WebSocket Engine.IO session: returns (ws, open packet)."""
    ws = WS(srv, path, src=src, rcvbuf=rcvbuf)
    f = ws.recv_frame()
    check(f is not None and f[1] == OP_TEXT and f[2][:1] == b"0", "no open packet: %r" % (f,))
    return ws, json.loads(f[2][1:])


def next_msg(ws, timeout=WAIT, pong=True):
    """The next text/binary message, answering Engine.IO pings ("2") on the way."""
    end = time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0:
            raise Fail("no message in %.1fs" % timeout)
        try:
            f = ws.recv_frame(left)
        except socket.timeout:
            raise Fail("no message in %.1fs" % timeout)
        if f is None:
            raise Fail("the server closed the connection")
        fin, op, p = f
        if op == OP_TEXT and p == b"2" and pong:
            ws.text("3")
            continue
        if op in (OP_TEXT, OP_BIN):
            return op, p
        if op == OP_CLOSE:
            raise Fail("the server closed the WebSocket (%r)" % p[:2])


def expect_msg(ws, pred, timeout=WAIT):
    end = time.monotonic() + timeout
    seen = []
    while True:
        left = end - time.monotonic()
        if left <= 0:
            raise Fail("expected message not seen in %.1fs; saw %r" % (timeout, seen[-5:]))
        op, p = next_msg(ws, left)
        t = p.decode("utf-8", "replace") if op == OP_TEXT else p
        seen.append(t)
        if pred(t):
            return t


def sio_ws(srv, src=None, nsp="/", rcvbuf=None):
    """A Socket.IO client over WebSocket connected to nsp; returns ws."""
    ws, _ = eio_ws(srv, src, rcvbuf=rcvbuf)
    ws.text("40" if nsp == "/" else "40%s," % nsp)
    prefix = "40{" if nsp == "/" else "40%s,{" % nsp
    expect_msg(ws, lambda t: isinstance(t, str) and t.startswith(prefix))
    return ws


def sio_call(ws, ack_id, event, *args, timeout=WAIT):
    """Emits event with an ack id and returns the ack's arguments."""
    ws.text("42%d%s" % (ack_id, json.dumps([event] + list(args))))
    want = "43%d" % ack_id
    t = expect_msg(ws, lambda t: isinstance(t, str) and t.startswith(want + "["), timeout)
    return json.loads(t[len(want):])


def poll_handshake(srv, src=None):
    r = http_one(srv, get("/socket.io/?EIO=4&transport=polling"), src=src)
    check(r[0] == 200 and r[2][:1] == b"0", "polling handshake: %r" % (r,))
    return json.loads(r[2][1:])["sid"]


def server_rx_queue(srv, client_sock):
    """Bytes the kernel holds for the server, unread, on the connection of client_sock (from
    /proc/net/tcp): a server that stopped reading (backpressure) lets this grow."""
    cport = client_sock.getsockname()[1]
    want_local = "%04X" % srv.port
    want_remote = "%04X" % cport
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            local, remote = parts[1], parts[2]
            if local.endswith(":" + want_local) and remote.endswith(":" + want_remote):
                return int(parts[4].split(":")[1], 16)
    return -1


def post_raw(sid, head_extra, body):
    """A polling POST with the caller's framing headers (Content-Length, Transfer-Encoding...)."""
    if isinstance(body, str):
        body = body.encode()
    return (("POST /socket.io/?EIO=4&transport=polling&sid=%s HTTP/1.1\r\nHost: x\r\n"
             "Content-Type: text/plain;charset=UTF-8\r\n%s\r\n") % (sid, head_extra)).encode() + body


def post(sid, body, extra=""):
    if isinstance(body, str):
        body = body.encode()
    return (("POST /socket.io/?EIO=4&transport=polling&sid=%s HTTP/1.1\r\nHost: x\r\n"
             "Content-Type: text/plain;charset=UTF-8\r\nContent-Length: %d\r\n%s\r\n") %
            (sid, len(body), extra)).encode() + body
