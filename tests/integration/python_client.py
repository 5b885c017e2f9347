#!/usr/bin/python3
"""Debian's python-socketio client against a running server (run by run.sh with /usr/bin/python3).

    /usr/bin/python3 python_client.py http://127.0.0.1:PORT

Over websocket and polling: connect, emit with ack (client -> server and server -> client), binary,
large messages (run.sh starts the server with --per-message-deflate, which this client does not
negotiate, and with httpCompression on: its polling answers of 1 KB or more come gzip-encoded),
receive a broadcast, disconnect (with the server-side reason reported by the app).
Prints TAP lines and ends with "# pass N" / "# fail N"; exit status 1 if anything failed.
"""
import sys
import threading
import traceback

import socketio

URL = sys.argv[1]
TIMEOUT = 10  # seconds: generous, for a loaded machine and the ASan build
results = []


class Waiter:
    """Collects the arguments of one event, set from the client's background thread."""

    def __init__(self):
        self.event = threading.Event()
        self.args = None

    def __call__(self, *args):
        self.args = args
        self.event.set()

    def wait(self, what):
        if not self.event.wait(TIMEOUT):
            raise AssertionError("timed out waiting for " + what)
        return self.args


def expect(cond, what):
    """The check of every test here: a plain assert would vanish under python3 -O."""
    if not cond:
        raise AssertionError(what)


def client(transport):
    sio = socketio.Client(reconnection=False)
    sio.connect(URL, transports=[transport], wait_timeout=TIMEOUT)
    expect(sio.connected, "not connected")
    expect(sio.transport() == transport, "transport is %s" % sio.transport())
    return sio


def check(name, fn):
    try:
        fn()
        results.append(True)
        print("ok %d - %s" % (len(results), name), flush=True)
    except Exception:  # any failure is reported and counted, the others still run
        results.append(False)
        print("not ok %d - %s" % (len(results), name), flush=True)
        for line in traceback.format_exc().splitlines():
            print("#   " + line, flush=True)


def scenario(transport):
    def run():
        a = client(transport)
        b = client("websocket")
        try:
            # client -> server ack, several arguments come back as a tuple
            got = a.call("echo", {"n": 1, "s": "two", "z": None}, timeout=TIMEOUT)
            expect(got == {"n": 1, "s": "two", "z": None}, repr(got))
            got = a.call("echo", ("x", 2), timeout=TIMEOUT)
            expect(got == ("x", 2), repr(got))

            # large: a gzip polling answer (requests decodes it); a WebSocket that did not
            # negotiate permessage-deflate gets it as it is
            big = " ".join("message %d in a long chat" % i for i in range(1000))
            expect(a.call("echo", big, timeout=TIMEOUT) == big, "a large text came back changed")
            large = {"text": big, "bin": big.encode() * 3}
            expect(a.call("echo", large, timeout=TIMEOUT) == large, "large text and binary came back changed")

            # binary, nested
            back = a.call("echo", {"bin": b"\x00\x01\xff", "list": [b"abc", 1]}, timeout=TIMEOUT)
            expect(back == {"bin": b"\x00\x01\xff", "list": [b"abc", 1]}, repr(back))

            # server -> client ack: the handler's return value is the ack
            a.on("question", lambda q: q + "?")
            answered = Waiter()
            a.on("answered", answered)
            a.emit("ask", "why")
            expect(answered.wait("answered") == ("why?",), repr(answered.args))

            # broadcast from b reaches a (and the app reports b's id with it)
            shout = Waiter()
            a.on("shout", shout)
            b.emit("shout", "hello python")
            expect(shout.wait("shout") == ("hello python", b.get_sid("/")), repr(shout.args))

            # disconnect: the app reports the server-side reason to the others
            gone = Waiter()
            a_sid = a.get_sid("/")
            b.on("gone", lambda sid, reason: gone(sid, reason) if sid == a_sid else None)
            a.disconnect()
            # python-socketio 5.7 queues "41" then aborts the Engine.IO session at once: whether
            # the "41" gets out first is a race, and the reference (socket.io 4.8.4) reports
            # either reason on both transports
            expected = ["client namespace disconnect", "transport close"]
            sid, reason = gone.wait("gone")
            expect(sid == a_sid and reason in expected, repr(gone.args))
            expect(not a.connected, "still connected after disconnect()")
        finally:
            for s in (a, b):
                if s.connected:
                    s.disconnect()

    return run


check("python-socketio over websocket: connect, acks both ways, large messages, binary, broadcast, disconnect", scenario("websocket"))
check("python-socketio over polling: connect, acks both ways, large messages (gzip), binary, broadcast, disconnect", scenario("polling"))

passed = sum(results)
failed = len(results) - passed
print("1..%d" % len(results))
print("# pass %d" % passed)
print("# fail %d" % failed)
sys.exit(1 if failed else 0)
