#!/usr/bin/env bash
# Lifeboat benchmark, side by side with restic and borg in one run, printed as ratios.
#
# Input (built once, cached in $BENCH_DIR): an 8 GiB raw image, GPT + ext4
# filled with about 5 GB of ordinary system files (a copy of /usr, made with
# mkfs.ext4 -d, no mounts), and the same image after 80 random 1 MiB
# overwrites (about 1% change). Prefixes of 2 and 4 GiB of it show that peak
# memory does not grow with the disk.
#
# Every tool reads the same file, warmed into an otherwise empty page cache
# right before its run; the
# repositories are on the same filesystem. Times are wall-clock seconds,
# memory is peak RSS from /usr/bin/time.
#
# Usage: scripts/bench.sh [--size-gib N]   (default 8; smaller for a quick look)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
size_gib=8
while [ $# -gt 0 ]; do
    case "$1" in
        --size-gib) size_gib=$2; shift 2 ;;
        *) echo "usage: scripts/bench.sh [--size-gib N]" >&2; exit 2 ;;
    esac
done
BENCH_DIR=${BENCH_DIR:-/var/tmp/lifeboat-bench}
mkdir -p "$BENCH_DIR"
work="$BENCH_DIR/work"

need=(restic borgbackup time e2fsprogs fdisk qemu-utils jq libnfs-utils nfs-ganesha nfs-ganesha-vfs rpcbind)
missing=()
for p in "${need[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

echo "== building lifeboat (release)"
cargo build --release --locked -q
lifeboat="$root/target/release/lifeboat"

image="$BENCH_DIR/bench-${size_gib}g.raw"
changed="$BENCH_DIR/bench-${size_gib}g-changed.raw"
if [ ! -f "$image" ] || [ ! -f "$changed" ]; then
    echo "== building the bench image $image (once): GPT + ext4 holding a copy of /usr"
    rm -f "$image" "$changed"
    truncate -s "${size_gib}G" "$image.tmp"
    printf 'label: gpt\nstart=2048, type=L, name=root\n' | sfdisk -q "$image.tmp"
    fs_kib=$(( (size_gib << 20) - 2048 ))
    mkfs.ext4 -q -F -b 4096 -E offset=1048576 -d /usr "$image.tmp" "${fs_kib}k"
    mv "$image.tmp" "$image"
    echo "== the 1% change: 80 random 1 MiB overwrites (fixed seed)"
    cp --sparse=always "$image" "$changed.tmp"
    RANDOM=42
    for _ in $(seq 80); do
        mib=$(( (RANDOM * 32768 + RANDOM) % ((size_gib << 10) - 1) ))
        dd if=/dev/urandom of="$changed.tmp" bs=1M count=1 seek="$mib" conv=notrunc status=none
    done
    mv "$changed.tmp" "$changed"
fi

# measure LABEL CMD...: runs CMD, records seconds and peak RSS (KiB).
declare -A secs rss
measure() {
    local label=$1; shift
    local out
    out=$( { /usr/bin/time -f "__TIME__ %e %M" "$@" >/dev/null 2>"$BENCH_DIR/$label.err"; } 2>&1; tail -1 "$BENCH_DIR/$label.err")
    local line
    line=$(grep __TIME__ "$BENCH_DIR/$label.err" | tail -1)
    if [ -z "$line" ]; then
        echo "$label failed:"; cat "$BENCH_DIR/$label.err"; exit 1
    fi
    secs[$label]=$(echo "$line" | awk '{print $2}')
    rss[$label]=$(echo "$line" | awk '{print $3}')
    printf "   %-28s %8.2f s  %8d MiB peak RSS\n" "$label" "${secs[$label]}" "$(( ${rss[$label]} / 1024 ))"
    : "$out"
}
stored() { du -sb "$1" | awk '{print $1}'; }
# warm PATH...: reads files (or every file under a directory) into the page
# cache, so each tool starts from the same warm cache and none pays for
# another's cold reads (this machine reclaims page cache aggressively).
# Caches are dropped first (when allowed), so no run pays for reclaiming
# what earlier runs left in memory.
warm() {
    sync
    echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
    for p in "$@"; do find "$p" -type f -exec cat {} + >/dev/null; done
}

rm -rf "$work"; mkdir -p "$work/src" "$work/restore"
export LIFEBOAT_PASSPHRASE=bench RESTIC_PASSWORD=bench BORG_PASSPHRASE=bench
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
disk="$work/src/disk.raw"
ln "$image" "$disk"      # every tool backs up the same path; the change swaps the file under it
data_bytes=$(du -B1 "$image" | awk '{print $1}')
image_bytes=$(stat -c %s "$image")
echo "== input: $image, $((image_bytes >> 20)) MiB disk, $((data_bytes >> 20)) MiB allocated"

echo "== full backup"
"$lifeboat" repo init --repo "$work/lb" >/dev/null
warm "$image"; measure lifeboat_full "$lifeboat" backup --repo "$work/lb" --vm bench "disk0=$disk"
restic init -q -r "$work/restic" >/dev/null
warm "$image"; measure restic_full restic -q -r "$work/restic" backup "$disk"
borg init -e repokey "$work/borg" >/dev/null 2>&1
warm "$image"; measure borg_full borg create --compression zstd,3 "$work/borg::full" "$disk"
lb_full_stored=$(stored "$work/lb"); restic_full_stored=$(stored "$work/restic"); borg_full_stored=$(stored "$work/borg")

echo "== backup after the 1% change"
rm "$disk"; ln "$changed" "$disk"
warm "$changed"; measure lifeboat_incr "$lifeboat" backup --repo "$work/lb" --vm bench "disk0=$disk"
warm "$changed"; measure restic_incr restic -q -r "$work/restic" backup "$disk"
warm "$changed"; measure borg_incr borg create --compression zstd,3 "$work/borg::incr" "$disk"

echo "== restore (latest)"
warm "$work/lb"; measure lifeboat_restore "$lifeboat" restore --repo "$work/lb" bench@latest --to "$work/restore/lb.raw"
warm "$work/restic"; measure restic_restore restic -q -r "$work/restic" restore latest --target "$work/restore/restic"
cmp "$work/restore/lb.raw" "$changed" && echo "   lifeboat restore is bit-exact"
rm -rf "$work/restore"; mkdir -p "$work/restore"
warm "$work/borg"; measure borg_restore sh -c "cd '$work/restore' && borg extract '$work/borg::incr'"
rm -rf "$work/restore"

echo "== peak memory by disk size (lifeboat full backup of a prefix of the image)"
for g in 2 4; do
    if [ "$g" -lt "$size_gib" ]; then
        prefix="$BENCH_DIR/prefix-${g}g.raw"
        [ -f "$prefix" ] || { cp --sparse=always "$image" "$prefix"; truncate -s "${g}G" "$prefix"; }
        "$lifeboat" repo init --repo "$work/lb$g" >/dev/null
        warm "$prefix"; measure "lifeboat_full_${g}g" "$lifeboat" backup --repo "$work/lb$g" --vm bench "disk0=$prefix"
    fi
done

echo "== instant recovery (NFS service): session start, sequential read, guest boot"
ir_json() { jq -r "$1" "$work/ir-start.json"; }
start_ir_service() { # CACHE_DIR LISTEN_ADDR PORTMAP_ARGS...
    local cache=$1 listen=$2; shift 2
    "$lifeboat" nfs serve --repo "$work/lb" --cache-dir "$cache" --listen "$listen" \
        --mount-port 0 --nfs-port 0 --nbd-port 0 --allow "$listen" --allow 127.0.0.1 "$@" >"$cache.log" 2>&1 &
    for _ in $(seq 100); do [ -S "$cache/control.sock" ] && return 0; sleep 0.1; done
    echo "nfs serve did not start:"; cat "$cache.log"; exit 1
}
mkdir -p "$work/ir"
# Default decoded-chunk cache of the service: min(RAM/4, 16 GiB), shared by
# every session (5.75 GiB on the 23 GiB bench machine: it holds the image's
# 5.2 GiB of data, so the repeated read is served from memory).
start_ir_service "$work/ir" 127.0.0.1 --no-portmap
ir_pid=$!
"$lifeboat" instant-recovery start --cache-dir "$work/ir" --repo "$work/lb" bench@latest --json >"$work/ir-start.json"
ir_start_ms=$(ir_json .start_ms)
url="nfs://127.0.0.1$(ir_json .session.nfs_dir)/$(ir_json '.session.disks[0].file')?version=3&mountport=$(ir_json .session.service.mount_port)&nfsport=$(ir_json .session.service.nfs_port)"
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
measure lifeboat_nfs_cat_first sh -c "nfs-cat '$url' >/dev/null"
measure lifeboat_nfs_cat_again sh -c "nfs-cat '$url' >/dev/null"
# A 64 GiB sparse disk: session start must not depend on the disk size.
sparse="$BENCH_DIR/sparse-64g.raw"
[ -f "$sparse" ] || { truncate -s 64G "$sparse"; dd if=/dev/urandom of="$sparse" bs=1M count=16 seek=30000 conv=notrunc status=none; }
"$lifeboat" backup --repo "$work/lb" --vm sparse64 "disk0=$sparse" >/dev/null
"$lifeboat" instant-recovery start --cache-dir "$work/ir" --repo "$work/lb" sparse64@latest --json >"$work/ir-start.json"
ir_start_64_ms=$(ir_json .start_ms)
kill "$ir_pid"; wait "$ir_pid" 2>/dev/null || true

echo "== nfs-ganesha (VFS backend, with rpcbind) serving the same raw image"
mkdir -p "$work/export"; ln "$changed" "$work/export/bench.raw"
cat >"$work/ganesha.conf" <<CONF
NFS_CORE_PARAM { Protocols = 3; }
EXPORT { Export_Id = 1; Path = $work/export; Pseudo = /export; Protocols = 3; Transports = TCP;
         Access_Type = RO; Squash = No_Root_Squash; SecType = sys; FSAL { Name = VFS; } }
CONF
rpcbind -w 2>/dev/null || rpcbind || true
ganesha.nfsd -F -L "$work/ganesha.log" -f "$work/ganesha.conf" -p "$work/ganesha.pid" &
ganesha_pid=$!
ganesha_up=no
# NFSv3 clients mount the export's real path (the pseudo path is NFSv4's).
for _ in $(seq 100); do nfs-ls "nfs://127.0.0.1$work/export" >/dev/null 2>&1 && { ganesha_up=yes; break; }; sleep 0.2; done
gurl="nfs://127.0.0.1$work/export/bench.raw"
if [ "$ganesha_up" = yes ]; then
    sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
    measure ganesha_nfs_cat_first sh -c "nfs-cat '$gurl' >/dev/null"
    measure ganesha_nfs_cat_again sh -c "nfs-cat '$gurl' >/dev/null"
else
    echo "   nfs-ganesha did not come up (see $work/ganesha.log): no comparison in this run"
    secs[ganesha_nfs_cat_first]=0; secs[ganesha_nfs_cat_again]=0
fi
kill "$ganesha_pid" 2>/dev/null; wait "$ganesha_pid" 2>/dev/null || true
pkill -x rpcbind 2>/dev/null || true

echo "== guest boot to port 22: local raw file vs Instant VM Recovery over NFS (TCG)"
guest_dir="$BENCH_DIR/guest"
scripts/build-test-guest.sh "$guest_dir" >/dev/null
qemu="$guest_dir/bin/qemu-system-x86_64"
boot_secs() { # DRIVE-FILE-OR-URL: seconds from QEMU start to an SSH banner on port 22
    local port=$((20000 + RANDOM % 20000)) start end
    start=$(date +%s.%N)
    "$qemu" -accel tcg -m 256 -nographic -serial null -monitor none \
        -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:22" -device virtio-net-pci,netdev=n0 \
        -drive "file=$1,format=raw,if=virtio,cache=writeback" >/dev/null 2>&1 &
    local qpid=$!
    for _ in $(seq 600); do
        if timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port; head -c 4 <&3" 2>/dev/null | grep -q SSH-; then
            end=$(date +%s.%N); break
        fi
        sleep 0.1
    done
    kill "$qpid" 2>/dev/null; wait "$qpid" 2>/dev/null || true
    awk -v a="$start" -v b="${end:-0}" 'BEGIN { if (b == 0) print "fail"; else printf "%.2f", b - a }'
}
cp --sparse=always "$guest_dir/guest.raw" "$work/guest-local.raw"
boot_local=$(boot_secs "$work/guest-local.raw")
"$lifeboat" backup --repo "$work/lb" --vm guest "disk0=$guest_dir/guest.raw" >/dev/null
mkdir -p "$work/ir2"
start_ir_service "$work/ir2" 127.0.0.41 --portmap-port 111
ir_pid=$!
"$lifeboat" instant-recovery start --cache-dir "$work/ir2" --repo "$work/lb" guest@latest --json >"$work/ir-start.json"
boot_nfs=$(boot_secs "nfs://127.0.0.41$(ir_json .session.nfs_dir)/$(ir_json '.session.disks[0].file')")
kill "$ir_pid"; wait "$ir_pid" 2>/dev/null || true
echo "   boot local ${boot_local} s, from NFS session ${boot_nfs} s"

echo "== data integration: publish, read every file, unpublish; scan"
# Publish the latest bench restore point (FUSE disk file, loop device, ext4
# mounted ro,noload), read every file with find + cat, unpublish; the same
# read over a read-only loop mount of the original raw image is the peer.
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
pub_root="$work/published"
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
t0=$(now)
"$lifeboat" publish --repo "$work/lb" bench@latest --mount-root "$pub_root" --json >"$work/publish.json"
publish_s=$(elapsed "$t0" "$(now)")
pub_session=$(jq -r .session "$work/publish.json")
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
# The VM's mounted filesystems only (<mount-root>/<session>/<vm>/...), as
# over the loop mount: not the session's .disks/ (the raw disk files).
measure lifeboat_find_cat sh -c "find '$pub_root/$pub_session/bench' -type f -exec cat {} + >/dev/null"
t0=$(now)
"$lifeboat" unpublish "$pub_session" >/dev/null
unpublish_s=$(elapsed "$t0" "$(now)")
loop_mnt="$work/loop-mount"; mkdir -p "$loop_mnt"
mount -o ro,noload,loop,offset=1048576 "$changed" "$loop_mnt"
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
measure loop_find_cat sh -c "find '$loop_mnt' -type f -exec cat {} + >/dev/null"
echo "   publish ${publish_s} s, unpublish ${unpublish_s} s"

# Scanning. clamscan (a tiny database: the EICAR MD5, as the tests make it)
# over a loop mount of the original image, the same tree as the first
# restore point; a full YARA-only `lifeboat scan` of that restore point
# (published, every file read); then the dedup-aware re-scan of the changed
# one with the same cache (unchanged files recognised by extents, not read).
# The bench image holds no sample: the full YARA-only scan must exit 8
# (unproven: nothing found, but no ClamAV database proved it clean; see
# docs/security.md). The re-scan may also exit 3 (incomplete): the random 1 MiB overwrites can land
# in inode tables or directories, whose files ext4 then refuses (EBADMSG);
# the count is printed. Any other exit fails the bench.
umount "$loop_mnt"
mount -o ro,noload,loop,offset=1048576 "$image" "$loop_mnt"
clam_db="$work/clamav-db"; mkdir -p "$clam_db"
eicar='X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'
printf '%s:%s:Lifeboat.Bench.Eicar\n' "$(printf '%s' "$eicar" | md5sum | cut -d' ' -f1)" "${#eicar}" >"$clam_db/bench.hdb"
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
measure clamscan_loop clamscan -r --quiet -d "$clam_db" "$loop_mnt"
umount "$loop_mnt"
first_rp=$("$lifeboat" list --repo "$work/lb" --vm bench --json | jq -r '.[0] | "\(.vm)@\(.id)"')
# lifeboat_scan LABEL RESTORE-POINT: times a YARA-only scan with the bench's
# scan cache, keeps its JSON in $work/LABEL.json, fails unless it found nothing.
lifeboat_scan() { # LABEL RESTORE-POINT ACCEPTED-EXIT-CODES...
    local label=$1 rp=$2 rc; shift 2
    sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
    measure "$label" sh -c "'$lifeboat' scan --repo '$work/lb' '$rp' --scan-cache '$work/scan-cache' --json >'$work/$label.json'; echo \$? >'$work/$label.rc'"
    rc=$(cat "$work/$label.rc")
    if ! printf ' %s ' "$@" | grep -q " $rc " || [ "$(jq -c '[.engines[] | select(.not_scanned == null) | .name]' "$work/$label.json")" != '["yara"]' ]; then
        echo "$label: lifeboat scan $rp exited $rc (expected: $*), engines $(jq -c '[.engines[].name]' "$work/$label.json" 2>/dev/null) (yara only expected):"
        cat "$work/$label.json" "$BENCH_DIR/$label.err"; exit 1
    fi
    if [ "$rc" = 3 ]; then
        echo "   NOTE: $label incomplete: $(jq '.unreadable | length' "$work/$label.json") unreadable (the overwrites hit metadata): $(jq -r '[.unreadable[].reason] | unique | join("; ")' "$work/$label.json" | cut -c1-200)"
    fi
}
lifeboat_scan lifeboat_scan_full "$first_rp" 8
lifeboat_scan lifeboat_rescan bench@latest 8 3
scan_field() { jq -r ".$2" "$work/$1.json"; }
echo "   full scan: $(scan_field lifeboat_scan_full files_scanned) files read; re-scan: $(scan_field lifeboat_rescan files_scanned) files read ($(( $(scan_field lifeboat_rescan bytes_scanned) >> 20 )) MiB), $(scan_field lifeboat_rescan skipped_unread_files) skipped unread ($(( $(scan_field lifeboat_rescan skipped_unread_bytes) >> 20 )) MiB)"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "-"; else printf "%.2f", a / b }'; }
mib() { echo $(( $1 >> 20 )); }
echo
echo "== results (${size_gib} GiB image, 2 cores)"
printf "%-34s %10s %10s %10s   %s\n" "" lifeboat restic borg "lifeboat vs restic (target)"
printf "%-34s %10s %10s %10s   %sx (>= 4)\n" "full backup, s" "${secs[lifeboat_full]}" "${secs[restic_full]}" "${secs[borg_full]}" "$(ratio "${secs[restic_full]}" "${secs[lifeboat_full]}")"
printf "%-34s %10s %10s %10s   %sx (<= 1)\n" "stored after full, MiB" "$(mib "$lb_full_stored")" "$(mib "$restic_full_stored")" "$(mib "$borg_full_stored")" "$(ratio "$lb_full_stored" "$restic_full_stored")"
printf "%-34s %10s %10s %10s   %sx (>= 5)\n" "backup after 1% change, s" "${secs[lifeboat_incr]}" "${secs[restic_incr]}" "${secs[borg_incr]}" "$(ratio "${secs[restic_incr]}" "${secs[lifeboat_incr]}")"
printf "%-34s %10s %10s %10s   %sx (>= 2.5)\n" "restore, s" "${secs[lifeboat_restore]}" "${secs[restic_restore]}" "${secs[borg_restore]}" "$(ratio "${secs[restic_restore]}" "${secs[lifeboat_restore]}")"
printf "%-34s %10s %10s %10s\n" "peak RSS full backup, MiB" "$(( ${rss[lifeboat_full]} / 1024 ))" "$(( ${rss[restic_full]} / 1024 ))" "$(( ${rss[borg_full]} / 1024 ))"
for g in 2 4; do
    [ -n "${rss[lifeboat_full_${g}g]:-}" ] && printf "%-34s %10s\n" "lifeboat peak RSS, ${g} GiB disk, MiB" "$(( ${rss[lifeboat_full_${g}g]} / 1024 ))"
done
echo
echo "== instant recovery"
printf "%-34s %10s ms  (< 1000)\n" "session start, ${size_gib} GiB image" "$ir_start_ms"
printf "%-34s %10s ms  (< 1000)\n" "session start, 64 GiB sparse" "$ir_start_64_ms"
mbps() { awk -v b="$image_bytes" -v s="$1" 'BEGIN{ if (s == 0) print "-"; else printf "%.0f", b/s/1e6 }'; }
printf "%-34s %10s %10s   %sx (>= 1)\n" "nfs-cat first read, MB/s (lb, ganesha)" "$(mbps "${secs[lifeboat_nfs_cat_first]}")" "$(mbps "${secs[ganesha_nfs_cat_first]}")" "$(ratio "${secs[ganesha_nfs_cat_first]}" "${secs[lifeboat_nfs_cat_first]}")"
printf "%-34s %10s %10s   %sx (>= 1)\n" "nfs-cat repeated, MB/s (lb, ganesha)" "$(mbps "${secs[lifeboat_nfs_cat_again]}")" "$(mbps "${secs[ganesha_nfs_cat_again]}")" "$(ratio "${secs[ganesha_nfs_cat_again]}" "${secs[lifeboat_nfs_cat_again]}")"
printf "%-34s %10s %10s   %sx (<= 1.5)\n" "guest boot to port 22, s (nfs, local)" "$boot_nfs" "$boot_local" "$(ratio "$boot_nfs" "$boot_local")"
printf "%-34s %10s\n" "lifeboat full backup MB/s" "$(awk -v b="$image_bytes" -v s="${secs[lifeboat_full]}" 'BEGIN{printf "%.0f", b/s/1e6}')"
echo
echo "== data integration"
printf "%-34s %10s s   (< 3)\n" "publish ${size_gib} GiB restore point" "$publish_s"
printf "%-34s %10s s   (< 2)\n" "unpublish" "$unpublish_s"
printf "%-34s %10s %10s   %sx (>= 0.5)\n" "find + cat, s (published, loop)" "${secs[lifeboat_find_cat]}" "${secs[loop_find_cat]}" "$(ratio "${secs[loop_find_cat]}" "${secs[lifeboat_find_cat]}")"
printf "%-34s %10s %10s   %sx (>= 1)\n" "YARA scan vs clamscan, s" "${secs[lifeboat_scan_full]}" "${secs[clamscan_loop]}" "$(ratio "${secs[clamscan_loop]}" "${secs[lifeboat_scan_full]}")"
printf "%-34s %10s %10s   %sx (>= 10)\n" "re-scan after 1% change vs full scan, s" "${secs[lifeboat_rescan]}" "${secs[lifeboat_scan_full]}" "$(ratio "${secs[lifeboat_scan_full]}" "${secs[lifeboat_rescan]}")"
printf "%-34s %10s %10s   (%s more skipped after reading)\n" "re-scan files read, skipped unread" "$(scan_field lifeboat_rescan files_scanned)" "$(scan_field lifeboat_rescan skipped_unread_files)" "$(( $(scan_field lifeboat_rescan skipped_unchanged_files) - $(scan_field lifeboat_rescan skipped_unread_files) ))"
