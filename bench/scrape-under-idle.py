#!/usr/bin/env python3
"""Scrape time of the metrics endpoint while idle and slow clients hold connections.

    bench/scrape-under-idle.py [--bin PATH] [--idle 100] [--slow 5] [--scrapes 20]
    bench/scrape-under-idle.py --url http://127.0.0.1:9464/metrics   (a running one)

Starts the registrar (two shards, loopback TCP, metrics on a free port) unless --url
is given, opens --idle TCP connections to the metrics port that send nothing and
--slow ones that send a request one byte every 1.5 s, then times --scrapes scrapes
with curl (one after the other) and prints min / median / max in milliseconds. Every
connection stays on loopback; the whole run is bounded (each curl has a 30 s cap).
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_up(url, proc, seconds=60):
    end = time.time() + seconds
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            sys.exit(f"registrar exited with {proc.returncode}")
        r = subprocess.run(["curl", "-sf", "-m", "2", url], capture_output=True)
        if r.returncode == 0:
            return
        time.sleep(0.1)
    sys.exit(f"{url} did not answer within {seconds} s")


def dribble(host, port, stop):
    """Sends a request head one byte per 1.5 s, reconnecting when cut off."""
    request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    while not stop.is_set():
        try:
            s = socket.create_connection((host, port), timeout=5)
            for b in request:
                if stop.wait(1.5):
                    break
                s.send(bytes([b]))
            s.close()
        except OSError:
            stop.wait(0.2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default="target/release/rserpool-registrar")
    ap.add_argument("--url")
    ap.add_argument("--idle", type=int, default=100)
    ap.add_argument("--slow", type=int, default=5)
    ap.add_argument("--scrapes", type=int, default=20)
    a = ap.parse_args()

    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    proc = None
    if a.url:
        url = a.url
    else:
        m = free_port()
        url = f"http://127.0.0.1:{m}/metrics"
        proc = subprocess.Popen(
            [a.bin, "--shards", "2", "--no-pin", "--allow-loopback",
             "--asap", f"tcp://127.0.0.1:{free_port()}",
             "--metrics", f"127.0.0.1:{m}", "--log-level", "error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_up(url, proc)
        u = urllib.parse.urlparse(url)
        host, port = u.hostname, u.port
        idle = [socket.create_connection((host, port)) for _ in range(a.idle)]
        stop = threading.Event()
        slow = [threading.Thread(target=dribble, args=(host, port, stop), daemon=True)
                for _ in range(a.slow)]
        for t in slow:
            t.start()
        time.sleep(0.5)
        times = []
        for _ in range(a.scrapes):
            t0 = time.perf_counter()
            r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-m", "30",
                                "-w", "%{http_code}", url], capture_output=True, text=True)
            dt = (time.perf_counter() - t0) * 1000
            if r.stdout != "200":
                print(f"scrape failed: {r.stdout!r} after {dt:.0f} ms", file=sys.stderr)
            times.append(dt)
        stop.set()
        for s in idle:
            s.close()
        print(f"{a.idle} idle + {a.slow} slow clients, {a.scrapes} scrapes (ms): "
              f"min {min(times):.1f}  median {statistics.median(times):.1f}  "
              f"max {max(times):.1f}")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
