#!/usr/bin/env bash
# Builds the Lifeboat test guest: a small self-booting Linux disk image made from
# Debian packages only, plus a runnable QEMU (x86_64 system emulator) beside it.
#
#   scripts/build-test-guest.sh OUT_DIR
#
# Produces (cached: nothing is rebuilt while OUT_DIR/guest.raw exists and
# OUT_DIR/stamp holds this script's sha256):
#   OUT_DIR/guest.raw                 96 MiB raw disk: MBR (syslinux mbr.bin), one
#                                     bootable ext4 partition at 1 MiB (/dev/vda1),
#                                     extlinux, Debian cloud kernel, busybox initramfs,
#                                     busybox root filesystem, Debian's qemu-ga.
#   OUT_DIR/partition-offset          byte offset of partition 1 (for debugfs & co)
#   OUT_DIR/bin/qemu-system-x86_64    QEMU launcher the tests use (see "QEMU" below)
#   OUT_DIR/stamp                     sha256 of this script
#
# The guest (kernel command line: console=ttyS0):
#   - the initramfs loads the virtio modules (virtio_ring, virtio,
#     virtio_pci_legacy_dev, virtio_pci_modern_dev, virtio_pci, virtio_blk,
#     failover, net_failover, virtio_net, virtio_console, in that order), mounts
#     /dev/vda1 read-write and switch_roots into it; busybox init runs
#     /etc/init.d/rcS;
#   - rcS configures eth0 as 10.0.2.15/24 (gateway 10.0.2.2: QEMU user networking)
#     and runs /etc/rc.local if it is executable;
#   - TCP 22: answers every connection with the line "SSH-2.0-LifeboatTestGuest";
#   - TCP 23: a command server: reads ONE line, runs it with sh (stderr merged into
#     stdout), sends the output, then "LIFEBOAT-RC=<exit status>", then closes;
#   - the QEMU guest agent: Debian's qemu-guest-agent (/usr/sbin/qemu-ga, with the
#     shared libraries `ldd` finds for it on this Debian host after installing the
#     package's Depends, copied to the same paths, plus the dynamic loader; the
#     build checks it runs with `chroot ROOT qemu-ga --version`). init respawns
#     /bin/lifeboat-qga, which links /dev/virtio-ports/<name> for every virtio
#     serial port (no udev in the guest: the name comes from
#     /sys/class/virtio-ports/vportNpM/name) and runs
#     `qemu-ga -m virtio-serial -p /dev/virtio-ports/org.qemu.guest_agent.0`;
#     without that port (QEMU started without it) it says so on the console once
#     and waits. The host side is QEMU's
#       -chardev socket,path=SOCK,server=on,wait=off,id=qga0 -device virtio-serial
#       -device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0
#     qemu-ga logs to /run/qemu-ga.log and keeps its state in /run (rcS mounts a
#     tmpfs there: nothing on / stays open for writing, so `mount -o remount,ro /`
#     still works); guest-fsfreeze-freeze freezes the ext4 root (FIFREEZE);
#   - once both ports listen, prints "LIFEBOAT-GUEST-READY" on the serial console.
#   To write a file to the guest's disk and power off cleanly, send on port 23:
#     echo hi > /lifeboat-marker; sync; mount -o remount,ro /; sync; poweroff -f
#
# Bootloader: extlinux on ext4 (made with `mkfs.ext4 -O ^64bit,^metadata_csum -d`
# at the partition offset; `extlinux --install` needs the file system mounted, so
# the partition is loop-mounted with `mount -o loop,offset=` for that one step).
#
# QEMU: Debian 12's qemu-system-x86 (7.2) cannot be installed next to the
# preinstalled qemu-utils 10 (qemu-utils 10 Breaks qemu-system-common < 8), and
# installing both together downgrades qemu-img to 7.2. So when no
# qemu-system-x86_64 is on PATH, this script `apt-get download`s qemu-system-x86,
# qemu-system-common, qemu-system-data and qemu-block-extra (nfs:// driver),
# extracts them into OUT_DIR/qemu (dpkg-deb -x, nothing installed) and installs
# only their library dependencies, seabios, ipxe-qemu and libnfs13 with apt-get.
# OUT_DIR/bin/qemu-system-x86_64 runs that QEMU (or the system one if present).
#
# Needs root (apt-get, loop mount). Packages it installs when missing:
# busybox-static extlinux syslinux-common cpio fdisk e2fsprogs util-linux xz-utils
# zstd binutils seabios ipxe-qemu libnfs13 + the libraries qemu-system-x86 and
# qemu-guest-agent depend on (qemu-guest-agent itself is only downloaded).
set -euo pipefail

die() { echo "build-test-guest.sh: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 OUT_DIR"
OUT=$1
SCRIPT=$(readlink -f "$0")
HASH=$(sha256sum "$SCRIPT" | cut -d' ' -f1)

if [ -f "$OUT/guest.raw" ] && [ -x "$OUT/bin/qemu-system-x86_64" ] &&
    [ "$(cat "$OUT/stamp" 2>/dev/null)" = "$HASH" ]; then
    echo "build-test-guest.sh: $OUT/guest.raw is up to date"
    exit 0
fi

[ "$(id -u)" -eq 0 ] || die "must run as root (apt-get install, loop mount)"

DISK_MIB=96
PART_START_SECTOR=2048
PART_OFFSET=$((PART_START_SECTOR * 512))
MODULES=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci
    virtio_blk failover net_failover virtio_net virtio_console)

# ---------------------------------------------------------------- packages
apt_updated=0
apt_install() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "build-test-guest.sh: installing ${missing[*]}"
    if [ $apt_updated -eq 0 ]; then
        apt-get update -qq || die "apt-get update failed"
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        >/dev/null || die "apt-get install ${missing[*]} failed; install them by hand"
}

apt_install busybox-static extlinux syslinux-common cpio fdisk e2fsprogs util-linux \
    xz-utils zstd binutils

WORK=$(mktemp -d "${TMPDIR:-/tmp}/lifeboat-guest.XXXXXX")
MNT="$WORK/mnt"
cleanup() {
    mountpoint -q "$MNT" 2>/dev/null && umount "$MNT"
    rm -rf "$WORK"
}
trap cleanup EXIT

download() { # package-name -> path of the downloaded .deb in $WORK/debs
    mkdir -p "$WORK/debs"
    (cd "$WORK/debs" && apt-get download "$1" >/dev/null 2>&1) ||
        { apt-get update -qq && (cd "$WORK/debs" && apt-get download "$1" >/dev/null 2>&1); } ||
        die "apt-get download $1 failed"
    ls "$WORK/debs/${1}_"*.deb | head -n1
}

# ---------------------------------------------------------------- QEMU
mkdir -p "$OUT/bin"
if command -v qemu-system-x86_64 >/dev/null 2>&1; then
    cat >"$OUT/bin/qemu-system-x86_64" <<EOF
#!/bin/sh
exec $(command -v qemu-system-x86_64) "\$@"
EOF
else
    rm -rf "$OUT/qemu"
    mkdir -p "$OUT/qemu"
    deps=()
    for p in qemu-system-x86 qemu-system-common qemu-system-data qemu-block-extra; do
        deb=$(download "$p")
        dpkg-deb -x "$deb" "$OUT/qemu"
        if [ "$p" = qemu-system-x86 ]; then
            # library and firmware dependencies, minus the qemu-* packages themselves
            while read -r d; do deps+=("$d"); done < <(dpkg-deb -f "$deb" Depends | tr ',' '\n' |
                sed -E 's/\(.*\)//; s/\|.*//; s/[[:space:]]//g' | grep -v '^qemu-' | grep -v '^$')
        fi
    done
    apt_install "${deps[@]}" libnfs13
    missing_libs=$(ldd "$OUT/qemu/usr/bin/qemu-system-x86_64" | grep 'not found' || true)
    [ -z "$missing_libs" ] || die "extracted QEMU lacks libraries: $missing_libs"
    cat >"$OUT/bin/qemu-system-x86_64" <<'EOF'
#!/bin/sh
# QEMU 7.2 extracted from Debian packages by build-test-guest.sh (not installed);
# QEMU_MODULE_DIR makes it find its block-nfs/accel modules in the extracted tree.
Q=$(dirname "$(readlink -f "$0")")/../qemu
QEMU_MODULE_DIR=$Q/usr/lib/x86_64-linux-gnu/qemu
export QEMU_MODULE_DIR
exec "$Q/usr/bin/qemu-system-x86_64" -L "$Q/usr/share/qemu" -L /usr/share/seabios \
    -L /usr/lib/ipxe/qemu "$@"
EOF
fi
chmod +x "$OUT/bin/qemu-system-x86_64"
"$OUT/bin/qemu-system-x86_64" --version >/dev/null ||
    die "QEMU does not run: install qemu-system-x86 qemu-utils (same apt-get install)"

# ---------------------------------------------------------------- kernel
meta=$(download linux-image-cloud-amd64)
kpkg=$(dpkg-deb -f "$meta" Depends | tr ',' '\n' | sed -E 's/\(.*\)//; s/[[:space:]]//g' |
    grep '^linux-image-' | head -n1)
[ -n "$kpkg" ] || die "cannot find the kernel package linux-image-cloud-amd64 depends on"
kdeb=$(download "$kpkg")
dpkg-deb -x "$kdeb" "$WORK/kernel"
vmlinuz=$(ls "$WORK"/kernel/boot/vmlinuz-* | head -n1)
moddir=$(ls -d "$WORK"/kernel/lib/modules/* | head -n1)
[ -f "$vmlinuz" ] && [ -d "$moddir" ] || die "no kernel or modules in $kdeb"

# ---------------------------------------------------------------- initramfs
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || die "$BUSYBOX missing; install busybox-static"
if ldd "$BUSYBOX" >/dev/null 2>&1; then
    die "$BUSYBOX is dynamically linked; install busybox-static"
fi
IRD="$WORK/initramfs"
mkdir -p "$IRD"/{bin,dev,proc,sys,newroot,lib/modules}
cp "$BUSYBOX" "$IRD/bin/busybox"
for m in "${MODULES[@]}"; do
    src=$(find "$moddir" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" | head -n1)
    [ -n "$src" ] || die "module $m not found in $kpkg"
    case "$src" in
    *.ko.xz) xz -dc "$src" >"$IRD/lib/modules/$m.ko" ;;
    *.ko.zst) zstd -qdc "$src" >"$IRD/lib/modules/$m.ko" ;;
    *) cp "$src" "$IRD/lib/modules/$m.ko" ;;
    esac
done
cat >"$IRD/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t devtmpfs devtmpfs /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
for m in ${MODULES[*]}; do
    insmod /lib/modules/\$m.ko || echo "lifeboat-initramfs: insmod \$m failed"
done
i=0
while [ ! -b /dev/vda1 ] && [ \$i -lt 200 ]; do sleep 0.05; i=\$((i + 1)); done
if ! mount -t ext4 -o rw /dev/vda1 /newroot; then
    echo "LIFEBOAT-GUEST-FAILED: cannot mount /dev/vda1"
    exec sh
fi
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/init
EOF
chmod +x "$IRD/init"
(cd "$IRD" && find . | cpio -o -H newc --quiet | gzip -9) >"$WORK/initrd.img"

# ---------------------------------------------------------------- root tree
ROOT="$WORK/root"
mkdir -p "$ROOT"/{bin,sbin,etc/init.d,dev,proc,sys,tmp,root,boot/extlinux,var/log,var/run,run}
chmod 1777 "$ROOT/tmp"
cp "$BUSYBOX" "$ROOT/bin/busybox"
for applet in $("$BUSYBOX" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$ROOT/bin/$applet"
done
ln -sf ../bin/busybox "$ROOT/sbin/init"
cat >"$ROOT/boot/extlinux/extlinux.conf" <<'EOF'
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL /boot/vmlinuz
  INITRD /boot/initrd.img
  APPEND root=/dev/vda1 rw console=ttyS0 quiet panic=-1
EOF
cat >"$ROOT/etc/inittab" <<'EOF'
::sysinit:/etc/init.d/rcS
::respawn:/bin/nc -ll -p 22 -e /bin/lifeboat-ssh-banner
::respawn:/bin/nc -ll -p 23 -e /bin/lifeboat-cmd
::respawn:/bin/lifeboat-qga
::once:/bin/lifeboat-ready
::shutdown:/bin/sync
::shutdown:/bin/mount -o remount,ro /
EOF
cat >"$ROOT/etc/init.d/rcS" <<'EOF'
#!/bin/sh
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
grep -q ' /dev ' /proc/mounts || mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o mode=0755 tmpfs /run
hostname lifeboat-guest
ifconfig lo 127.0.0.1 up
ifconfig eth0 10.0.2.15 netmask 255.255.255.0 up || echo "lifeboat-guest: no eth0"
route add default gw 10.0.2.2 2>/dev/null
if [ -x /etc/rc.local ]; then /etc/rc.local; fi
EOF
cat >"$ROOT/bin/lifeboat-ssh-banner" <<'EOF'
#!/bin/sh
printf 'SSH-2.0-LifeboatTestGuest\r\n'
EOF
cat >"$ROOT/bin/lifeboat-cmd" <<'EOF'
#!/bin/sh
# One command per connection: read a line, run it, report its exit status.
export PATH=/bin:/sbin
exec 2>&1
IFS= read -r line || exit 0
sh -c "$line"
echo "LIFEBOAT-RC=$?"
EOF
cat >"$ROOT/bin/lifeboat-ready" <<'EOF'
#!/bin/sh
i=0
while [ $i -lt 600 ]; do
    l=$(netstat -ltn 2>/dev/null)
    if echo "$l" | grep -q ':22 ' && echo "$l" | grep -q ':23 '; then
        echo "LIFEBOAT-GUEST-READY" >/dev/ttyS0
        exit 0
    fi
    sleep 0.1
    i=$((i + 1))
done
echo "LIFEBOAT-GUEST-FAILED: ports 22/23 not listening" >/dev/ttyS0
EOF
cat >"$ROOT/bin/lifeboat-qga" <<'EOF'
#!/bin/sh
# Runs the QEMU guest agent on its virtio serial port (respawned by init).
export PATH=/bin:/sbin:/usr/sbin
mkdir -p /dev/virtio-ports
for n in /sys/class/virtio-ports/*/name; do
    [ -f "$n" ] || continue
    name=$(cat "$n")
    [ -n "$name" ] && ln -sf "../$(basename "$(dirname "$n")")" "/dev/virtio-ports/$name"
done
port=/dev/virtio-ports/org.qemu.guest_agent.0
if [ ! -e "$port" ]; then
    echo "lifeboat-qga: no virtio serial port org.qemu.guest_agent.0; guest agent not started" >/dev/ttyS0
    while :; do sleep 3600; done
fi
exec /usr/sbin/qemu-ga -m virtio-serial -p "$port" -l /run/qemu-ga.log -t /run
EOF
echo "root::0:0:root:/root:/bin/sh" >"$ROOT/etc/passwd"
echo "root:x:0:" >"$ROOT/etc/group"
chmod +x "$ROOT"/etc/init.d/rcS "$ROOT"/bin/lifeboat-*

# ---------------------------------------------------------------- guest agent
qga_deb=$(download qemu-guest-agent)
qga_deps=()
while read -r d; do qga_deps+=("$d"); done < <(dpkg-deb -f "$qga_deb" Depends | tr ',' '\n' |
    sed -E 's/\(.*\)//; s/\|.*//; s/[[:space:]]//g' | grep -v '^$')
apt_install "${qga_deps[@]}"
dpkg-deb -x "$qga_deb" "$WORK/qga"
QGA="$WORK/qga/usr/sbin/qemu-ga"
[ -x "$QGA" ] || die "no usr/sbin/qemu-ga in $qga_deb"
mkdir -p "$ROOT/usr/sbin"
cp "$QGA" "$ROOT/usr/sbin/qemu-ga"
qga_libs=$(ldd "$QGA") || die "ldd $QGA failed"
if echo "$qga_libs" | grep -q 'not found'; then
    die "qemu-ga lacks libraries: $(echo "$qga_libs" | grep 'not found')"
fi
# "libX.so => /path (addr)" and the loader's "/lib64/ld-linux-x86-64.so.2 (addr)"
for lib in $(echo "$qga_libs" | sed -nE 's/.*=> (\/[^ ]+) .*/\1/p; s/^[[:space:]]*(\/[^ ]+) .*/\1/p'); do
    mkdir -p "$ROOT$(dirname "$lib")"
    cp -L "$lib" "$ROOT$lib"
done
for lib in $(find "$ROOT/lib" "$ROOT/lib64" "$ROOT/usr/lib" -name '*.so*' 2>/dev/null); do
    for needed in $(readelf -d "$lib" | sed -nE 's/.*\(NEEDED\).*\[(.*)\]/\1/p'); do
        [ -n "$(find "$ROOT" -name "$needed" -print -quit)" ] ||
            die "$lib needs $needed, which was not copied into the guest"
    done
done
chroot "$ROOT" /usr/sbin/qemu-ga --version >/dev/null ||
    die "qemu-ga does not run inside the guest's root tree (missing library?)"

# ---------------------------------------------------------------- disk
IMG="$WORK/guest.raw"
truncate -s "${DISK_MIB}M" "$IMG"
echo "start=$PART_START_SECTOR, type=83, bootable" | sfdisk -q --label dos "$IMG" >/dev/null ||
    die "sfdisk failed"
part_sectors=$(( (DISK_MIB * 1024 * 1024 - PART_OFFSET) / 512 ))
part_blocks=$((part_sectors / 8))
mkfs.ext4 -q -F -b 4096 -L lifeboat-root -O ^64bit,^metadata_csum -E offset=$PART_OFFSET \
    -d "$ROOT" "$IMG" "$part_blocks" || die "mkfs.ext4 failed"
mkdir -p "$MNT"
mount -o loop,offset=$PART_OFFSET,sizelimit=$((part_sectors * 512)) "$IMG" "$MNT" ||
    die "loop mount of the ext4 partition failed (extlinux needs it mounted)"
# Kernel and initramfs are copied through the mount, not by `mkfs -d`: mke2fs -d
# turns zero blocks into holes, and syslinux fails to load a file with holes
# ("Loading /boot/vmlinuz failed: I/O error").
cp --sparse=never "$vmlinuz" "$MNT/boot/vmlinuz"
cp --sparse=never "$WORK/initrd.img" "$MNT/boot/initrd.img"
extlinux --install "$MNT/boot/extlinux" >/dev/null 2>&1 || die "extlinux --install failed"
umount "$MNT"
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$IMG" bs=440 count=1 conv=notrunc status=none ||
    die "writing the MBR boot code failed"

mkdir -p "$OUT"
mv "$IMG" "$OUT/guest.raw"
echo "$PART_OFFSET" >"$OUT/partition-offset"
echo "$HASH" >"$OUT/stamp"
echo "build-test-guest.sh: built $OUT/guest.raw"
