#!/usr/bin/python3
"""Debian's python-socketio clients of the chat example over HTTPS/WSS, driven line by line by
tls.test.mjs (which also drives Node clients, and rotates the server's certificate meanwhile).

    /usr/bin/python3 tls_chat.py https://127.0.0.1:PORT CA.pem

Commands on stdin, one per line:
    connect NAME TRANSPORT [noca]   a client that trusts CA.pem (noca: the system's CAs only)
    send NAME TEXT                  NAME emits "message" TEXT
    quit                            disconnect everyone and exit
Output on stdout, one JSON object per line:
    {"connected": NAME, "transport": T} | {"error": NAME, "message": M}
    {"message": TEXT, "to": NAME}       a "message" NAME received
    {"disconnect": NAME}                NAME lost its connection
    {"sent": NAME}
The CA reaches both transports through the requests session's `verify` (python-engineio 4.3
passes it to websocket-client as ca_certs; its `ssl_verify` is only True or False), with the
environment's CA variables ignored.
"""
import json
import sys
import threading

import requests
import socketio

URL, CA = sys.argv[1], sys.argv[2]
TIMEOUT = 10
lock = threading.Lock()
clients = {}


def out(obj):
    with lock:
        print(json.dumps(obj), flush=True)


def connect(name, transport, noca):
    session = requests.Session()
    session.trust_env = False  # else REQUESTS_CA_BUNDLE, when set, replaces `verify`
    session.verify = True if noca else CA
    sio = socketio.Client(reconnection=False, http_session=session)
    sio.on("message", lambda text: out({"message": text, "to": name}))
    sio.on("disconnect", lambda: out({"disconnect": name}))
    try:
        sio.connect(URL, transports=[transport], wait_timeout=TIMEOUT)
    except Exception as e:  # the test asserts which clients could not connect
        out({"error": name, "message": str(e)})
        return
    clients[name] = sio
    out({"connected": name, "transport": sio.transport()})


for line in sys.stdin:
    cmd = line.rstrip("\n").split(" ", 2)
    if cmd[0] == "connect":
        connect(cmd[1], cmd[2].split(" ")[0], cmd[2].endswith(" noca"))
    elif cmd[0] == "send":
        clients[cmd[1]].emit("message", cmd[2])
        out({"sent": cmd[1]})
    elif cmd[0] == "quit":
        break
for sio in clients.values():
    if sio.connected:
        sio.disconnect()
