#!/usr/bin/env bash
# setup.sh - prepare the SCTP lab: host packages, a Debian kernel with SCTP
# modules, and a busybox initramfs.  Idempotent; a no-op (~0.1 s) when the
# cache is complete and was built by this exact version of this script.
# Must run as root when packages are missing (CI: no TTY needed, apt runs
# non-interactively; its output goes to a log that is shown only on failure).
#
#   setup.sh [--force] [--refresh-kernel] [--no-extras] [--print-ready]
#
#   --force           rebuild the initramfs even if the cache looks complete
#   --refresh-kernel  download the kernel again (newest linux-image-amd64)
#   --no-extras       do not install rsplib-* / tshark (only what the VM needs)
#   --print-ready     print the path of the ready file (read by run.sh) on stdout
#
# Environment: SCTP_LAB_CACHE (default /var/cache/sctp-lab),
#              SCTP_LAB_KERNEL_PKG (e.g. linux-image-6.1.0-56-amd64; default:
#              whatever linux-image-amd64 depends on).
#
# The initramfs and the ready file are named after a hash of this script, so
# several versions of it (other checkouts, branches) share one cache and one
# kernel without rebuilding each other's initramfs.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd -P)
CACHE=${SCTP_LAB_CACHE:-/var/cache/sctp-lab}
FORCE=0
REFRESH_KERNEL=0
EXTRAS=1
PRINT_READY=0
for a in "$@"; do
  case $a in
    --force) FORCE=1 ;;
    --refresh-kernel) REFRESH_KERNEL=1; FORCE=1 ;;
    --no-extras) EXTRAS=0 ;;
    --print-ready) PRINT_READY=1 ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument: $a" >&2; exit 2 ;;
  esac
done

log() { echo "sctp-lab setup: $*" >&2; }

# Packages the VM machinery needs on the host.
CORE_PKGS=(qemu-system-x86 busybox-static cpio kmod util-linux coreutils gzip xz-utils grep bash)
# Packages for RSerPool interop work (installed on the host; the VM sees the
# host's filesystem, so they are usable inside the VM too).
EXTRA_PKGS=(rsplib-registrar rsplib-tools rsplib-services tshark iproute2 procps python3)

# Modules loaded by the initramfs, with their dependencies (resolved by modprobe).
# Everything else can be modprobe'd inside the VM (the module tree is bind-mounted).
GUEST_MODULES=(virtio_pci 9pnet_virtio 9p overlay sctp inet_diag sctp_diag)

SELF_HASH=$(sha256sum "$HERE/setup.sh" | cut -c1-16)
READY=$CACHE/ready-$SELF_HASH
INITRD=$CACHE/initramfs-$SELF_HASH.cpio.gz

done_ok() {
  touch "$READY" 2>/dev/null || true    # in use: keep it from the 30-day cleanup
  if (( PRINT_READY )); then echo "$READY"; fi
  exit 0
}

cache_ready() {
  [[ -f $READY ]] || return 1
  # shellcheck disable=SC1090
  ( . "$READY"
    [[ ${SETUP_HASH:-} == "$SELF_HASH" && -f ${KERNEL:-/nonexistent} && -f ${INITRD:-/nonexistent} \
       && -d ${MODDIR:-/nonexistent} ]] )
}

missing_pkgs() {
  local p st
  for p in "$@"; do
    st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [[ $st == installed ]] || echo "$p"
  done
}

apt_updated=0
apt_update_once() {
  if (( ! apt_updated )); then
    log "apt-get update"
    timeout 300 apt-get update -qq >&2
    apt_updated=1
  fi
}

# Non-interactive, waits for a concurrent apt/dpkg instead of failing, keeps
# existing config files.
APT_OPTS=(-y -qq --no-install-recommends -o DPkg::Lock::Timeout=300
          -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

install_pkgs() {
  local miss removed apt_log rc=0 policy_added=0
  mapfile -t miss < <(missing_pkgs "$@")
  (( ${#miss[@]} )) || return 0
  if (( EUID != 0 )); then
    log "missing packages: ${miss[*]} (run this script as root to install them)"
    exit 1
  fi
  apt_update_once
  # apt -y also removes conflicting packages; say so (e.g. a backported
  # qemu-utils conflicts with bookworm's qemu-system-x86).
  removed=$(apt-get -s "${APT_OPTS[@]}" install "${miss[@]}" 2>/dev/null | awk '/^Remv /{printf " %s", $2}')
  [[ -z $removed ]] || log "WARNING: installing these removes conflicting packages:$removed"
  # rsplib-registrar's postinst starts (and enables) a registrar daemon on the
  # host; we only want the binary.  Deny service starts unless a policy exists.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && policy_added=1
  fi
  log "installing: ${miss[*]}"
  apt_log=$(mktemp)
  DEBIAN_FRONTEND=noninteractive timeout 900 apt-get "${APT_OPTS[@]}" install "${miss[@]}" \
    </dev/null >"$apt_log" 2>&1 || rc=$?
  if (( policy_added )); then rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
  if (( rc )); then
    cat "$apt_log" >&2; rm -f "$apt_log"
    log "apt-get install failed (exit $rc)"; exit 1
  fi
  rm -f "$apt_log"
  if [[ " ${miss[*]} " == *" rsplib-registrar "* ]] && command -v update-rc.d >/dev/null; then
    update-rc.d rsplib-registrar disable >/dev/null 2>&1 || true
  fi
}

# --- fast path --------------------------------------------------------------
pkgs=("${CORE_PKGS[@]}")
(( EXTRAS )) && pkgs+=("${EXTRA_PKGS[@]}")
if (( ! FORCE )) && cache_ready && [[ -z $(missing_pkgs "${pkgs[@]}") ]]; then
  done_ok
fi

install_pkgs "${pkgs[@]}"

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock -w 900 9 || { log "could not lock $CACHE/.lock"; exit 1; }
# Another setup.sh may have finished while we waited for the lock.
if (( ! FORCE )) && cache_ready; then done_ok; fi

# --- kernel -------------------------------------------------------------------
KDIR=""
for d in "$CACHE"/kernel-*; do [[ -f $d/.complete ]] && KDIR=$d; done
if [[ -z $KDIR || $REFRESH_KERNEL == 1 ]]; then
  kpkg=${SCTP_LAB_KERNEL_PKG:-}
  if [[ -z $kpkg ]]; then
    kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    if [[ -z $kpkg ]]; then
      apt_update_once
      kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    fi
  fi
  [[ -n $kpkg ]] || { log "cannot determine the kernel package"; exit 1; }
  log "downloading $kpkg"
  dl=$(mktemp -d "$CACHE/dl.XXXXXX")
  if ! ( cd "$dl" && timeout 600 apt-get -qq -o APT::Sandbox::User=root download "$kpkg" >&2 ); then
    apt_update_once
    ( cd "$dl" && timeout 600 apt-get -qq -o APT::Sandbox::User=root download "$kpkg" >&2 )
  fi
  deb=$(ls "$dl"/*.deb)
  kver=${kpkg#linux-image-}
  new="$CACHE/kernel-$kver"
  rm -rf "$new"
  log "unpacking $(basename "$deb")"
  dpkg -x "$deb" "$new"
  rm -rf "$dl"
  [[ -f $new/boot/vmlinuz-$kver ]] || { log "no vmlinuz-$kver in $deb"; exit 1; }
  depmod -b "$new" "$kver"
  touch "$new/.complete"
  for d in "$CACHE"/kernel-*; do [[ $d != "$new" ]] && rm -rf "$d"; done
  KDIR=$new
fi
KVER=${KDIR##*/kernel-}
MODDIR=$KDIR/lib/modules/$KVER
[[ -d $MODDIR ]] || MODDIR=$KDIR/usr/lib/modules/$KVER

# --- uncompressed kernel -------------------------------------------------------------
# qemu can boot the uncompressed ELF vmlinux directly through its PVH entry point
# (CONFIG_PVH=y).  That skips the real-mode setup and the in-guest xz
# decompression, which costs ~3 s under TCG emulation.
KERNEL=$KDIR/boot/vmlinuz-$KVER
if grep -q '^CONFIG_PVH=y' "$KDIR/boot/config-$KVER" 2>/dev/null; then
  if [[ ! -s $KDIR/vmlinux ]]; then
    off=$(LC_ALL=C grep -obUaP '\xfd\x37\x7a\x58\x5a\x00' "$KERNEL" | head -n1 | cut -d: -f1 || true)
    if [[ -n $off ]]; then
      tail -c +$((off + 1)) "$KERNEL" | xz -dc --single-stream > "$KDIR/vmlinux.tmp" 2>/dev/null || true
      if [[ $(head -c4 "$KDIR/vmlinux.tmp" | od -An -c | tr -d ' ') == 177ELF ]]; then
        mv "$KDIR/vmlinux.tmp" "$KDIR/vmlinux"
      else
        rm -f "$KDIR/vmlinux.tmp"
        log "could not extract vmlinux; booting the compressed kernel (slower)"
      fi
    fi
  fi
  [[ -s $KDIR/vmlinux ]] && KERNEL=$KDIR/vmlinux
fi

# --- initramfs ------------------------------------------------------------------
log "building initramfs for $KVER"
stage=$(mktemp -d "$CACHE/initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,mnt,newroot,lib/modules}
cp /bin/busybox "$stage/bin/busybox"
: > "$stage/modules.list"
declare -A seen=()
for m in "${GUEST_MODULES[@]}"; do
  while read -r kind path _; do
    [[ $kind == insmod ]] || continue
    b=$(basename "$path" .ko)
    [[ -n ${seen[$b]:-} ]] && continue
    seen[$b]=1
    cp "$path" "$stage/lib/modules/$b.ko"
    echo "$b" >> "$stage/modules.list"
  done < <(modprobe -S "$KVER" -d "$KDIR" --show-depends "$m" -C /dev/null)
done

cat > "$stage/init" <<'INIT'
#!/bin/busybox sh
# PID 1 of the SCTP lab VM (generated by setup.sh; do not edit the copy in the cache).
/bin/busybox --install -s
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys

halt_vm() { sync; poweroff -f; sleep 10; }
die() { echo "sctp-lab init: ERROR: $*"; halt_vm; }

while read -r m; do
  insmod "/lib/modules/$m.ko" 2>/dev/null || echo "sctp-lab init: warning: insmod $m failed"
done < /modules.list

O9P=trans=virtio,version=9p2000.L,msize=262144
mkdir -p /mnt/host /mnt/ctl /mnt/rw /newroot
mount -t 9p -o $O9P labctl /mnt/ctl || die "cannot mount the control share"
. /mnt/ctl/guest.conf || die "cannot read guest.conf"
mount -t 9p -o $O9P,ro,cache=${LAB_ROOT_CACHE:-loose} hostroot /mnt/host || die "cannot mount the host root"
mount -t tmpfs -o mode=0755 tmpfs /mnt/rw || die "tmpfs"
mkdir -p /mnt/rw/upper /mnt/rw/work
mount -t overlay overlay -o lowerdir=/mnt/host,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work /newroot \
  || die "cannot mount the overlay"
R=/newroot
mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount -t devtmpfs devtmpfs $R/dev
mkdir -p $R/dev/pts $R/dev/shm $R/dev/mqueue
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts $R/dev/pts
ln -sf pts/ptmx $R/dev/ptmx 2>/dev/null
# What udev would create; bash's <(...) needs /dev/fd.
ln -sf /proc/self/fd $R/dev/fd
ln -sf /proc/self/fd/0 $R/dev/stdin
ln -sf /proc/self/fd/1 $R/dev/stdout
ln -sf /proc/self/fd/2 $R/dev/stderr
mount -t tmpfs -o mode=1777 tmpfs $R/dev/shm
mount -t mqueue mqueue $R/dev/mqueue 2>/dev/null
mount -t tmpfs -o mode=0755 tmpfs $R/run
mkdir -p $R/run/lock $R/run/sctp-lab
mount -o bind /mnt/ctl $R/run/sctp-lab
if [ -n "$LAB_MODDIR" ] && [ -n "$LAB_MODTARGET" ] && [ -d "$R$LAB_MODDIR" ]; then
  mkdir -p "$R$LAB_MODTARGET" && mount -o bind,ro "$R$LAB_MODDIR" "$R$LAB_MODTARGET"
fi
i=0
while [ "$i" -lt "${LAB_RW_COUNT:-0}" ]; do
  eval "d=\$LAB_RW_$i"
  mount -t 9p -o $O9P,cache=mmap "rw$i" "$R$d" || die "cannot mount rw share $d"
  i=$((i + 1))
done
ip link set lo up
hostname sctp-lab
cut -d' ' -f1 /proc/uptime > /mnt/ctl/boot_uptime
# The RTC follows the host's clock: run.sh compares it with the guest's uptime
# to catch a guest clock that runs at the wrong rate.
cat /sys/class/rtc/rtc0/since_epoch > /mnt/ctl/boot_rtc 2>/dev/null
/bin/busybox env -i /bin/busybox chroot $R /bin/bash --noprofile --norc /run/sctp-lab/cmd.sh \
  </dev/null >>/mnt/ctl/stdout 2>>/mnt/ctl/stderr
rc=$?
cut -d' ' -f1 /proc/uptime > /mnt/ctl/end_uptime
cat /sys/class/rtc/rtc0/since_epoch > /mnt/ctl/end_rtc 2>/dev/null
dmesg | grep -iE 'tsc|clocksource|apic' > /mnt/ctl/clock.log 2>/dev/null
echo "$rc" > /mnt/ctl/rc.tmp && mv /mnt/ctl/rc.tmp /mnt/ctl/rc
halt_vm
INIT
chmod 755 "$stage/init"

( cd "$stage" && find . -print0 | cpio --null -o -H newc --quiet ) | gzip -1 > "$INITRD.tmp"
mv "$INITRD.tmp" "$INITRD"

cat > "$READY.tmp" <<EOF
KVER=$KVER
KERNEL=$KERNEL
INITRD=$INITRD
MODDIR=$MODDIR
SETUP_HASH=$SELF_HASH
EOF
mv "$READY.tmp" "$READY"
# Drop the files of script versions that nobody ran for 30 days.
find "$CACHE" -maxdepth 1 \( -name 'ready-*' -o -name 'initramfs-*.cpio.gz' \) -mtime +30 -delete 2>/dev/null || true
log "ready: kernel $KVER, modules: $(tr '\n' ' ' < "$stage/modules.list")"
done_ok
