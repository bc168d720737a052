#!/usr/bin/python3
"""asap-check.py - is a registrar serving? (deploy/test-package.sh)

    asap-check.py ADDR:PORT [--timeout S] [--metrics ADDR:PORT]

Connects over TCP (ASAP framed by its own length, README "The registrar"), retrying
until the registrar listens; registers one PE whose user transport is the
connection's own address, then resolves its pool until the answer lists it.
Prints "OK" and the PE on success; exits 1 naming what failed at the timeout.
Over loopback (the registrar refuses loopback addresses in registrations by
default) it asks for an unknown pool instead, and an Operation Error with cause
0x0009 (unknown pool handle) is the answer that shows it serves.
With --metrics it also checks `rserpool_up 1` on http://ADDR:PORT/metrics.
"""
import argparse
import ipaddress
import socket
import struct
import sys
import time
import urllib.request

POOL = b"PackageCheck"
PE_ID = 0x5EED0001


def tlv(t, body):
    return struct.pack("!HH", t, 4 + len(body)) + body


def pad(b):
    return b + b"\0" * (-len(b) % 4)


def message(kind, *params):
    body = b"".join(pad(p) for p in params[:-1]) + params[-1]
    return pad(struct.pack("!BBH", kind, 0, 4 + len(body)) + body)


def registration(addr, port):
    ip = tlv(0x0001, socket.inet_aton(addr))
    transport = tlv(0x0005, struct.pack("!HH", port, 0) + ip)
    policy = tlv(0x0008, struct.pack("!I", 1))  # round robin
    element = tlv(0x000A, struct.pack("!III", PE_ID, 0, 60_000) + pad(transport) + policy)
    return message(0x01, tlv(0x0009, POOL), element)


def resolution(pool):
    return message(0x05, tlv(0x0009, pool))


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed by the registrar")
        buf += chunk
    return buf


def recv_message(s):
    kind, _flags, n = struct.unpack("!BBH", recv_exact(s, 4))
    if n < 4:
        raise ConnectionError(f"bad length {n}")
    body = recv_exact(s, ((n + 3) & ~3) - 4)
    return kind, body[: n - 4]


def params(body):
    out, at = [], 0
    while at + 4 <= len(body):
        t, n = struct.unpack("!HH", body[at : at + 4])
        if n < 4:
            break
        out.append((t, body[at + 4 : at + n]))
        at += (n + 3) & ~3
    return out


def causes(body):
    """The error causes of the Operation Error parameters (each a cause TLV list)."""
    return [c for t, v in params(body) if t == 0x000C for c, _ in params(v)]


def pe_ids(body):
    return [struct.unpack("!I", v[0:4])[0] for t, v in params(body) if t == 0x000A and len(v) >= 4]


def check(registrar, timeout):
    s = socket.create_connection(registrar, timeout=timeout)
    with s:
        local = s.getsockname()[0]
        if ipaddress.ip_address(local).is_loopback:
            s.sendall(resolution(b"NoSuchPool"))
            kind, body = recv_message(s)
            if kind == 0x06 and causes(body) == [0x0009]:
                return "OK resolution answered (unknown pool, cause 0x0009; over loopback)"
            raise ValueError(f"unexpected answer type 0x{kind:02x} causes {causes(body)}")
        s.sendall(registration(local, 3863))
        while True:
            kind, body = recv_message(s)
            if kind == 0x03:  # registration response
                if causes(body):
                    raise ValueError(f"registration refused, causes {causes(body)}")
                break
        s.sendall(resolution(POOL))
        while True:
            kind, body = recv_message(s)
            if kind == 0x06:
                if PE_ID in pe_ids(body):
                    return f"OK resolution answered: PE 0x{PE_ID:08x}@{local}"
                raise ValueError(f"answer without our PE: {pe_ids(body)} causes {causes(body)}")


def metrics_up(addr, timeout):
    url = f"http://{addr}/metrics"
    with urllib.request.urlopen(url, timeout=timeout) as r:
        text = r.read().decode()
    if "\nrserpool_up 1" not in "\n" + text:
        raise ValueError(f"{url}: no 'rserpool_up 1'")
    return f"OK metrics at {url}"


def addr_port(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("registrar", type=addr_port)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--metrics")
    args = ap.parse_args()
    deadline = time.monotonic() + args.timeout
    last = None
    while time.monotonic() < deadline:
        try:
            print(check(args.registrar, 5.0), flush=True)
            break
        except (OSError, ValueError) as e:
            last = e
            time.sleep(0.02)
    else:
        print(f"FAIL {args.registrar[0]}:{args.registrar[1]}: {last}", file=sys.stderr)
        return 1
    if args.metrics:
        try:
            print(metrics_up(args.metrics, 5.0))
        except (OSError, ValueError) as e:
            print(f"FAIL metrics: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
