#!/usr/bin/python3
"""asap-probe.py - a minimal ASAP pool user for tests (run inside the sctp-lab VM).

Asks a registrar for a pool with ASAP_HANDLE_RESOLUTION over SCTP (PPID 11,
one fresh association per request) and reports the PE identifiers it got.
It does not depend on the registrar implementation, so the same checks work
against RSPLIB's rspregistrar and against ours.

One-shot use, one line per resolution:

    asap-probe.py [--registrar 192.0.2.1:3863] [--pool EchoPool] [--count N] [--items N]

    PE 0x00001001@192.0.2.1:40123 PE 0x00001002@192.0.2.2:40200   (PEs, in the order sent)
    ERROR cause=0x0009                                             (Operation Error)
    FAIL <reason>                                                  (no usable answer)

--items N adds RSPLIB's Handle Resolution Option (0x803f, "skip if unknown")
asking for N entries, as rspterminal does with N=1; --items 0 leaves it out.

Server use (--serve): reads commands on stdin, answers each with ONE line on
stdout.  Python needs 3-4 s to start under TCG emulation, so interop-rsplib.sh
starts this once as a coprocess instead of once per check.

    resolve COUNT ITEMS      -> OK R1 R2 ...   one R per resolution: PE ids of that
                                               answer joined by ',' (in order), or
                                               error:CAUSE, or fail:REASON
    members TIMEOUT IDS      -> OK SECS IDS | TIMEOUT SECS LAST
                                poll (asking for all entries) until the set of PE
                                ids equals IDS (comma list, '-' = no PE / error)
    holds SECS IDS           -> OK POLLS | FAIL SECS REGISTRAR GOT
                                poll (all entries) for SECS seconds; every answer
                                must be IDS (FAIL at the first that is not)

Each command may end with REGISTRARS, ADDR:PORT[,ADDR:PORT...], to ask those
registrars instead of --registrar (interop-enrp.sh asks several): resolve asks
each in turn (answers separated by ' | '), members waits until every one of them
answers IDS (LAST then reads ADDR:PORT=GOT for each), holds polls them in turn.
"""
import argparse
import socket
import struct
import sys
import time

IPPROTO_SCTP = getattr(socket, "IPPROTO_SCTP", 132)
SCTP_SNDINFO = 2        # cmsg type: struct sctp_sndinfo
PPID_ASAP = 11
HANDLE_RESOLUTION = 0x05
HANDLE_RESOLUTION_RESPONSE = 0x06
P_IPV4, P_IPV6, P_SCTP, P_TCP, P_UDP = 0x0001, 0x0002, 0x0004, 0x0005, 0x0006
P_POOL_HANDLE, P_POOL_ELEMENT, P_OPERATION_ERROR = 0x0009, 0x000A, 0x000C
P_HR_OPTION = 0x803F
ALL_ITEMS = 0xFFFFFFFF  # Handle Resolution Option: "as many as possible"


def tlv(ptype, value):
    """One ASAP TLV, padded to 4 bytes (the length excludes the padding)."""
    raw = struct.pack("!HH", ptype, 4 + len(value)) + value
    return raw + b"\0" * (-len(raw) % 4)


def parse_tlvs(buf):
    """Yield (type, value) for each TLV; tolerates a missing final pad."""
    off = 0
    while len(buf) - off >= 4:
        ptype, plen = struct.unpack_from("!HH", buf, off)
        if plen < 4 or off + plen > len(buf):
            raise ValueError(f"bad TLV length {plen} at offset {off}")
        yield ptype, buf[off + 4: off + plen]
        off += (plen + 3) & ~3


def describe_transport(ptype, value):
    port = struct.unpack_from("!H", value, 0)[0]
    addrs = []
    for atype, aval in parse_tlvs(value[4:]):
        if atype == P_IPV4:
            addrs.append(socket.inet_ntop(socket.AF_INET, aval))
        elif atype == P_IPV6:
            addrs.append("[" + socket.inet_ntop(socket.AF_INET6, aval) + "]")
    proto = {P_SCTP: "", P_TCP: "tcp:", P_UDP: "udp:"}.get(ptype, f"0x{ptype:04x}:")
    return f"{proto}{','.join(addrs)}:{port}"


def parse_response(msg):
    """-> (list of (pe_id, 'addr:port'), list of error cause codes)."""
    if len(msg) < 4:
        raise ValueError("short message")
    mtype, _flags, mlen = struct.unpack_from("!BBH", msg, 0)
    if mtype != HANDLE_RESOLUTION_RESPONSE:
        raise ValueError(f"unexpected message type 0x{mtype:02x}")
    pes, errors = [], []
    for ptype, value in parse_tlvs(msg[4:mlen]):
        if ptype == P_POOL_ELEMENT:
            pe_id = struct.unpack_from("!I", value, 0)[0]
            where = "?"
            for ttype, tval in parse_tlvs(value[12:]):   # first TLV = user transport
                where = describe_transport(ttype, tval)
                break
            pes.append((f"0x{pe_id:08x}", where))
        elif ptype == P_OPERATION_ERROR:
            for ctype, _cval in parse_tlvs(value):
                errors.append(f"0x{ctype:04x}")
    return pes, errors


def request(pool, items):
    req = tlv(P_POOL_HANDLE, pool.encode())
    if items:
        req += tlv(P_HR_OPTION, struct.pack("!I", items))
    return struct.pack("!BBH", HANDLE_RESOLUTION, 0, 4 + len(req)) + req


def resolve(registrar, pool, items, timeout, count=1):
    """`count` resolutions over ONE association, as a pool user keeps its association to
    its home registrar (RFC 5352 §3.3; RSPLIB's PUs do). Returns a list of answers."""
    msg = request(pool, items)
    family = socket.AF_INET6 if ":" in registrar[0] else socket.AF_INET
    answers = []
    with socket.socket(family, socket.SOCK_STREAM, IPPROTO_SCTP) as s:
        s.settimeout(timeout)
        s.connect(registrar)
        for _ in range(count):
            # struct sctp_sndinfo { u16 sid; u16 flags; u32 ppid (network order); u32 context; u32 assoc_id }
            s.sendmsg([msg], [(IPPROTO_SCTP, SCTP_SNDINFO,
                               struct.pack("=HHIII", 0, 0, socket.htonl(PPID_ASAP), 0, 0))])
            data = s.recv(65536)   # one-to-one SCTP keeps message boundaries
            if not data:
                raise ValueError("association closed without an answer")
            answers.append(parse_response(data))
    return answers


def short(registrar, pool, items, timeout, count=1):
    """Resolutions as short tokens: ids joined by ',', error:CAUSE or fail:REASON."""
    try:
        answers = resolve(registrar, pool, items, timeout, count)
    except (OSError, ValueError) as e:
        return " ".join(["fail:" + (type(e).__name__ + ":" + str(e)).replace(" ", "_")] * count)
    tokens = []
    for pes, errors in answers:
        tokens.append(",".join(pe for pe, _ in pes) if pes else "error:" + (",".join(errors) or "none"))
    return " ".join(tokens)


def parse_registrar(text):
    host, _, port = text.rpartition(":")
    return (host.strip("[]"), int(port))


def split_registrars(words, nargs, default):
    """The command's arguments and its registrars (the optional last word)."""
    if len(words) > nargs + 1:
        return words[1:nargs + 1], [(r, parse_registrar(r)) for r in words[nargs + 1].split(",")]
    return words[1:nargs + 1], [default]


def ids_of(got):
    return set() if ":" in got else set(got.split(","))


def serve(registrar, pool, timeout):
    default = (f"{registrar[0]}:{registrar[1]}", registrar)
    for line in sys.stdin:
        words = line.split()
        try:
            if words[:1] == ["resolve"]:
                (count, items), regs = split_registrars(words, 2, default)
                answer = "OK " + " | ".join(short(r, pool, int(items), timeout, int(count))
                                            for _, r in regs)
            elif words[:1] == ["members"]:
                (limit, want), regs = split_registrars(words, 2, default)
                limit = float(limit)
                want = set() if want == "-" else set(want.split(","))
                t0 = time.monotonic()
                pending = list(regs)
                last = {}
                while True:
                    for name, r in list(pending):
                        got = short(r, pool, ALL_ITEMS, timeout)
                        last[name] = got
                        if ids_of(got) == want and not got.startswith("fail:"):
                            pending.remove((name, r))
                    dt = time.monotonic() - t0
                    if len(regs) == 1:
                        shown = last[regs[0][0]]
                    else:
                        shown = " ".join(f"{name}={last[name]}" for name, _ in regs)
                    if not pending:
                        answer = f"OK {dt:.2f} {shown}"
                        break
                    if dt > limit:
                        answer = f"TIMEOUT {dt:.2f} {shown}"
                        break
                    time.sleep(0.1)
            elif words[:1] == ["holds"]:
                (secs, want), regs = split_registrars(words, 2, default)
                secs = float(secs)
                want = set() if want == "-" else set(want.split(","))
                t0 = time.monotonic()
                polls = 0
                answer = None
                while answer is None and time.monotonic() - t0 < secs:
                    for name, r in regs:
                        got = short(r, pool, ALL_ITEMS, timeout)
                        polls += 1
                        if ids_of(got) != want or got.startswith("fail:"):
                            answer = f"FAIL {time.monotonic() - t0:.2f} {name} {got}"
                            break
                    time.sleep(0.2)   # each poll is a new association: ~11 packets
                if answer is None:
                    answer = f"OK {polls}"
            else:
                answer = "BAD unknown command"
        except (IndexError, ValueError) as e:
            answer = f"BAD {e}"
        print(answer, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--registrar", default="192.0.2.1:3863")
    ap.add_argument("--pool", default="EchoPool")
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--items", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=5.0, help="per request, seconds")
    ap.add_argument("--serve", action="store_true", help="answer commands from stdin")
    a = ap.parse_args()
    registrar = parse_registrar(a.registrar)
    if a.serve:
        serve(registrar, a.pool, a.timeout)
        return 0
    ok = True
    for _ in range(a.count):
        try:
            pes, errors = resolve(registrar, a.pool, a.items, a.timeout)[0]
            if pes:
                print(" ".join(f"PE {pe}@{where}" for pe, where in pes), flush=True)
            else:
                print("ERROR cause=" + (",".join(errors) or "none"), flush=True)
        except (OSError, ValueError) as e:
            print(f"FAIL {type(e).__name__}: {e}", flush=True)
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
