"""Hostile input for the wire options of issue 15 (hostile.py registers these cases).

- Engine.IO v3 (Socket.IO v2 clients): the main server runs with --allow-eio3, so every other case
  of the suite also shows v4 clients unchanged by it. Malformed v3 polling payloads (text and
  binary), too many packets, v3 WebSocket messages, the heartbeat's direction.
- The msgpack parser: a second server with --parser msgpack gets malformed packets (invalid
  msgpack, the wrong shapes, bombs that declare billions of elements, deep nesting, text frames);
  after each case it must be alive, back to its listener alone, and serve a msgpack client's
  CONNECT -> EVENT -> ACK, with no sanitizer report; it stops cleanly at the end."""

import json
import os
import struct
import time

from lib import *  # noqa: F401,F403
from lib import WAIT, Fail, Server, check

# ---------------------------------------------------------------- msgpack bytes, by hand


def mp_str(s):
    b = s.encode() if isinstance(s, str) else s
    if len(b) < 32:
        return bytes([0xa0 | len(b)]) + b
    if len(b) < 256:
        return b"\xd9" + bytes([len(b)]) + b
    return b"\xda" + struct.pack(">H", len(b)) + b


def mp_int(n):
    if 0 <= n < 128:
        return bytes([n])
    if n < 0 and n >= -32:
        return struct.pack(">b", n)
    return b"\xd3" + struct.pack(">q", n) if n < 0 else b"\xcf" + struct.pack(">Q", n)


def mp_arr(items):
    return bytes([0x90 | len(items)]) + b"".join(items)


def mp_map(pairs):
    return bytes([0x80 | len(pairs)]) + b"".join(mp_str(k) + v for k, v in pairs)


def mp_packet(type_, nsp="/", data=None, id_=None):
    pairs = [("type", mp_int(type_)), ("nsp", mp_str(nsp))]
    if data is not None:
        pairs.append(("data", data))
    if id_ is not None:
        pairs.append(("id", mp_int(id_)))
    return mp_map(pairs)


def mp_event(event, *args, id_=None):
    return mp_packet(2, data=mp_arr([mp_str(event)] + [mp_str(a) for a in args]), id_=id_)


BAD_MSGPACK = [
    ("an empty binary message", b""),
    ("a byte msgpack never uses (0xc1)", b"\xc1"),
    ("an array, not a map", mp_arr([mp_int(2)])),
    ("no type", mp_map([("nsp", mp_str("/")), ("data", mp_arr([mp_str("echo")]))])),
    ("type 5 (the msgpack parser has no binary types)", mp_packet(5, data=mp_arr([mp_str("echo")]))),
    ("type as a string", mp_map([("type", mp_str("2")), ("nsp", mp_str("/")), ("data", mp_arr([mp_str("x")]))])),
    ("a negative type", mp_packet(-1, data=mp_arr([mp_str("x")]))),
    ("nsp as an integer", mp_map([("type", mp_int(2)), ("nsp", mp_int(1)), ("data", mp_arr([mp_str("x")]))])),
    ("nsp of 300 bytes", mp_packet(2, nsp="/" + "a" * 299, data=mp_arr([mp_str("x")]))),
    ("an EVENT whose data is a map", mp_packet(2, data=mp_map([("a", mp_int(1))]))),
    ("an EVENT without data", mp_packet(2)),
    ("an EVENT without an event name", mp_packet(2, data=mp_arr([]))),
    ("an EVENT named connect (reserved)", mp_event("connect")),
    ("an ack id of -1", mp_event("echo", "x", id_=-1)),
    ("an ack id of 2^53", mp_event("echo", "x", id_=2 ** 53)),
    ("a DISCONNECT with data", mp_packet(1, data=mp_arr([]))),
    ("trailing bytes", mp_event("echo") + b"\x00"),
    ("a truncated packet", mp_event("echo", "abcdef")[:-3]),
    ("an array declaring 2^32 - 1 elements", b"\xdd\xff\xff\xff\xff"),
    ("a map declaring 2^32 - 1 entries", b"\xdf\xff\xff\xff\xff"),
    ("a string declaring 4 GB", b"\xdb\xff\xff\xff\xff" + b"x" * 16),
    ("data declaring 2^32 - 1 elements", mp_map([("type", mp_int(2)), ("nsp", mp_str("/")),
                                                ("data", b"\xdd\xff\xff\xff\xff")])),
    ("50000 nested arrays", mp_map([("type", mp_int(2)), ("nsp", mp_str("/")),
                                    ("data", b"\x92\xa4echo" + b"\x91" * 50000 + b"\xc0")])),
]


def register(case, binary, app, args, logdir, helpers):
    """case: hostile.py's decorator; args: its main server's flags (with --allow-eio3); helpers:
    hostile.py's http_one, get, wait_for, closes_or_answers, and its permessage-deflate
    deflated, expect_bounded_close and PMD."""
    http_one, get, wait_for = helpers["http_one"], helpers["get"], helpers["wait_for"]
    closes_or_answers = helpers["closes_or_answers"]
    deflated, expect_bounded_close, PMD = helpers["deflated"], helpers["expect_bounded_close"], helpers["PMD"]
    state = {}

    # ------------------------------------------------------------ msgpack: a server of its own

    def mp_server():
        if "srv" not in state:
            state["srv"] = Server(binary, app, args + ["--parser", "msgpack"], os.path.join(logdir, "msgpack.log"))
        return state["srv"]

    def mp_client(srv):
        ws, _ = eio_ws(srv)
        ws.send(frame(OP_BIN, mp_packet(0)))
        expect_msg(ws, lambda t: isinstance(t, bytes) and t.startswith(b"\x83\xa4type\x00"))
        return ws

    def mp_call(ws, ack_id, text):
        ws.send(frame(OP_BIN, mp_event("echo", text, id_=ack_id)))
        want = mp_str("id") + mp_int(ack_id) + mp_str("type") + mp_int(3) + mp_str("data") + mp_arr([mp_str(text)])
        return expect_msg(ws, lambda t: isinstance(t, bytes) and want in t)

    def mp_health(srv):
        if not srv.alive():
            return "the msgpack server died (exit status %s)" % srv.proc.returncode
        if not wait_for(lambda: srv.socket_fds() <= 1, 8, 0.05):
            return "msgpack server sockets %d, baseline 1" % srv.socket_fds()
        try:
            ws = mp_client(srv)
            mp_call(ws, 1, "health")
            ws.close()
        except (Fail, OSError, EOFError, ValueError) as e:
            return "msgpack health check: %s" % e
        return None

    def mp_case(name):
        def deco(fn):
            def run(_main):
                srv = mp_server()
                n0 = srv.nlines()
                try:
                    fn(srv)
                finally:
                    err = mp_health(srv)
                    san = srv.sanitizer_reports(n0)
                    if err or san:
                        raise Fail(err or "sanitizer: " + san[0])
            return case("msgpack", name)(run)
        return deco

    @mp_case("%d malformed packets, each on its own connection after CONNECT: the client is closed" %
             len(BAD_MSGPACK))
    def _(srv):
        for what, pkt in BAD_MSGPACK:
            ws = mp_client(srv)
            ws.send(frame(OP_BIN, pkt))
            try:
                f = ws.recv_frame(3)
                while f is not None and f[1] != OP_CLOSE:
                    f = ws.recv_frame(3)
            except OSError:
                raise Fail("%s: not closed within 3 s" % what)
            ws.close()

    @mp_case("the same malformed packets before any CONNECT, all on one connection: closed at the first")
    def _(srv):
        ws, _ = eio_ws(srv)
        ws.send(b"".join(frame(OP_BIN, pkt) for _, pkt in BAD_MSGPACK[1:]))
        f = ws.recv_frame(3)
        while f is not None and f[1] != OP_CLOSE:
            f = ws.recv_frame(3)
        ws.close()

    @mp_case("a JSON text packet on a msgpack server: closed")
    def _(srv):
        ws, _ = eio_ws(srv)
        ws.text("40")
        check(closes_or_answers(ws) == "closed", "not closed")
        ws.close()

    @mp_case("values the reference maps to undefined or keeps (ext types, integer map keys): the ack comes back")
    def _(srv):
        ws = mp_client(srv)
        odd = mp_map([("type", mp_int(2)), ("nsp", mp_str("/")), ("id", mp_int(9)),
                      ("data", mp_arr([mp_str("echo"), b"\xd8\x05" + b"z" * 16, b"\x82\x01\xc0\xa1k\xd4\x00\x00",
                                       b"\xd4\x00\x00"]))])
        ws.send(frame(OP_BIN, odd))
        t = expect_msg(ws, lambda t: isinstance(t, bytes) and t.startswith(b"\x84\xa2id\x09"))
        check(b"\xa1" + b"1" in t and b"\xa1k" not in t, "ack %r" % t)
        ws.close()

    @mp_case("40 connections each send 96 KB of 48000 one-element arrays (the most objects msgpack-c makes "
             "per byte): each is answered, RSS stays bounded")
    def _(srv):
        rss0 = srv.rss_kb()
        n = 48000
        big = mp_map([("type", mp_int(2)), ("nsp", mp_str("/")), ("id", mp_int(3)),
                      ("data", b"\x92\xa4echo" + b"\xdc" + struct.pack(">H", n) + b"\x91\xc0" * n)])
        check(len(big) < 100000, "the message is over the server's limit")
        wss = [mp_client(srv) for _ in range(40)]
        for ws in wss:
            ws.send(frame(OP_BIN, big))
        for ws in wss:
            expect_msg(ws, lambda t: isinstance(t, bytes) and t.startswith(b"\x84\xa2id\x03"), 20)
            ws.close()
        grew = srv.rss_kb() - rss0
        check(grew < 96 << 10, "RSS grew by %d KiB" % grew)

    @case("msgpack", "the msgpack server: SIGTERM exits 0 with no sanitizer (leak) report")
    def _(_main):
        srv = mp_server()
        rc = srv.stop()
        state.pop("srv")
        check(rc == 0, "exit status %s" % rc)
        check(not srv.sanitizer_reports(0), "sanitizer: %s" % srv.sanitizer_reports(0)[:1])

    # ------------------------------------------------------------ Engine.IO v3 on the main server

    def v3_open(srv):
        r = http_one(srv, get("/socket.io/?EIO=3&transport=polling"))
        check(r[0] == 200, "v3 handshake: %r" % (r,))
        body = r[2].decode()
        open_pkt = body[body.index(":") + 1:]
        return json.loads(open_pkt[1:])["sid"]

    def v3_post(srv, sid, body, ctype="text/plain;charset=UTF-8"):
        if isinstance(body, str):
            body = body.encode()
        raw = (("POST /socket.io/?EIO=3&transport=polling&sid=%s HTTP/1.1\r\nHost: x\r\n"
                "Content-Type: %s\r\nContent-Length: %d\r\n\r\n") % (sid, ctype, len(body))).encode() + body
        return http_one(srv, raw)

    def v3_gone(srv, sid):
        r = http_one(srv, get("/socket.io/?EIO=3&transport=polling&sid=" + sid))
        return r[0] == 400

    bad_text = ["", "x:4a", "4:4a", "2:4\U0001F600", "99999999999999999999:4", ":", "1", "1:9", "2:4a3",
                "1:3", "0:" * 1000 + "1"]
    bad_bin = [b"\x00\x05\xff4ab", b"\x00\xff4a", b"\x00" + b"\x01" * 400 + b"\xff4", b"\x00\x02\xff4\xff",
               b"\x00\x0a\xff4a", b"\x07", b"\x01\x02"]

    @case("eio3", "%d malformed v3 text payloads and %d binary ones: each session closes, the server goes on" %
          (len(bad_text), len(bad_bin)))
    def _(srv):
        for body, ctype in [(b, "text/plain;charset=UTF-8") for b in bad_text] + \
                           [(b, "application/octet-stream") for b in bad_bin]:
            sid = v3_open(srv)
            r = v3_post(srv, sid, body, ctype)
            check(r[0] in (200, 400), "%r: answered %r" % (body[:40], r[:2]))
            check(wait_for(lambda: v3_gone(srv, sid), WAIT), "%r: the session is still open" % (body[:40],))

    @case("eio3", "a v3 POST of 1001 pings (over the packet limit) closes the session")
    def _(srv):
        sid = v3_open(srv)
        v3_post(srv, sid, "1:2" * 1001)
        check(wait_for(lambda: v3_gone(srv, sid), WAIT), "the session is still open")

    @case("eio3", "a v3 session that never pings is closed after pingInterval + pingTimeout")
    def _(srv):
        sid = v3_open(srv)
        r = http_one(srv, get("/socket.io/?EIO=3&transport=polling&sid=" + sid))  # "2:40"
        check(r[0] == 200, "GET: %r" % (r,))
        r = http_one(srv, get("/socket.io/?EIO=3&transport=polling&sid=" + sid), timeout=WAIT)
        check(r[0] == 200 and r[2] == b"1:1", "held GET: %r" % (r,))

    @case("eio3", "v3 WebSocket: unknown binary types and bare 'b' frames are ignored; a pong closes the session")
    def _(srv):
        ws = WS(srv, "/socket.io/?EIO=3&transport=websocket")
        expect_msg(ws, lambda t: isinstance(t, str) and t.startswith("0{"))
        expect_msg(ws, lambda t: t == "40")
        ws.send(frame(OP_BIN, b"\x09abc") + frame(OP_BIN, b"") + frame(OP_TEXT, "b") + frame(OP_TEXT, "b9AAAA"))
        ws.text("2")
        expect_msg(ws, lambda t: t == "3")
        ws.text('421["echo","still here"]')
        expect_msg(ws, lambda t: t == '431["still here"]')
        ws.text("3")
        check(closes_or_answers(ws) == "closed", "a pong from a v3 client did not close it")
        ws.close()
        # base64 that is not a binary packet's attachment: the client is closed
        ws = WS(srv, "/socket.io/?EIO=3&transport=websocket&b64=1")
        expect_msg(ws, lambda t: t == "40")
        ws.text("b4AQID")
        check(closes_or_answers(ws) == "closed", "not closed")
        ws.close()

    @case("eio3", "v3 WebSocket with permessage-deflate: a bomb in a binary message (type byte 4, 50 MB of zeros) "
          "closes 1009; the server goes on")
    def _(srv):
        bomb = frame(OP_BIN, deflated(b"\x04" + b"\0" * (50 << 20)), rsv=4)
        ws = WS(srv, "/socket.io/?EIO=3&transport=websocket", headers=PMD)
        check(b"permessage-deflate" in ws.head, "not negotiated: %r" % ws.head)
        expect_msg(ws, lambda t: isinstance(t, str) and t.startswith("0{"))
        expect_msg(ws, lambda t: t == "40")
        expect_bounded_close(srv, ws, bomb, 1009, rss_kib=8 << 10)
        ws = WS(srv, "/socket.io/?EIO=3&transport=websocket")
        expect_msg(ws, lambda t: t == "40")
        ws.text('421["echo","still here"]')
        expect_msg(ws, lambda t: t == '431["still here"]')
        ws.close()

