"""A WebSocket conformance check written from RFC 6455 (Autobahn's suite cannot be installed here),
run by hostile.py on the same server. Messages are Socket.IO packets on the Engine.IO endpoint, so
that every accepted message can be checked by its echo (an ack)."""

import json
import struct
import time

from lib import (OP_BIN, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, WAIT, Fail, check, expect_msg, frame,
                 next_msg, sio_ws)


def echo_packet(ack_id, text):
    return ("42%d" % ack_id + json.dumps(["echo", text], ensure_ascii=False)).encode()


def expect_echo(ws, ack_id, text, timeout=WAIT):
    want = "43%d" % ack_id + json.dumps([text], ensure_ascii=False)
    got = expect_msg(ws, lambda t: isinstance(t, str) and t.startswith("43%d[" % ack_id), timeout)
    check(got == want, "echo %r, expected %r" % (got[:80], want[:80]))


def fails_with(ws, code, timeout=WAIT):
    """The server sends a close frame with `code`, then closes TCP."""
    got = ws.recv_close(timeout)
    check(got == code, "close code %r, expected %d" % (got, code))
    ws.expect_eof(timeout)


def register(case):
    def rfc(name):
        return case("rfc6455", name)

    # ---------------------------------------------------------------- framing (5.2)

    @rfc("one text frame with multi-byte UTF-8 is echoed")
    def _(srv):
        ws = sio_ws(srv)
        ws.send(frame(OP_TEXT, echo_packet(1, "héllo ✓ 😀")))
        expect_echo(ws, 1, "héllo ✓ 😀")
        ws.close()

    @rfc("16-bit and 64-bit payload lengths")
    def _(srv):
        ws = sio_ws(srv)
        ws.send(frame(OP_TEXT, echo_packet(1, "a" * 200)))
        expect_echo(ws, 1, "a" * 200)
        ws.send(frame(OP_TEXT, echo_packet(2, "b" * 70000)))
        expect_echo(ws, 2, "b" * 70000)
        ws.close()

    @rfc("client frames without a mask: close 1002")
    def _(srv):
        ws = sio_ws(srv)
        ws.send(frame(OP_TEXT, echo_packet(1, "x"), mask=False))
        fails_with(ws, 1002)

    for bit in (4, 2, 1):
        def _mk(bit):
            def fn(srv):
                ws = sio_ws(srv)
                ws.send(frame(OP_TEXT, echo_packet(1, "x"), rsv=bit))
                fails_with(ws, 1002)
            return fn
        rfc("reserved bit RSV%d set without an extension: close 1002" % {4: 1, 2: 2, 1: 3}[bit])(_mk(bit))

    @rfc("reserved bit on a control frame: close 1002")
    def _(srv):
        ws = sio_ws(srv)
        ws.send(frame(OP_PING, b"x", rsv=4))
        fails_with(ws, 1002)

    for op in (3, 7, 0xB, 0xF):
        def _mk(op):
            def fn(srv):
                ws = sio_ws(srv)
                ws.send(frame(op, b"x"))
                fails_with(ws, 1002)
            return fn
        rfc("reserved opcode 0x%X: close 1002" % op)(_mk(op))

    @rfc("non-minimal 16-bit length for a 5-byte payload: close 1002")
    def _(srv):
        ws = sio_ws(srv)
        ws.send(frame(OP_TEXT, b"42[1]", ext_len=2))
        fails_with(ws, 1002)

    @rfc("non-minimal 64-bit length for a 200-byte payload: close 1002")
    def _(srv):
        ws = sio_ws(srv)
        ws.send(frame(OP_TEXT, echo_packet(1, "a" * 190), ext_len=8))
        fails_with(ws, 1002)

    @rfc("64-bit length with the most significant bit set: close 1002")
    def _(srv):
        ws = sio_ws(srv)
        ws.send(frame(OP_TEXT, b"", length=1 << 63) + b"xxxx")
        fails_with(ws, 1002)

    # ---------------------------------------------------------------- fragmentation (5.4)

    @rfc("a message in two fragments is echoed")
    def _(srv):
        ws = sio_ws(srv)
        p = echo_packet(1, "fragmented")
        ws.send(frame(OP_TEXT, p[:7], fin=False) + frame(OP_CONT, p[7:]))
        expect_echo(ws, 1, "fragmented")
        ws.close()

    @rfc("a message in 50 fragments, some empty, is echoed")
    def _(srv):
        ws = sio_ws(srv)
        p = echo_packet(1, "many pieces")
        parts = [p[i:i + 1] if i % 3 else b"" for i in range(len(p))]
        parts = [x for x in parts if x] + [b""] * (49 - len([x for x in parts if x]))
        chunks = [p[:1]] + [b""] * 10 + [p[1:]]
        frames = [frame(OP_TEXT, chunks[0], fin=False)] + [frame(OP_CONT, c, fin=False) for c in chunks[1:-1]]
        frames += [frame(OP_CONT, b"", fin=False)] * (49 - len(frames)) + [frame(OP_CONT, chunks[-1])]
        check(len(frames) == 50, "built %d frames" % len(frames))
        ws.send(b"".join(frames))
        expect_echo(ws, 1, "many pieces")
        ws.close()

    @rfc("a ping between fragments is answered first, then the message is echoed")
    def _(srv):
        ws = sio_ws(srv)
        p = echo_packet(1, "interleaved")
        ws.send(frame(OP_TEXT, p[:5], fin=False) + frame(OP_PING, b"mid") + frame(OP_CONT, p[5:]))
        f = ws.recv_frame()
        while f and f[1] == OP_TEXT and f[2] == b"2":
            ws.text("3")
            f = ws.recv_frame()
        check(f and f[1] == OP_PONG and f[2] == b"mid", "expected the pong first, got %r" % (f,))
        expect_echo(ws, 1, "interleaved")
        ws.close()

    @rfc("a continuation frame with no message started: close 1002")
    def _(srv):
        ws = sio_ws(srv)
        ws.send(frame(OP_CONT, b"x"))
        fails_with(ws, 1002)

    @rfc("a new text frame while a fragmented message is open: close 1002")
    def _(srv):
        ws = sio_ws(srv)
        ws.send(frame(OP_TEXT, b"42", fin=False) + frame(OP_TEXT, b"42[1]"))
        fails_with(ws, 1002)

    @rfc("a binary frame while a fragmented text message is open: close 1002")
    def _(srv):
        ws = sio_ws(srv)
        ws.send(frame(OP_TEXT, b"42", fin=False) + frame(OP_BIN, b"\x01"))
        fails_with(ws, 1002)

    # ---------------------------------------------------------------- control frames (5.5)

    @rfc("ping with an empty payload: empty pong")
    def _(srv):
        ws = sio_ws(srv)
        ws.send(frame(OP_PING, b""))
        f = ws.recv_frame()
        check(f == (True, OP_PONG, b""), "got %r" % (f,))
        ws.close()

    @rfc("ping with a 125-byte binary payload: pong with the same payload")
    def _(srv):
        ws = sio_ws(srv)
        payload = bytes(range(125))
        ws.send(frame(OP_PING, payload))
        f = ws.recv_frame()
        check(f == (True, OP_PONG, payload), "got %r" % (f,))
        ws.close()

    @rfc("ping with a 126-byte payload: close 1002")
    def _(srv):
        ws = sio_ws(srv)
        ws.send(frame(OP_PING, b"p" * 126))
        fails_with(ws, 1002)

    @rfc("pong with a 126-byte payload: close 1002")
    def _(srv):
        ws = sio_ws(srv)
        ws.send(frame(OP_PONG, b"p" * 126))
        fails_with(ws, 1002)

    @rfc("a fragmented ping: close 1002")
    def _(srv):
        ws = sio_ws(srv)
        ws.send(frame(OP_PING, b"ab", fin=False) + frame(OP_CONT, b"cd"))
        fails_with(ws, 1002)

    @rfc("a close frame with a 126-byte payload: close 1002")
    def _(srv):
        ws = sio_ws(srv)
        ws.send(frame(OP_CLOSE, struct.pack("!H", 1000) + b"r" * 124))
        fails_with(ws, 1002)

    # ---------------------------------------------------------------- UTF-8 (8.1)

    BAD_UTF8 = [("a lone 0xFF byte", b"\xff"), ("an overlong '/'", b"\xc0\xaf"),
                ("a UTF-16 surrogate", b"\xed\xa0\x80"), ("a code point over U+10FFFF", b"\xf4\x90\x80\x80"),
                ("a sequence cut at the end", b"\xe2\x82")]
    for name, bad in BAD_UTF8:
        def _mk(bad):
            def fn(srv):
                ws = sio_ws(srv)
                ws.send(frame(OP_TEXT, b'42["echo","' + bad + b'"]'))
                fails_with(ws, 1007)
            return fn
        rfc("invalid UTF-8 in a text message (%s): close 1007" % name)(_mk(bad))

    @rfc("valid UTF-8 split across fragments in the middle of a character is echoed")
    def _(srv):
        ws = sio_ws(srv)
        p = echo_packet(1, "é€😀")
        cut = p.index("é".encode()) + 1
        cut2 = p.index("😀".encode()) + 2
        ws.send(frame(OP_TEXT, p[:cut], fin=False) + frame(OP_CONT, p[cut:cut2], fin=False) +
                frame(OP_CONT, p[cut2:]))
        expect_echo(ws, 1, "é€😀")
        ws.close()

    @rfc("invalid UTF-8 made by joining two fragments: close 1007")
    def _(srv):
        ws = sio_ws(srv)
        ws.send(frame(OP_TEXT, b'42["echo","\xe2\x82', fin=False) + frame(OP_CONT, b'("]'))
        fails_with(ws, 1007)

    @rfc("invalid UTF-8 in the first fragment fails fast, before the message ends")
    def _(srv):
        ws = sio_ws(srv)
        ws.send(frame(OP_TEXT, b'42["echo","\xff', fin=False))
        fails_with(ws, 1007, timeout=1.5)

    @rfc("a binary message is not checked for UTF-8 (a Socket.IO attachment with 0xFF)")
    def _(srv):
        ws = sio_ws(srv)
        ws.text('451-1["echo",{"_placeholder":true,"num":0}]')
        ws.send(frame(OP_BIN, b"\xff\xfe"))
        expect_msg(ws, lambda t: isinstance(t, str) and t.startswith("461-1"))
        op, p = next_msg(ws)
        check(op == OP_BIN and p == b"\xff\xfe", "attachment %r" % p)
        ws.close()

    # ---------------------------------------------------------------- closing (5.5.1, 7.4)

    @rfc("close 1000: the server answers with a close frame and closes TCP")
    def _(srv):
        ws = sio_ws(srv)
        ws.send(frame(OP_CLOSE, struct.pack("!H", 1000) + b"bye"))
        code = ws.recv_close()
        check(code == 1000, "answered %r" % code)
        ws.expect_eof()

    @rfc("an empty close frame is answered with a close frame")
    def _(srv):
        ws = sio_ws(srv)
        ws.send(frame(OP_CLOSE, b""))
        code = ws.recv_close()
        check(code in (1000, 1005), "answered %r" % code)
        ws.expect_eof()

    @rfc("a close frame with a 1-byte payload: close 1002")
    def _(srv):
        ws = sio_ws(srv)
        ws.send(frame(OP_CLOSE, b"\x03"))
        fails_with(ws, 1002)

    for code in (1001, 1003, 1007, 1011, 3000, 3999, 4000, 4999):
        def _mk(code):
            def fn(srv):
                ws = sio_ws(srv)
                ws.send(frame(OP_CLOSE, struct.pack("!H", code)))
                got = ws.recv_close()
                check(got in (code, 1000), "answered %r" % got)
                ws.expect_eof()
            return fn
        rfc("valid close code %d is answered with a close" % code)(_mk(code))

    for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535):
        def _mk(code):
            def fn(srv):
                ws = sio_ws(srv)
                ws.send(frame(OP_CLOSE, struct.pack("!H", code)))
                fails_with(ws, 1002)
            return fn
        rfc("invalid close code %d: close 1002" % code)(_mk(code))

    @rfc("a close reason that is not UTF-8: close 1007")
    def _(srv):
        ws = sio_ws(srv)
        ws.send(frame(OP_CLOSE, struct.pack("!H", 1000) + b"\xff\xfe"))
        fails_with(ws, 1007)

    @rfc("frames after a close frame are ignored")
    def _(srv):
        ws = sio_ws(srv)
        ws.send(frame(OP_CLOSE, struct.pack("!H", 1000)) + frame(OP_TEXT, echo_packet(1, "late")) +
                frame(OP_PING, b"late"))
        end = time.monotonic() + 3
        while time.monotonic() < end:
            f = ws.recv_frame(3)
            if f is None:
                break
            check(f[1] in (OP_CLOSE, OP_TEXT) and not (f[1] == OP_TEXT and f[2].startswith(b"431")),
                  "answered after close: %r" % (f,))
        ws.close()
