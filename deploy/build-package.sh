#!/usr/bin/env bash
# Builds the release binaries and the Debian package target/debian/rserpool_VERSION_ARCH.deb
# (deploy/README.md "Package"). Needs cargo, dpkg-deb, objcopy; help2man if present
# (man pages from --help). Prints the package's path on its last line.
#
# Usage: deploy/build-package.sh [--no-build]   (--no-build: package target/release as is)
#
# The tree is assembled here and packed with dpkg-deb rather than by cargo-deb: the
# same result without a tool to compile first (cargo-deb takes minutes to build on a
# small machine), and every file's place is visible below.
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
[ "${1:-}" = "--no-build" ] && build=0
if [ "$build" -eq 1 ]; then
  cargo build --release --locked -p rserpool-shards -p rserpool-loadgen
fi

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
arch=$(dpkg --print-architecture)
out=target/debian
root=$out/rserpool_${version}_${arch}
rm -rf "$root"
mkdir -p "$root/DEBIAN" "$root/usr/bin" "$root/etc/rserpool" \
  "$root/lib/systemd/system" "$root/usr/share/doc/rserpool" "$root/usr/share/man/man1"

# Binaries without DWARF (the release profile keeps line tables for profiling); the
# symbols stay, so backtraces still name functions.
for bin in rserpool-registrar rserpool-loadgen; do
  objcopy --strip-debug "target/release/$bin" "$root/usr/bin/$bin"
  chmod 755 "$root/usr/bin/$bin"
done

# The example config, every option at its default, with the metrics endpoint on
# loopback: the registrar starts from it as installed.
sed 's|^# listen = "127.0.0.1:9464"$|listen = "127.0.0.1:9464"|' deploy/registrar.toml \
  >"$root/etc/rserpool/registrar.toml"
grep -q '^listen = "127.0.0.1:9464"$' "$root/etc/rserpool/registrar.toml" || {
  echo "build-package: the metrics line of deploy/registrar.toml moved" >&2
  exit 1
}
chmod 644 "$root/etc/rserpool/registrar.toml"
install -m 644 deploy/rserpool-registrar.service "$root/lib/systemd/system/"

doc=$root/usr/share/doc/rserpool
install -m 644 README.md "$doc/README.md"
install -m 644 deploy/README.md "$doc/README.deploy.md"
install -m 644 deploy/copyright "$doc/copyright"
commit=$(target/release/rserpool-registrar --version | sed -n 's/.*(commit \(.*\))$/\1/p')
{
  printf 'rserpool (%s) unstable; urgency=medium\n\n' "$version"
  printf '  * Built from commit %s.\n\n' "${commit:-unknown}"
  printf ' -- rserpool maintainers <rserpool@example.invalid>  %s\n' "$(date -R)"
} | gzip -9n >"$doc/changelog.Debian.gz"

if command -v help2man >/dev/null; then
  for bin in rserpool-registrar rserpool-loadgen; do
    help2man --no-info --name="$(target/release/$bin --help | head -n1)" \
      "target/release/$bin" | gzip -9n >"$root/usr/share/man/man1/$bin.1.gz"
  done
else
  rmdir "$root/usr/share/man/man1" "$root/usr/share/man"
fi

# The C library version the binaries need: the newest GLIBC_ symbol version they use.
glibc=$(objdump -T "$root"/usr/bin/* | sed -n 's/.*GLIBC_\([0-9.]*\).*/\1/p' | sort -Vu | tail -n1)
installed_kb=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<EOF
Package: rserpool
Version: $version
Architecture: $arch
Maintainer: rserpool maintainers <rserpool@example.invalid>
Installed-Size: $installed_kb
Depends: libc6 (>= $glibc), libgcc-s1
Section: net
Priority: optional
Homepage: https://example.invalid/rserpool
Description: RSerPool pool registrar (ENRP server) and load generator
 rserpool-registrar is a Reliable Server Pooling registrar (RFC 5351-5356):
 pool elements register under a pool handle over ASAP, pool users resolve
 handles, and registrars keep one handlespace over ENRP. It serves ASAP and
 ENRP over kernel SCTP, TCP and TLS, thread-per-core on io_uring, runs as the
 systemd service rserpool-registrar (Type=notify, watchdog, sandboxed) and
 exports Prometheus metrics.
 .
 rserpool-loadgen drives any registrar (ours or RSPLIB's) with simulated pool
 elements and pool users and reports latency and failover figures.
EOF
echo /etc/rserpool/registrar.toml >"$root/DEBIAN/conffiles"
for script in postinst prerm postrm; do
  install -m 755 "deploy/debian/$script" "$root/DEBIAN/$script"
done

deb=$out/rserpool_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
