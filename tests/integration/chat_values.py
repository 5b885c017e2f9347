#!/usr/bin/python3
"""The Python side of browser/chat_values.test.mjs: Debian's python-socketio on the chat example.

    /usr/bin/python3 chat_values.py URL N VALUES_JSON

Connects and prints "connected"; on a "go" line from stdin emits "message" with each value of the
JSON array VALUES_JSON; prints one line "got <JSON array>" once it received 2 x N messages from the
others (or after 20 s, with what came); disconnects and exits when stdin ends (the test has seen its
messages arrive by then: a disconnect right after the emits could drop the ones still queued in the
client's writer thread)."""
import json
import sys
import threading

import socketio

url, n, values = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
got = []
done = threading.Event()
sio = socketio.Client(reconnection=False)


@sio.on("message")
def on_message(v):
    got.append(v)
    if len(got) >= 2 * n:
        done.set()


sio.connect(url, transports=["websocket"], wait_timeout=10)
print("connected", flush=True)
for line in sys.stdin:
    if line.strip() == "go":
        for v in values:
            sio.emit("message", v)
        print("sent", flush=True)
        break
done.wait(20)
# ensure_ascii: lone surrogates travel as \ud800 escapes, as JSON.stringify writes them
print("got " + json.dumps(got, separators=(",", ":")), flush=True)
sys.stdin.read()
sio.disconnect()
