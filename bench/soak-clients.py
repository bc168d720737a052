#!/usr/bin/env python3
"""Legitimate and abusive ASAP clients for bench/soak.sh, over TCP on loopback.

  bench/soak-clients.py --registrar 127.0.0.1:PORT --duration S [--no-abuse] [--json FILE]

Legitimate: --legit-connections connections register --legit-pes PEs each in pool
SoakLegit (ids 1..N, TCP user transport 127.0.0.1, port 20000 + id, registration life
30 s), answer every keep-alive and re-register every 10 s for the whole run. At the end a fresh connection resolves the pool and the
script reports the PEs that are missing ("lost") and the ones whose transport is not
theirs any more ("hijacked": re-registered by someone else).

Abusive, each in a thread of its own, bounded in rate and count, for the whole run:
- slowloris: connections that send a message a byte at a time, one byte every 5 s;
- pipeline: connections that send handle resolutions and never read the answers;
- hijack: re-registers the legitimate PEs' ids from its own connection (port 40000 + id);
- unreachable: floods ENDPOINT_UNREACHABLE reports about the legitimate PEs;
- garbage: connections that send random bytes (some with a plausible header).
Nothing checks that these are refused: the script counts what it did and what came back.
Only loopback targets are accepted.
"""

import argparse
import ipaddress
import json
import os
import random
import socket
import struct
import sys
import threading
import time

POOL = b"SoakLegit"
LEGIT_PORT = 20000
HIJACK_PORT = 40000
# Registration life 30 s; the legitimate PEs re-register every 10 s.
LIFE_MS = 30_000
REREGISTRATION = 10.0


def pad(b):
    return b + b"\0" * ((4 - len(b) % 4) % 4)


def seq(*parts):
    """Children of a TLV or message: the padding between them counts in the parent's
    length, the last one's does not (RFC 5354 §2)."""
    return b"".join(pad(p) for p in parts[:-1]) + parts[-1]


def tlv(t, body):
    """One TLV without its own trailing padding."""
    return struct.pack("!HH", t, 4 + len(body)) + body


def message(kind, flags, *params):
    body = seq(*params)
    return pad(struct.pack("!BBH", kind, flags, 4 + len(body)) + body)


def handle(h):
    return tlv(0x0009, h)


def pe_id(i):
    return tlv(0x000E, struct.pack("!I", i))


def element(i, port):
    transport = tlv(0x0005, struct.pack("!HH", port, 0) + tlv(0x0001, bytes([127, 0, 0, 1])))
    policy = tlv(0x0008, struct.pack("!I", 1))  # round robin
    return tlv(0x000A, struct.pack("!III", i, 0, LIFE_MS) + seq(transport, policy))


def registration(h, i, port):
    return message(0x01, 0, handle(h), element(i, port))


def resolution(h, items):
    return message(0x05, 0, handle(h), tlv(0x803F, struct.pack("!I", items)))


def keep_alive_ack(h, i):
    return message(0x08, 0, handle(h), pe_id(i))


def unreachable(h, i):
    return message(0x09, 0, handle(h), pe_id(i))


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def recv_message(s):
    head = recv_exact(s, 4)
    kind, flags, n = struct.unpack("!BBH", head)
    if n < 4:
        raise ConnectionError(f"bad length {n}")
    body = recv_exact(s, ((n + 3) & ~3) - 4)
    return kind, flags, body[: n - 4]


def params(body):
    """Top-level TLVs of a message body: (type, value)."""
    out, at = [], 0
    while at + 4 <= len(body):
        t, n = struct.unpack("!HH", body[at : at + 4])
        if n < 4:
            break
        out.append((t, body[at + 4 : at + n]))
        at += (n + 3) & ~3
    return out


def resolved(body):
    """PE id -> user transport port of a handle resolution response."""
    got = {}
    for t, v in params(body):
        if t == 0x000A and len(v) >= 16:
            i = struct.unpack("!I", v[0:4])[0]
            tt = params(v[12:])
            port = struct.unpack("!H", tt[0][1][0:2])[0] if tt and len(tt[0][1]) >= 2 else None
            got[i] = port
    return got


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}

    def add(self, key, n=1):
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + n


def connect(addr):
    s = socket.create_connection(addr, timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def legit_connection(addr, ids, deadline, stats, ready):
    """Registers `ids` and keeps them alive until the deadline (reconnecting if closed)."""
    while time.monotonic() < deadline:
        try:
            s = connect(addr)
            for i in ids:
                s.sendall(registration(POOL, i, LEGIT_PORT + i))
            accepted = 0
            while accepted < len(ids):
                kind, flags, body = recv_message(s)
                if kind == 0x03:
                    if flags & 1:
                        stats.add("legit_registrations_rejected")
                    accepted += 1
            ready.release()
            s.settimeout(1.0)
            renew = time.monotonic() + REREGISTRATION
            while time.monotonic() < deadline:
                if time.monotonic() >= renew:
                    # Re-register before the registration life ends, as RSPLIB's PEs do.
                    for i in ids:
                        s.sendall(registration(POOL, i, LEGIT_PORT + i))
                    stats.add("legit_reregistrations", len(ids))
                    renew += REREGISTRATION
                try:
                    kind, flags, body = recv_message(s)
                except socket.timeout:
                    continue
                if kind == 0x03 and flags & 1:
                    stats.add("legit_reregistrations_rejected")
                if kind == 0x07:
                    ps = params(body[4:])
                    ids_in = [struct.unpack("!I", v)[0] for t, v in ps if t == 0x000E]
                    for i in ids_in or ids:
                        s.sendall(keep_alive_ack(POOL, i))
                    stats.add("legit_keep_alives_answered")
            s.close()
            return
        except (OSError, ConnectionError):
            stats.add("legit_reconnects")
            time.sleep(1)


def slowloris(addr, deadline, stats, conns=32):
    socks = []
    msg = resolution(POOL, 3)
    while time.monotonic() < deadline:
        while len(socks) < conns:
            try:
                socks.append([connect(addr), 0])
                stats.add("slowloris_connections")
            except OSError:
                stats.add("slowloris_connect_failed")
                break
        for entry in list(socks):
            s, at = entry
            try:
                s.send(msg[at % len(msg) : at % len(msg) + 1])
                entry[1] += 1
                stats.add("slowloris_bytes")
            except OSError:
                socks.remove(entry)
                stats.add("slowloris_closed_by_registrar")
        time.sleep(5)
    for s, _ in socks:
        s.close()


def pipeline(addr, deadline, stats, conns=4):
    msg = resolution(POOL, 3) * 64
    socks = []
    while time.monotonic() < deadline:
        while len(socks) < conns:
            try:
                s = connect(addr)
                s.setblocking(False)
                socks.append(s)
                stats.add("pipeline_connections")
            except OSError:
                break
        for s in list(socks):
            try:
                sent = s.send(msg)
                stats.add("pipeline_bytes", sent)
            except BlockingIOError:
                stats.add("pipeline_blocked")
            except OSError:
                socks.remove(s)
                s.close()
                stats.add("pipeline_closed_by_registrar")
        time.sleep(0.05)
    for s in socks:
        s.close()


def hijack(addr, ids, deadline, stats):
    s = None
    while time.monotonic() < deadline:
        try:
            if s is None:
                s = connect(addr)
                s.settimeout(1.0)
            i = random.choice(ids)
            s.sendall(registration(POOL, i, HIJACK_PORT + i))
            stats.add("hijack_attempts")
            while True:
                kind, flags, body = recv_message(s)
                if kind == 0x07:  # keep the stolen ones alive, as an attacker would
                    ps = params(body[4:])
                    for t, v in ps:
                        if t == 0x000E:
                            s.sendall(keep_alive_ack(POOL, struct.unpack("!I", v)[0]))
                    continue
                if kind == 0x03:
                    stats.add("hijack_rejected" if flags & 1 else "hijack_accepted")
                break
        except socket.timeout:
            stats.add("hijack_unanswered")
        except (OSError, ConnectionError):
            stats.add("hijack_closed_by_registrar")
            s = None
        time.sleep(0.5)


def unreachable_flood(addr, ids, deadline, stats, per_second=200):
    s = None
    while time.monotonic() < deadline:
        try:
            if s is None:
                s = connect(addr)
            batch = b"".join(unreachable(POOL, random.choice(ids)) for _ in range(per_second // 10))
            s.sendall(batch)
            stats.add("unreachable_reports", per_second // 10)
        except OSError:
            stats.add("unreachable_closed_by_registrar")
            s = None
        time.sleep(0.1)


def garbage(addr, deadline, stats):
    rng = random.Random(7)
    while time.monotonic() < deadline:
        try:
            s = connect(addr)
            body = rng.randbytes(rng.randrange(1, 512))
            if rng.random() < 0.5:  # a plausible header over garbage
                body = struct.pack("!BBH", rng.randrange(1, 15), 0, len(body) + 4) + body
            s.sendall(body)
            stats.add("garbage_messages")
            s.settimeout(0.2)
            try:
                if s.recv(4096):
                    stats.add("garbage_answered")
            except socket.timeout:
                pass
            s.close()
        except OSError:
            stats.add("garbage_refused")
        time.sleep(0.2)


def final_check(addr, expect):
    s = connect(addr)
    s.sendall(resolution(POOL, 1024))
    while True:
        kind, flags, body = recv_message(s)
        if kind == 0x06:
            break
    s.close()
    got = resolved(body)
    lost = sorted(i for i in expect if i not in got)
    hijacked = sorted(i for i in expect if i in got and got[i] != LEGIT_PORT + i)
    return lost, hijacked


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--registrar", required=True, help="HOST:PORT (loopback)")
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--legit-connections", type=int, default=4)
    p.add_argument("--legit-pes", type=int, default=5)
    p.add_argument("--no-abuse", action="store_true")
    p.add_argument("--json")
    a = p.parse_args()
    host, port = a.registrar.rsplit(":", 1)
    if not ipaddress.ip_address(host).is_loopback:
        sys.exit("soak-clients: only loopback registrars")
    addr = (host, int(port))
    deadline = time.monotonic() + a.duration
    stats = Stats()
    ready = threading.Semaphore(0)
    n = a.legit_connections * a.legit_pes
    ids = list(range(1, n + 1))
    threads = []
    for c in range(a.legit_connections):
        mine = ids[c * a.legit_pes : (c + 1) * a.legit_pes]
        threads.append(threading.Thread(target=legit_connection, args=(addr, mine, deadline, stats, ready)))
    for t in threads:
        t.start()
    for _ in range(a.legit_connections):
        ready.acquire(timeout=30)
    if not a.no_abuse:
        for f, extra in [
            (slowloris, ()),
            (pipeline, ()),
            (hijack, (ids,)),
            (unreachable_flood, (ids,)),
            (garbage, ()),
        ]:
            t = threading.Thread(target=f, args=(addr, *extra, deadline, stats), daemon=True)
            t.start()
            threads.append(t)
    # The check runs just before the legitimate connections close.
    time.sleep(max(0.0, deadline - time.monotonic() - 2))
    try:
        lost, hijacked = final_check(addr, ids)
        check_error = None
    except (OSError, ConnectionError) as e:
        lost, hijacked, check_error = ids, [], str(e)
    for t in threads:
        t.join(timeout=10)
    doc = {
        "legit_pes": n,
        "lost": lost,
        "hijacked": hijacked,
        "check_error": check_error,
        "counts": dict(sorted(stats.counts.items())),
    }
    print(json.dumps(doc, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=1)
    os._exit(0)


if __name__ == "__main__":
    main()
