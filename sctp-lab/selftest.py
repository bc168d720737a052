#!/usr/bin/python3
"""SCTP lab self-test: run inside the VM (run.sh -- python3 selftest.py).

Checks kernel SCTP (one-to-many SOCK_SEQPACKET with PPIDs via SCTP_SNDINFO /
SCTP_RCVINFO ancillary data, one-to-one SOCK_STREAM), and io_uring (a NOP,
then SEND/RECV on an SCTP socket).  Prints one line per check and
'N passed, N failed' at the end; exit status 0 only if all passed.
Only loopback addresses are used.
"""
import ctypes
import mmap
import os
import socket
import struct
import sys
import time

IPPROTO_SCTP = getattr(socket, "IPPROTO_SCTP", 132)
SCTP_NODELAY = 3
SCTP_RECVRCVINFO = 32
SCTP_SNDINFO = 2  # cmsg type
SCTP_RCVINFO = 3  # cmsg type
ROUNDS = int(os.environ.get("SELFTEST_ROUNDS", "1000"))

results = []


def check(name):
    def deco(fn):
        t0 = time.monotonic()
        try:
            detail = fn() or ""
            ok = True
        except Exception as e:  # noqa: BLE001 - report any failure
            detail = f"{type(e).__name__}: {e}"
            ok = False
        dt = time.monotonic() - t0
        results.append(ok)
        print(f"{'PASS' if ok else 'FAIL'} {name} ({dt:.2f}s) {detail}", flush=True)
        return fn
    return deco


def sndinfo(ppid, sid=0):
    # struct sctp_sndinfo { u16 sid; u16 flags; u32 ppid; u32 context; u32 assoc_id; }
    # ppid is carried in network byte order, as with sctp_sendmsg().
    return [(IPPROTO_SCTP, SCTP_SNDINFO,
             struct.pack("=HHIII", sid, 0, socket.htonl(ppid), 0, 0))]


def parse_rcvinfo(ancdata):
    for level, typ, data in ancdata:
        if level == IPPROTO_SCTP and typ == SCTP_RCVINFO:
            # struct sctp_rcvinfo { u16 sid; u16 ssn; u16 flags; u32 ppid; u32 tsn;
            #                       u32 cumtsn; u32 context; u32 assoc_id; }
            sid, ssn, flags, ppid, tsn, cumtsn, ctx, assoc = struct.unpack("=HHHxxIIIII", data[:28])
            return {"sid": sid, "ppid": socket.ntohl(ppid), "assoc_id": assoc}
    return None


@check("kernel has SCTP (/proc/net/sctp)")
def _():
    if not os.path.isdir("/proc/net/sctp"):
        raise RuntimeError("no /proc/net/sctp")
    return os.uname().release


@check("one-to-many SOCK_SEQPACKET echo with PPID 11 (ASAP)")
def _():
    srv = socket.socket(socket.AF_INET, socket.SOCK_SEQPACKET, IPPROTO_SCTP)
    srv.setsockopt(IPPROTO_SCTP, SCTP_RECVRCVINFO, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    cli = socket.socket(socket.AF_INET, socket.SOCK_SEQPACKET, IPPROTO_SCTP)
    cli.setsockopt(IPPROTO_SCTP, SCTP_RECVRCVINFO, 1)
    cli.bind(("127.0.0.2", 0))  # a second loopback address
    for s in (srv, cli):
        s.settimeout(10)
    cli.sendmsg([b"hello-asap"], sndinfo(11), 0, ("127.0.0.1", port))
    data, anc, flags, addr = srv.recvmsg(4096, 256)
    info = parse_rcvinfo(anc)
    assert data == b"hello-asap", data
    assert info and info["ppid"] == 11, info
    srv.sendmsg([data.upper()], sndinfo(12), 0, addr)
    data2, anc2, _, _ = cli.recvmsg(4096, 256)
    info2 = parse_rcvinfo(anc2)
    assert data2 == b"HELLO-ASAP" and info2["ppid"] == 12, (data2, info2)
    cli.close()
    srv.close()
    return f"peer {addr[0]}:{addr[1]} assoc_id={info['assoc_id']} ppids 11/12 ok"


@check(f"one-to-one SOCK_STREAM echo, {ROUNDS} round trips")
def _():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_SCTP)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    cli = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_SCTP)
    cli.setsockopt(IPPROTO_SCTP, SCTP_NODELAY, 1)
    cli.settimeout(10)
    cli.connect(("127.0.0.1", port))
    conn, _ = srv.accept()
    conn.settimeout(10)
    conn.setsockopt(IPPROTO_SCTP, SCTP_NODELAY, 1)
    t0 = time.monotonic()
    for i in range(ROUNDS):
        msg = b"m%06d" % i
        cli.send(msg)
        got = conn.recv(4096)  # SCTP keeps message boundaries
        assert got == msg, (got, msg)
        conn.send(got)
        assert cli.recv(4096) == msg
    dt = time.monotonic() - t0
    for s in (cli, conn, srv):
        s.close()
    return f"{ROUNDS / dt:.0f} round trips/s"


@check("one-to-one over IPv6 ::1")
def _():
    srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM, IPPROTO_SCTP)
    srv.bind(("::1", 0))
    srv.listen(1)
    cli = socket.socket(socket.AF_INET6, socket.SOCK_STREAM, IPPROTO_SCTP)
    cli.settimeout(10)
    cli.connect(("::1", srv.getsockname()[1]))
    conn, _ = srv.accept()
    cli.send(b"v6")
    assert conn.recv(16) == b"v6"
    for s in (cli, conn, srv):
        s.close()


# ---- io_uring via raw syscalls (x86_64 numbers) ---------------------------
SYS_io_uring_setup = 425
SYS_io_uring_enter = 426
IORING_OFF_SQ_RING = 0
IORING_OFF_CQ_RING = 0x8000000
IORING_OFF_SQES = 0x10000000
IORING_ENTER_GETEVENTS = 1
IORING_OP_NOP = 0
IORING_OP_SEND = 26
IORING_OP_RECV = 27

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


class Ring:
    def __init__(self, entries=8):
        params = ctypes.create_string_buffer(120)
        fd = libc.syscall(SYS_io_uring_setup, ctypes.c_uint(entries), params)
        if fd < 0:
            e = ctypes.get_errno()
            raise OSError(e, "io_uring_setup: " + os.strerror(e))
        self.fd = fd
        p = params.raw
        sq_entries, cq_entries = struct.unpack_from("=II", p, 0)
        # sq_off at 40: head, tail, ring_mask, ring_entries, flags, dropped, array, resv1, resv2(u64)
        self.sq_off = struct.unpack_from("=7I", p, 40)
        # cq_off at 80: head, tail, ring_mask, ring_entries, overflow, cqes, flags, resv1, resv2
        self.cq_off = struct.unpack_from("=7I", p, 80)
        sq_size = self.sq_off[6] + sq_entries * 4
        cq_size = self.cq_off[5] + cq_entries * 16
        self.sq = mmap.mmap(fd, sq_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE,
                            offset=IORING_OFF_SQ_RING)
        self.cq = mmap.mmap(fd, cq_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE,
                            offset=IORING_OFF_CQ_RING)
        self.sqes = mmap.mmap(fd, sq_entries * 64, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE,
                              offset=IORING_OFF_SQES)

    def u32(self, m, off, val=None):
        if val is None:
            return struct.unpack_from("=I", m, off)[0]
        struct.pack_into("=I", m, off, val)

    def submit_one(self, opcode, fd=0, addr=0, length=0, user_data=1):
        head_o, tail_o, mask_o, _, _, _, array_o = self.sq_off
        tail = self.u32(self.sq, tail_o)
        idx = tail & self.u32(self.sq, mask_o)
        sqe = struct.pack("=BBHiQQIIQ", opcode, 0, 0, fd, 0, addr, length, 0, user_data)
        self.sqes[idx * 64: idx * 64 + 64] = sqe.ljust(64, b"\0")
        self.u32(self.sq, array_o + idx * 4, idx)
        self.u32(self.sq, tail_o, tail + 1)
        n = libc.syscall(SYS_io_uring_enter, self.fd, 1, 1, IORING_ENTER_GETEVENTS, None, 0)
        if n < 0:
            e = ctypes.get_errno()
            raise OSError(e, "io_uring_enter: " + os.strerror(e))
        chead_o, ctail_o, cmask_o, _, _, cqes_o, _ = self.cq_off
        chead = self.u32(self.cq, chead_o)
        assert self.u32(self.cq, ctail_o) != chead, "no completion"
        cidx = chead & self.u32(self.cq, cmask_o)
        ud, res, _flags = struct.unpack_from("=QiI", self.cq, cqes_o + cidx * 16)
        self.u32(self.cq, chead_o, chead + 1)
        assert ud == user_data, ud
        return res


@check("io_uring NOP")
def _():
    disabled = "/proc/sys/kernel/io_uring_disabled"
    note = f"io_uring_disabled={open(disabled).read().strip()}" if os.path.exists(disabled) \
        else "(no io_uring_disabled sysctl in this kernel)"
    r = Ring()
    res = r.submit_one(IORING_OP_NOP)
    assert res == 0, res
    os.close(r.fd)
    return note


@check("io_uring SEND/RECV on an SCTP one-to-one socket")
def _():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_SCTP)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    cli = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_SCTP)
    cli.settimeout(10)
    cli.connect(("127.0.0.1", srv.getsockname()[1]))
    conn, _ = srv.accept()
    r = Ring()
    out = ctypes.create_string_buffer(b"via-io_uring")
    res = r.submit_one(IORING_OP_SEND, cli.fileno(), ctypes.addressof(out), 12, 2)
    assert res == 12, res
    inb = ctypes.create_string_buffer(64)
    res = r.submit_one(IORING_OP_RECV, conn.fileno(), ctypes.addressof(inb), 64, 3)
    assert res == 12 and inb.raw[:12] == b"via-io_uring", (res, inb.raw[:12])
    os.close(r.fd)
    for s in (cli, conn, srv):
        s.close()


passed = sum(results)
failed = len(results) - passed
print(f"{passed} passed, {failed} failed")
sys.exit(0 if failed == 0 else 1)
