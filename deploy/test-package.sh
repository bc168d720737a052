#!/usr/bin/env bash
# The package test (deploy/README.md "Testing the package"); needs root.
#   1. systemd-analyze verify on the unit (ExecStart pointed at the built binary);
#   2. builds the package (deploy/build-package.sh; --no-build: package target/release);
#   3. installs it with dpkg -i into a clean minimal Debian (debootstrap --variant=minbase
#      bookworm, made once and cached in /var/cache/rserpool-cleanroot; each run works
#      on a fresh copy), where no systemd runs: the maintainer scripts must cope;
#   4. starts the INSTALLED registrar in that root with the INSTALLED config and checks
#      from the host that it registers a PE and answers its resolution over TCP, and that
#      its metrics endpoint answers.
# Prints the package size and the time from dpkg -i to the first answered resolution.
# The registrar binds what the installed config says (0.0.0.0:3863, metrics
# 127.0.0.1:9464) in the host's network: the test refuses to run if those are taken.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" -eq 0 ] || { echo "test-package: needs root (debootstrap, chroot, mount)" >&2; exit 1; }
cache=/var/cache/rserpool-cleanroot
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
step() { printf '\n--> %s\n' "$*"; }

build_flag=()
[ "${1:-}" = "--no-build" ] && build_flag=(--no-build)

work=$(mktemp -d /var/tmp/rserpool-pkgtest.XXXXXX)
root=$work/root
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  if mountpoint -q "$root/proc" 2>/dev/null; then umount -l "$root/proc" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

step "package: building"
deb=$(deploy/build-package.sh "${build_flag[@]}" | tail -n1)

step "systemd-analyze verify deploy/rserpool-registrar.service"
# verify checks that ExecStart's binary exists: point a copy at the one just built.
mkdir -p "$work/unit"
sed "s|/usr/bin/rserpool-registrar|$PWD/target/release/rserpool-registrar|" \
  deploy/rserpool-registrar.service >"$work/unit/rserpool-registrar.service"
systemd-analyze verify "$work/unit/rserpool-registrar.service"
systemd-analyze security --offline=yes "$work/unit/rserpool-registrar.service" 2>/dev/null |
  grep 'Overall exposure' || true

if [ ! -d "$cache" ]; then
  step "clean root: debootstrap --variant=minbase bookworm (once, into $cache)"
  command -v debootstrap >/dev/null || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  }
  rm -rf "$cache.tmp"
  debootstrap --variant=minbase bookworm "$cache.tmp" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    tail -n 20 "$work/debootstrap.log" >&2
    exit 1
  }
  mv "$cache.tmp" "$cache"
fi

for port in 3863 9464; do
  if ss -Htln "sport = :$port" | grep -q .; then
    echo "test-package: TCP port $port is taken on this host; the installed config needs it" >&2
    exit 1
  fi
done

step "clean root: fresh copy"
cp -a "$cache" "$root"
cp "$deb" "$root/tmp/pkg.deb"
mount -t proc proc "$root/proc"

step "dpkg -i in the clean root (no systemd there), then the installed registrar"
# A host address, not loopback: the installed config refuses loopback PEs.
host=$(hostname -I 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9]+\.[0-9.]+$' | head -n1 || true)
host=${host:-127.0.0.1}
t0=$(date +%s.%N)
chroot "$root" dpkg -i /tmp/pkg.deb
chroot "$root" /usr/bin/rserpool-registrar --version
for f in /etc/rserpool/registrar.toml /lib/systemd/system/rserpool-registrar.service \
  /usr/bin/rserpool-loadgen /usr/share/doc/rserpool/copyright; do
  [ -e "$root$f" ] || { echo "test-package: $f is not installed" >&2; exit 1; }
done
if command -v help2man >/dev/null; then
  for b in rserpool-registrar rserpool-loadgen; do
    [ -e "$root/usr/share/man/man1/$b.1.gz" ] || { echo "test-package: no man page for $b" >&2; exit 1; }
  done
fi
chroot "$root" /usr/bin/rserpool-registrar --config /etc/rserpool/registrar.toml \
  >"$work/registrar.log" 2>&1 &
pid=$!
if ! deploy/asap-check.py "$host:3863" --timeout 60 --metrics 127.0.0.1:9464; then
  echo "test-package: the installed registrar did not answer; its log:" >&2
  cat "$work/registrar.log" >&2
  exit 1
fi
t1=$(date +%s.%N)

step "installed registrar: SIGTERM"
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=
if [ "$rc" -ne 0 ]; then
  echo "test-package: the registrar exited with $rc; its log:" >&2
  cat "$work/registrar.log" >&2
  exit 1
fi
chroot "$root" dpkg -r rserpool >/dev/null
chroot "$root" dpkg -P rserpool >/dev/null

size=$(stat -c %s "$deb")
printf '\npackage %s: %s bytes (%s KiB), installed %s KiB\n' "$(basename "$deb")" "$size" \
  "$((size / 1024))" "$(dpkg-deb -f "$deb" Installed-Size)"
awk -v a="$t0" -v b="$t1" 'BEGIN { printf "install to first answered resolution: %.2f s (dpkg -i, start, register, resolve)\n", b - a }'
echo "test-package: OK"
