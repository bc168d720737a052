#!/usr/bin/env bash
# Resident memory of the registrar under two connection-level attacks, and after them:
#
#   bench/abuse-rss.sh [--conns 2000] [--hogs 300] [--secs 12] [--bin PATH] [-- REGISTRAR-FLAGS...]
#
# slowloris: --conns connections each announce a 65,532-byte message and then send one
#   byte per second for --secs seconds (longer than the default message timeout, 10 s).
# never-reading: --hogs connections pipeline handle resolutions as fast as they can for
#   --secs seconds and never read; meanwhile one well-behaved client times its
#   resolutions (the worst round trip is printed).
# RSS (VmRSS, KiB) is read before, during (at the attack's peak) and 2 s after the
# registrar closed the attackers' last connection; the registrar's connection counters from /metrics are printed too.
# Two shards, loopback TCP. --bin measures another build (e.g. an older one).
set -euo pipefail
cd "$(dirname "$0")/.."
conns=2000 hogs=300 secs=12 bin=""
while [ $# -gt 0 ]; do
  case "$1" in
    --conns) conns=$2; shift 2 ;;
    --hogs) hogs=$2; shift 2 ;;
    --secs) secs=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "abuse-rss: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$bin" ]; then
  cargo build --release -q -p rserpool-shards --bin rserpool-registrar
  bin=target/release/rserpool-registrar
fi
log=$(mktemp)
pid=""
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null || true; rm -f "$log"' EXIT
ulimit -n "$(ulimit -Hn)"

. bench/lib.sh

p=$(port) m=$(port)
"$bin" --shards 2 --no-pin --allow-loopback --asap "tcp://127.0.0.1:$p" \
  --metrics "127.0.0.1:$m" --log-level error "$@" >"$log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$m/metrics" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
sleep 1

python3 - "$pid" "$p" "$m" "$conns" "$hogs" "$secs" <<'PY'
import socket, sys, time, urllib.request

pid, port, mport, conns, hogs, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3], *map(int, sys.argv[4:])
addr = ("127.0.0.1", port)

def rss():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

def counters():
    text = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=10).read().decode()
    return [l for l in text.splitlines()
            if l.startswith(("rserpool_connections_", "rserpool_broken_framing")) and not l.endswith(" 0")]

# ASAP_HANDLE_RESOLUTION of the unknown pool "pool": answered with an error (36 bytes).
REQ = bytes.fromhex("0500000c0009000870 6f6f6c".replace(" ", ""))

def settle():
    # Until every connection is gone (older builds without the gauge: 2 s), and 1 s more.
    end = time.time() + 30
    while time.time() < end:
        if not any(l.startswith("rserpool_connections_open") for l in counters()):
            break
        time.sleep(0.2)
    time.sleep(2)

def report(name, before, peak, after):
    print(f"{name:14} before {before:>9} KiB  peak {peak:>9} KiB  after {after:>9} KiB")

# Slowloris.
before = rss()
socks = []
for _ in range(conns):
    s = socket.create_connection(addr)
    s.sendall(bytes([0x05, 0, 0xff, 0xfc]))
    socks.append(s)
peak = rss()
for _ in range(secs):
    time.sleep(1)
    alive = []
    for s in socks:
        try:
            s.send(b"\0")
            alive.append(s)
        except OSError:
            s.close()
    socks = alive
    peak = max(peak, rss())
print(f"slowloris: {conns} connections, {len(socks)} still open after {secs} s")
for s in socks:
    s.close()
settle()
report("slowloris", before, peak, rss())

# Never-reading pipelining clients, and one client that reads.
before = rss()
hs = []
for _ in range(hogs):
    s = socket.create_connection(addr)
    s.setblocking(False)
    hs.append(s)
batch = REQ * 4096
stop = time.time() + secs
# In its own process: the flooding loop here holds Python's lock.
TIMED = """
import socket, sys, time
port, secs, req = int(sys.argv[1]), float(sys.argv[2]), bytes.fromhex(sys.argv[3])
c = socket.create_connection(("127.0.0.1", port)); c.settimeout(60)
worst, stop = 0.0, time.time() + secs
while time.time() < stop:
    t = time.perf_counter(); c.sendall(req); got = b""
    while len(got) < 4 or len(got) < int.from_bytes(got[2:4], "big"):
        more = c.recv(65536)
        if not more:
            sys.exit("the reading client's connection was closed by the registrar")
        got += more
    worst = max(worst, time.perf_counter() - t); time.sleep(0.01)
print(worst)
"""
import subprocess
timed = subprocess.Popen([sys.executable, "-c", TIMED, str(port), str(secs), REQ.hex()],
                         stdout=subprocess.PIPE, text=True)
peak = rss()
closed = 0
while time.time() < stop:
    for s in hs:
        try:
            s.send(batch)
        except BlockingIOError:
            pass
        except OSError:
            pass
    peak = max(peak, rss())
worst = float(timed.communicate()[0] or "nan")
for s in hs:
    s.close()
settle()
report("never-reading", before, peak, rss())
print(f"never-reading: {hogs} clients for {secs} s; a reading client's worst round trip {worst*1000:.1f} ms")
for line in counters():
    print(line)
PY
kill -TERM "$pid"
wait "$pid" || true
pid=""
