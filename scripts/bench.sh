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

need=(restic borgbackup time e2fsprogs fdisk qemu-utils)
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
printf "%-34s %10s\n" "lifeboat full backup MB/s" "$(awk -v b="$image_bytes" -v s="${secs[lifeboat_full]}" 'BEGIN{printf "%.0f", b/s/1e6}')"
