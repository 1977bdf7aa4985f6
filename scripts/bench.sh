#!/usr/bin/env bash
# Lifeboat benchmark, side by side with restic and borg in one run, printed as ratios.
#
# Input (built once, cached in $BENCH_DIR): an 8 GiB raw image, GPT + ext4
# filled with about 5 GB of ordinary system files (a copy of /usr, made with
# mkfs.ext4 -d, no mounts), and the same image after 80 random 1 MiB
# overwrites (about 1% change). Prefixes of 2 and 4 GiB of it show that peak
# memory does not grow with the disk.
#
# Backups read the same file, warmed into an otherwise empty page cache
# right before each tool's run; the
# repositories are on the same filesystem. Times are wall-clock seconds,
# memory is peak RSS from /usr/bin/time.
#
# The verify, instant-recovery and publish sections run every tool
# --runs times (default 3), alternating the tools (A B C A B C ...), each
# run from a cold page cache (a VM disk is rarely cached), and print the
# median with the range (min-max); ratios are of medians. The other
# sections run each tool once.
#
# The live section (scripts/bench-live.sh) backs up a running VM (the image
# as its qcow2 disk, QEMU 7.2 under TCG) with lifeboat and virtnbdbackup
# (libvirt), full and after the same 1% change, --runs times alternating, and
# times the guest's own dd idle and during a live backup.
#
# The api section (scripts/bench-api.sh) runs wrk against `lifeboat serve`
# (the job and restore-point lists), idle and while a backup runs.
#
# The proxies section (scripts/bench-proxies.sh) runs jobs on enrolled
# proxies: the image through one proxy against the local backup, again with
# nothing changed, and four proxies backing up four VMs at once (the
# server's peak RSS).
#
# Usage: scripts/bench.sh [--size-gib N] [--runs N] [--only SECTION[,SECTION...]]
#   --size-gib N  image size (default 8; smaller for a quick look)
#   --runs N      runs per tool in the verify, ir, publish and live sections (default 3)
#   --only S,...  run these sections only: backup restore verify ir boot
#                 publish scan live api proxy. Without backup, the repositories
#                 of the last run of the same size are reused when complete
#                 (else the backup section runs first; boot, live and proxy
#                 need none).
#   --prebuilt DIR  take lifeboat and verify_floor from DIR instead of
#                 building them (e.g. while another build holds the target dir)
#   --baseline BIN  an older lifeboat binary: the ir and publish sections
#                 run it too, alternating, on a repository it makes of the
#                 same image, and print this build / baseline (the
#                 no-regression check; build it from an older commit).
# The whole bench (8 GiB, 3 runs) takes about 30 minutes on the 2-core
# bench machine, plus the image's first build; the live section alone about
# 7 minutes at 3 runs (11 at 5), plus the qcow2 conversion (once).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
size_gib=8
runs=3
only=""
baseline=""
prebuilt=""
usage="usage: scripts/bench.sh [--size-gib N] [--runs N] [--only backup,restore,verify,ir,boot,publish,scan,live,api,proxies] [--baseline BIN] [--prebuilt DIR]"
while [ $# -gt 0 ]; do
    case "$1" in
        --size-gib) size_gib=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --only) only=$2; shift 2 ;;
        --baseline) baseline=$(realpath "$2"); shift 2 ;;
        --prebuilt) prebuilt=$(realpath "$2"); shift 2 ;;
        *) echo "$usage" >&2; exit 2 ;;
    esac
done
for s in ${only//,/ }; do
    case "$s" in backup|restore|verify|ir|boot|publish|scan|live|api|proxies) ;; *) echo "unknown section $s; $usage" >&2; exit 2 ;; esac
done
# want SECTION: true when SECTION is to run.
want() { [ -z "$only" ] || [[ ",$only," == *",$1,"* ]]; }
bench_t0=$(date +%s)
bench_load=$(cut -d' ' -f1-3 /proc/loadavg)
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

target_dir=${CARGO_TARGET_DIR:-$root/target}
if [ -n "$prebuilt" ]; then
    lifeboat="$prebuilt/lifeboat"
    floor_bin="$prebuilt/verify_floor"
else
    echo "== building lifeboat (release)"
    cargo build --release --locked -q
    lifeboat="$target_dir/release/lifeboat"
    floor_bin="$target_dir/release/examples/verify_floor"
fi

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

# measure LABEL CMD...: runs CMD, records seconds, peak RSS (KiB), exit
# status and CPU seconds (user + system).
declare -A secs rss status cpu samples
measure() {
    local label=$1; shift
    /usr/bin/time -f "__TIME__ %e %M %x %U %S" "$@" >/dev/null 2>"$BENCH_DIR/$label.err" || true
    local line
    line=$(grep __TIME__ "$BENCH_DIR/$label.err" | tail -1)
    if [ -z "$line" ]; then
        echo "$label failed:"; cat "$BENCH_DIR/$label.err"; exit 1
    fi
    secs[$label]=$(echo "$line" | awk '{print $2}')
    rss[$label]=$(echo "$line" | awk '{print $3}')
    status[$label]=$(echo "$line" | awk '{print $4}')
    cpu[$label]=$(echo "$line" | awk '{print $5 + $6}')
    printf "   %-28s %8.2f s  %8d MiB peak RSS\n" "$label" "${secs[$label]}" "$(( ${rss[$label]} / 1024 ))"
}
# measure_ok LABEL CMD...: measure, and fail the bench unless CMD exited 0.
measure_ok() {
    measure "$@"
    if [ "${status[$1]}" != 0 ]; then
        echo "$1 exited ${status[$1]}:"; cat "$BENCH_DIR/$1.err"; exit 1
    fi
}
# sample LABEL VALUE: one run's value; med and range LABEL read them back.
sample() { samples[$1]="${samples[$1]:-} $2"; }
stat_of() { # median|min|max LABEL
    printf '%s\n' ${samples[$2]:-} | sort -g | awk -v w="$1" '{ v[NR] = $1 }
        END { if (NR == 0) { print "-"; exit }
              if (w == "min") print v[1]; else if (w == "max") print v[NR];
              else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
med() { stat_of median "$1"; }
# range LABEL: "median (min-max)" of the label's runs.
range() { printf '%s (%s-%s)' "$(stat_of median "$1")" "$(stat_of min "$1")" "$(stat_of max "$1")"; }
# timed LABEL CMD...: measure_ok, and keep the seconds as one run of LABEL.
timed() { measure_ok "$@"; sample "$1" "${secs[$1]}"; }
# timed_any LABEL CMD...: the same, whatever CMD's exit status (find + cat
# meets files the change made unreadable).
timed_any() { measure "$@"; sample "$1" "${secs[$1]}"; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }
stored() { du -sb "$1" | awk '{print $1}'; }
# warm PATH...: reads files (or every file under a directory) into the page
# cache, so each tool starts from the same warm cache and none pays for
# another's cold reads (this machine reclaims page cache aggressively).
# Caches are dropped first (when allowed), so no run pays for reclaiming
# what earlier runs left in memory.
warm() {
    drop_caches
    for p in "$@"; do find "$p" -type f -exec cat {} + >/dev/null; done
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0 || a == "-" || b == "-") print "-"; else printf "%.2f", a / b }'; }
mib() { echo $(( $1 >> 20 )); }
declare -A section_s
section_start() { section_t0=$(date +%s); section_name=$1; echo "== $2"; }
section_end() { section_s[$section_name]=$(( $(date +%s) - section_t0 )); }

# The instant-recovery service, in the background (the caller keeps $!).
ir_json() { jq -r "$1" "$work/ir-start.json"; }
start_ir_service() { # BIN REPO CACHE_DIR LISTEN_ADDR ARGS...
    local bin=$1 repo=$2 cache=$3 listen=$4; shift 4
    rm -rf "$cache"; mkdir -p "$cache"
    "$bin" nfs serve --repo "$repo" --cache-dir "$cache" --listen "$listen" \
        --mount-port 0 --nfs-port 0 --nbd-port 0 --allow "$listen" --allow 127.0.0.1 "$@" >"$cache.log" 2>&1 &
    for _ in $(seq 100); do [ -S "$cache/control.sock" ] && return 0; sleep 0.1; done
    echo "nfs serve did not start:"; cat "$cache.log"; exit 1
}

export LIFEBOAT_PASSPHRASE=bench RESTIC_PASSWORD=bench BORG_PASSPHRASE=bench
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
disk="$work/src/disk.raw"
data_bytes=$(du -B1 "$image" | awk '{print $1}')
image_bytes=$(stat -c %s "$image")
echo "== input: $image, $((image_bytes >> 20)) MiB disk, $((data_bytes >> 20)) MiB allocated"

# The three repositories hold the image's full backup and the backup after
# the change, and nothing else (the instant-recovery sections back up their
# other disks into $work/lb-ir), so a later --only run can reuse them.
# needs_repos: a section wanted that reads them (boot and live do not).
needs_repos=no
for s in restore verify ir publish scan api; do want "$s" && needs_repos=yes; done
if ! want backup && [ "$needs_repos" = no ]; then
    run_backup=no
    mkdir -p "$work"
elif ! want backup && [ "$(cat "$work/repos.ok" 2>/dev/null)" = "$size_gib" ]; then
    echo "== reusing the repositories of the last run in $work"
    run_backup=no
    rm -rf "$work/restore"; mkdir -p "$work/restore"
else
    [ -n "$only" ] && ! want backup && echo "== no complete repositories of a ${size_gib} GiB run in $work: running the backup section first"
    run_backup=yes
    rm -rf "$work"; mkdir -p "$work/src" "$work/restore"
fi

if [ "$run_backup" = yes ]; then
    section_start backup "full backup"
    ln "$image" "$disk"      # every tool backs up the same path; the change swaps the file under it
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
    echo "$size_gib" >"$work/repos.ok"

    echo "== peak memory by disk size (lifeboat full backup of a prefix of the image)"
    for g in 2 4; do
        if [ "$g" -lt "$size_gib" ]; then
            prefix="$BENCH_DIR/prefix-${g}g.raw"
            [ -f "$prefix" ] || { cp --sparse=always "$image" "$prefix"; truncate -s "${g}G" "$prefix"; }
            rm -rf "$work/lb$g"; "$lifeboat" repo init --repo "$work/lb$g" >/dev/null
            warm "$prefix"; measure "lifeboat_full_${g}g" "$lifeboat" backup --repo "$work/lb$g" --vm bench "disk0=$prefix"
            rm -rf "$work/lb$g"
        fi
    done
    section_end
fi

if want restore; then
    section_start restore "restore (latest)"
    warm "$work/lb"; measure lifeboat_restore "$lifeboat" restore --repo "$work/lb" bench@latest --to "$work/restore/lb.raw"
    warm "$work/restic"; measure restic_restore restic -q -r "$work/restic" restore latest --target "$work/restore/restic"
    cmp "$work/restore/lb.raw" "$changed" && echo "   lifeboat restore is bit-exact"
    rm -rf "$work/restore"; mkdir -p "$work/restore"
    warm "$work/borg"; measure borg_restore sh -c "cd '$work/restore' && borg extract '$work/borg::incr'"
    rm -rf "$work/restore"
    section_end
fi

if want verify; then
    section_start verify "verify: read every chunk of both restore points, cold cache, $runs alternating runs"
    # Peers: restic check --read-data and borg check --verify-data over the
    # same two backups of the image. The floor of lifeboat's verify on 2
    # cores: max(cold sequential read of the chunk files it reads, in its
    # order; the CPU time of its decode path on one thread / 2), from
    # crates/repo/examples/verify_floor.rs (read + AES-GCM open + zstd
    # decompress + keyed BLAKE3, the code of Repository::read_chunk).
    if "$lifeboat" verify --help | grep -q -- --read-data-subset; then has_subset=yes; else has_subset=no; fi
    [ -n "$prebuilt" ] || cargo build --release --locked -q --workspace --example verify_floor
    "$floor_bin" "$work/lb" paths >"$work/chunk-files"
    for i in $(seq "$runs"); do
        echo "   -- run $i of $runs"
        drop_caches; timed lifeboat_verify "$lifeboat" verify --repo "$work/lb"
        sample lifeboat_verify_cpu "${cpu[lifeboat_verify]}"
        drop_caches; timed restic_check restic -q -r "$work/restic" check --read-data
        drop_caches; timed borg_check borg check --verify-data "$work/borg"
        if [ "$has_subset" = yes ]; then
            drop_caches; timed lifeboat_verify_subset "$lifeboat" verify --repo "$work/lb" --read-data-subset 10%
        fi
        drop_caches; timed floor_cold_read xargs -a "$work/chunk-files" cat
        xargs -a "$work/chunk-files" cat >/dev/null # into the cache: the CPU pass reads no disk
        floor_line=$("$floor_bin" "$work/lb" cpu)
        sample floor_cpu "$(echo "$floor_line" | tr ' ' '\n' | sed -n 's/^cpu_s=//p')"
        printf "   %-28s %8.2f CPU s  (%s)\n" floor_decode_1_thread "$(echo "$floor_line" | tr ' ' '\n' | sed -n 's/^cpu_s=//p')" "$floor_line"
    done
    chunk_count=$(wc -l <"$work/chunk-files")
    chunk_bytes=$(xargs -a "$work/chunk-files" stat -c %s | awk '{ s += $1 } END { print s }')
    floor_s=$(awk -v r="$(med floor_cold_read)" -v c="$(med floor_cpu)" 'BEGIN { f = c / 2; if (r > f) f = r; printf "%.2f", f }')
    section_end
fi

# The baseline's own repository of the same two disks (an older build may
# not open a repository this build made).
if [ -n "$baseline" ] && { want ir || want publish; } && [ ! -f "$work/lb-base/bench.ok" ]; then
    echo "== baseline $baseline ($("$baseline" --version 2>/dev/null || echo '?')): its repository of the image"
    rm -rf "$work/lb-base"; "$baseline" repo init --repo "$work/lb-base" >/dev/null
    "$baseline" backup --repo "$work/lb-base" --vm bench "disk0=$image" >/dev/null
    "$baseline" backup --repo "$work/lb-base" --vm bench "disk0=$changed" >/dev/null
    touch "$work/lb-base/bench.ok"
fi

if want ir; then
    section_start ir "instant recovery (NFS service): session start, sequential read, side by side with nfs-ganesha; $runs alternating runs"
    # nfs-ganesha (VFS backend, with rpcbind) serving the same raw image.
    rm -rf "$work/export"; mkdir -p "$work/export"; ln "$changed" "$work/export/bench.raw"
    cat >"$work/ganesha.conf" <<CONF
NFS_CORE_PARAM { Protocols = 3; }
EXPORT { Export_Id = 1; Path = $work/export; Pseudo = /export; Protocols = 3; Transports = TCP;
         Access_Type = RO; Squash = No_Root_Squash; SecType = sys; FSAL { Name = VFS; } }
CONF
    # What an interrupted run left would hold the ports: stop it first, and
    # stop ours however this run ends.
    pkill -x ganesha.nfsd 2>/dev/null || true
    pkill -x rpcbind 2>/dev/null || true
    sleep 0.5
    rpcbind -w 2>/dev/null || rpcbind || true
    ganesha.nfsd -F -L "$work/ganesha.log" -f "$work/ganesha.conf" -p "$work/ganesha.pid" &
    ganesha_pid=$!
    trap 'kill "$ganesha_pid" 2>/dev/null || true; pkill -x rpcbind 2>/dev/null || true' EXIT
    ganesha_up=no
    # NFSv3 clients mount the export's real path (the pseudo path is NFSv4's).
    for _ in $(seq 100); do nfs-ls "nfs://127.0.0.1$work/export" >/dev/null 2>&1 && { ganesha_up=yes; break; }; sleep 0.2; done
    gurl="nfs://127.0.0.1$work/export/bench.raw"
    [ "$ganesha_up" = yes ] || echo "   nfs-ganesha did not come up (see $work/ganesha.log): no comparison in this run"
    # ir_read LABEL BIN REPO: one run of BIN's service: session start, first
    # and repeated read of the bench disk. A new service each run: its
    # decoded-chunk cache starts empty. The default cache, min(RAM/4, 16 GiB)
    # shared by every session (5.75 GiB on the 23 GiB bench machine), holds
    # the image's 5.2 GiB of data, so the repeated read is served from
    # memory. Connection limits and the client allow list are on (the
    # service's defaults and --allow).
    ir_read() {
        local label=$1 bin=$2 repo=$3 url
        start_ir_service "$bin" "$repo" "$work/ir" 127.0.0.1 --no-portmap
        ir_pid=$!
        "$bin" instant-recovery start --cache-dir "$work/ir" --repo "$repo" bench@latest --json >"$work/ir-start.json"
        sample "${label}_ir_start_ms" "$(ir_json .start_ms)"
        url="nfs://127.0.0.1$(ir_json .session.nfs_dir)/$(ir_json '.session.disks[0].file')?version=3&mountport=$(ir_json .session.service.mount_port)&nfsport=$(ir_json .session.service.nfs_port)"
        drop_caches
        timed "${label}_nfs_cat_first" sh -c "nfs-cat '$url' >/dev/null"
        timed "${label}_nfs_cat_again" sh -c "nfs-cat '$url' >/dev/null"
        kill "$ir_pid"; wait "$ir_pid" 2>/dev/null || true
    }
    for i in $(seq "$runs"); do
        echo "   -- run $i of $runs"
        ir_read lifeboat "$lifeboat" "$work/lb"
        [ -z "$baseline" ] || ir_read baseline "$baseline" "$work/lb-base"
        if [ "$ganesha_up" = yes ]; then
            drop_caches
            timed ganesha_nfs_cat_first sh -c "nfs-cat '$gurl' >/dev/null"
            timed ganesha_nfs_cat_again sh -c "nfs-cat '$gurl' >/dev/null"
        fi
    done
    kill "$ganesha_pid" 2>/dev/null || true
    wait "$ganesha_pid" 2>/dev/null || true
    pkill -x rpcbind 2>/dev/null || true
    trap - EXIT
    # A 64 GiB sparse disk: session start must not depend on the disk size.
    sparse="$BENCH_DIR/sparse-64g.raw"
    [ -f "$sparse" ] || { truncate -s 64G "$sparse"; dd if=/dev/urandom of="$sparse" bs=1M count=16 seek=30000 conv=notrunc status=none; }
    rm -rf "$work/lb-ir"; "$lifeboat" repo init --repo "$work/lb-ir" >/dev/null
    "$lifeboat" backup --repo "$work/lb-ir" --vm sparse64 "disk0=$sparse" >/dev/null
    start_ir_service "$lifeboat" "$work/lb-ir" "$work/ir" 127.0.0.1 --no-portmap
    ir_pid=$!
    "$lifeboat" instant-recovery start --cache-dir "$work/ir" --repo "$work/lb-ir" sparse64@latest --json >"$work/ir-start.json"
    ir_start_64_ms=$(ir_json .start_ms)
    kill "$ir_pid"; wait "$ir_pid" 2>/dev/null || true
    section_end
fi

if want boot; then
    section_start boot "guest boot to port 22: local raw file vs Instant VM Recovery over NFS (TCG)"
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
    [ -d "$work/lb-ir" ] || "$lifeboat" repo init --repo "$work/lb-ir" >/dev/null
    "$lifeboat" backup --repo "$work/lb-ir" --vm guest "disk0=$guest_dir/guest.raw" >/dev/null
    start_ir_service "$lifeboat" "$work/lb-ir" "$work/ir2" 127.0.0.41 --portmap-port 111
    ir_pid=$!
    "$lifeboat" instant-recovery start --cache-dir "$work/ir2" --repo "$work/lb-ir" guest@latest --json >"$work/ir-start.json"
    boot_nfs=$(boot_secs "nfs://127.0.0.41$(ir_json .session.nfs_dir)/$(ir_json '.session.disks[0].file')")
    kill "$ir_pid"; wait "$ir_pid" 2>/dev/null || true
    echo "   boot local ${boot_local} s, from NFS session ${boot_nfs} s"
    section_end
fi

loop_mnt="$work/loop-mount"; mkdir -p "$loop_mnt"
if want publish; then
    section_start publish "data integration: publish, read every file, unpublish; $runs alternating runs"
    # Publish the latest bench restore point (FUSE disk file, loop device, ext4
    # mounted ro,noload), read every file with find + cat, unpublish; the same
    # read over a read-only loop mount of the changed raw image is the peer.
    pub_root="$work/published"
    # publish_run LABEL BIN REPO: publish (timed), read every file, unpublish (timed).
    publish_run() {
        local label=$1 bin=$2 repo=$3 t0 session
        drop_caches
        t0=$(now)
        "$bin" publish --repo "$repo" bench@latest --mount-root "$pub_root" --json >"$work/publish.json"
        sample "${label}_publish_s" "$(elapsed "$t0" "$(now)")"
        session=$(jq -r .session "$work/publish.json")
        drop_caches
        # The VM's mounted filesystems only (<mount-root>/<session>/<vm>/...), as
        # over the loop mount: not the session's .disks/ (the raw disk files).
        timed_any "${label}_find_cat" sh -c "find '$pub_root/$session/bench' -type f -exec cat {} + >/dev/null"
        t0=$(now)
        "$bin" unpublish "$session" >/dev/null
        sample "${label}_unpublish_s" "$(elapsed "$t0" "$(now)")"
        echo "   $label publish $(echo "${samples[${label}_publish_s]}" | awk '{print $NF}') s, unpublish $(echo "${samples[${label}_unpublish_s]}" | awk '{print $NF}') s"
    }
    mount -o ro,noload,loop,offset=1048576 "$changed" "$loop_mnt"
    for i in $(seq "$runs"); do
        echo "   -- run $i of $runs"
        publish_run lifeboat "$lifeboat" "$work/lb"
        [ -z "$baseline" ] || publish_run baseline "$baseline" "$work/lb-base"
        drop_caches
        timed_any loop_find_cat sh -c "find '$loop_mnt' -type f -exec cat {} + >/dev/null"
    done
    umount "$loop_mnt"
    section_end
fi

if want scan; then
    section_start scan "scan: clamscan over a loop mount, full YARA scan, dedup-aware re-scan"
    # clamscan (a tiny database: the EICAR MD5, as the tests make it)
    # over a loop mount of the original image, the same tree as the first
    # restore point; a full YARA-only `lifeboat scan` of that restore point
    # (published, every file read); then the dedup-aware re-scan of the changed
    # one with the same cache (unchanged files recognised by extents, not read).
    # The bench image holds no sample: the full YARA-only scan must exit 8
    # (unproven: nothing found, but no ClamAV database proved it clean; see
    # docs/security.md). The re-scan may also exit 3 (incomplete): the random 1 MiB overwrites can land
    # in inode tables or directories, whose files ext4 then refuses (EBADMSG);
    # the count is printed. Any other exit fails the bench.
    mount -o ro,noload,loop,offset=1048576 "$image" "$loop_mnt"
    clam_db="$work/clamav-db"; mkdir -p "$clam_db"
    eicar='X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'
    printf '%s:%s:Lifeboat.Bench.Eicar\n' "$(printf '%s' "$eicar" | md5sum | cut -d' ' -f1)" "${#eicar}" >"$clam_db/bench.hdb"
    drop_caches
    measure clamscan_loop clamscan -r --quiet -d "$clam_db" "$loop_mnt"
    umount "$loop_mnt"
    rm -rf "$work/scan-cache"
    first_rp=$("$lifeboat" list --repo "$work/lb" --vm bench --json | jq -r '.[0] | "\(.vm)@\(.id)"')
    # lifeboat_scan LABEL RESTORE-POINT: times a YARA-only scan with the bench's
    # scan cache, keeps its JSON in $work/LABEL.json, fails unless it found nothing.
    lifeboat_scan() { # LABEL RESTORE-POINT ACCEPTED-EXIT-CODES...
        local label=$1 rp=$2 rc; shift 2
        drop_caches
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
    section_end
fi

if want api; then
    section_start api "the backup server's API under wrk, idle and during a backup; $runs runs"
    # shellcheck source=scripts/bench-api.sh
    . "$root/scripts/bench-api.sh"
    api_section
    section_end
fi

if want proxies; then
    section_start proxies "backups through proxies: one proxy against local, nothing changed, four proxies at once; $runs runs"
    # shellcheck source=scripts/bench-proxies.sh
    . "$root/scripts/bench-proxies.sh"
    proxies_section
    section_end
fi

if want live; then
    section_start live "live backup of a running VM (QEMU under TCG): lifeboat and virtnbdbackup, $runs alternating runs; the guest's dd during a backup"
    # shellcheck source=scripts/bench-live.sh
    . "$root/scripts/bench-live.sh"
    live_section
    section_end
fi

echo
echo "== results (${size_gib} GiB image, $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), load average at start $bench_load, now $(cut -d' ' -f1-3 /proc/loadavg))"
if [ "$run_backup" = yes ] || want restore; then
    printf "%-34s %10s %10s %10s   %s\n" "" lifeboat restic borg "lifeboat vs restic (target)"
fi
if [ "$run_backup" = yes ]; then
    printf "%-34s %10s %10s %10s   %sx (>= 4)\n" "full backup, s" "${secs[lifeboat_full]}" "${secs[restic_full]}" "${secs[borg_full]}" "$(ratio "${secs[restic_full]}" "${secs[lifeboat_full]}")"
    printf "%-34s %10s %10s %10s   %sx (<= 1)\n" "stored after full, MiB" "$(mib "$lb_full_stored")" "$(mib "$restic_full_stored")" "$(mib "$borg_full_stored")" "$(ratio "$lb_full_stored" "$restic_full_stored")"
    printf "%-34s %10s %10s %10s   %sx (>= 5)\n" "backup after 1% change, s" "${secs[lifeboat_incr]}" "${secs[restic_incr]}" "${secs[borg_incr]}" "$(ratio "${secs[restic_incr]}" "${secs[lifeboat_incr]}")"
fi
if want restore; then
    printf "%-34s %10s %10s %10s   %sx (>= 2.5)\n" "restore, s" "${secs[lifeboat_restore]}" "${secs[restic_restore]}" "${secs[borg_restore]}" "$(ratio "${secs[restic_restore]}" "${secs[lifeboat_restore]}")"
fi
if [ "$run_backup" = yes ]; then
    printf "%-34s %10s %10s %10s\n" "peak RSS full backup, MiB" "$(( ${rss[lifeboat_full]} / 1024 ))" "$(( ${rss[restic_full]} / 1024 ))" "$(( ${rss[borg_full]} / 1024 ))"
    for g in 2 4; do
        [ -n "${rss[lifeboat_full_${g}g]:-}" ] && printf "%-34s %10s\n" "lifeboat peak RSS, ${g} GiB disk, MiB" "$(( ${rss[lifeboat_full_${g}g]} / 1024 ))"
    done
    printf "%-34s %10s\n" "lifeboat full backup MB/s" "$(awk -v b="$image_bytes" -v s="${secs[lifeboat_full]}" 'BEGIN{printf "%.0f", b/s/1e6}')"
fi
if want verify; then
    echo
    echo "== verify (every chunk of both restore points; cold cache; median (min-max) of $runs runs, s)"
    printf "%-34s %s\n" "lifeboat verify" "$(range lifeboat_verify)"
    printf "%-34s %s   lifeboat %sx faster (>= 2)\n" "restic check --read-data" "$(range restic_check)" "$(ratio "$(med restic_check)" "$(med lifeboat_verify)")"
    printf "%-34s %s   lifeboat %sx faster\n" "borg check --verify-data" "$(range borg_check)" "$(ratio "$(med borg_check)" "$(med lifeboat_verify)")"
    if [ "$has_subset" = yes ]; then
        printf "%-34s %s   %sx the full verify (<= 0.15)\n" "lifeboat verify --read-data-subset 10%" "$(range lifeboat_verify_subset)" "$(ratio "$(med lifeboat_verify_subset)" "$(med lifeboat_verify)")"
    else
        printf "%-34s %s\n" "lifeboat verify --read-data-subset 10%" "not available in this build"
    fi
    printf "%-34s %s chunk files, %s MiB stored\n" "chunks verify reads" "$chunk_count" "$(mib "$chunk_bytes")"
    printf "%-34s %s   (%s MB/s)\n" "floor: cold read of them, in order" "$(range floor_cold_read)" "$(awk -v b="$chunk_bytes" -v s="$(med floor_cold_read)" 'BEGIN { printf "%.0f", b / s / 1e6 }')"
    printf "%-34s %s   (/ 2 cores = %s)\n" "floor: decode CPU, 1 thread" "$(range floor_cpu)" "$(awk -v c="$(med floor_cpu)" 'BEGIN { printf "%.2f", c / 2 }')"
    printf "%-34s %s   verify / floor %sx\n" "floor = max(read, CPU / 2)" "$floor_s" "$(ratio "$(med lifeboat_verify)" "$floor_s")"
    printf "%-34s %s   (%sx the floor's decode CPU)\n" "lifeboat verify CPU s (user + sys)" "$(range lifeboat_verify_cpu)" "$(ratio "$(med lifeboat_verify_cpu)" "$(med floor_cpu)")"
fi
mbps() { awk -v b="$image_bytes" -v s="$1" 'BEGIN{ if (s == 0 || s == "-") print "-"; else printf "%.0f", b/s/1e6 }'; }
# mbps_range LABEL: "median (min-max)" in MB/s of the label's runs.
mbps_range() { printf '%s (%s-%s)' "$(mbps "$(med "$1")")" "$(mbps "$(stat_of max "$1")")" "$(mbps "$(stat_of min "$1")")"; }
if want ir; then
    echo
    echo "== instant recovery (median (min-max) of $runs runs)"
    printf "%-34s %s ms  (< 1000)\n" "session start, ${size_gib} GiB image" "$(range lifeboat_ir_start_ms)"
    printf "%-34s %10s ms  (< 1000)\n" "session start, 64 GiB sparse" "$ir_start_64_ms"
    printf "%-34s lifeboat %s, ganesha %s   %sx (>= 1)\n" "nfs-cat first read, MB/s" "$(mbps_range lifeboat_nfs_cat_first)" "$(mbps_range ganesha_nfs_cat_first)" "$(ratio "$(med ganesha_nfs_cat_first)" "$(med lifeboat_nfs_cat_first)")"
    printf "%-34s lifeboat %s, ganesha %s   %sx (>= 1)\n" "nfs-cat repeated, MB/s" "$(mbps_range lifeboat_nfs_cat_again)" "$(mbps_range ganesha_nfs_cat_again)" "$(ratio "$(med ganesha_nfs_cat_again)" "$(med lifeboat_nfs_cat_again)")"
fi
if [ -n "$baseline" ] && { want ir || want publish; }; then
    echo
    echo "== against the baseline $baseline (median (min-max) of $runs runs; this build / baseline, time)"
    vs_base() { # LABEL-SUFFIX TEXT
        printf "%-34s lifeboat %s, baseline %s   %sx\n" "$2" "$(range "lifeboat_$1")" "$(range "baseline_$1")" "$(ratio "$(med "lifeboat_$1")" "$(med "baseline_$1")")"
    }
    if want ir; then
        vs_base nfs_cat_first "nfs-cat first read, s"
        vs_base nfs_cat_again "nfs-cat repeated read, s"
    fi
    if want publish; then
        vs_base publish_s "publish, s"
        vs_base unpublish_s "unpublish, s"
        vs_base find_cat "find + cat published, s"
    fi
fi
if want boot; then
    printf "%-34s %10s %10s   %sx (<= 1.5)\n" "guest boot to port 22, s (nfs, local)" "$boot_nfs" "$boot_local" "$(ratio "$boot_nfs" "$boot_local")"
fi
if want publish || want scan; then
    echo
    echo "== data integration"
fi
if want publish; then
    printf "%-34s %s s   (< 3)\n" "publish ${size_gib} GiB restore point" "$(range lifeboat_publish_s)"
    printf "%-34s %s s   (< 2)\n" "unpublish" "$(range lifeboat_unpublish_s)"
    printf "%-34s lifeboat %s, loop %s   %sx (>= 0.5)\n" "find + cat, s (published, loop)" "$(range lifeboat_find_cat)" "$(range loop_find_cat)" "$(ratio "$(med loop_find_cat)" "$(med lifeboat_find_cat)")"
fi
if want scan; then
    printf "%-34s %10s %10s   %sx (>= 1)\n" "YARA scan vs clamscan, s" "${secs[lifeboat_scan_full]}" "${secs[clamscan_loop]}" "$(ratio "${secs[clamscan_loop]}" "${secs[lifeboat_scan_full]}")"
    printf "%-34s %10s %10s   %sx (>= 10)\n" "re-scan after 1% change vs full scan, s" "${secs[lifeboat_rescan]}" "${secs[lifeboat_scan_full]}" "$(ratio "${secs[lifeboat_scan_full]}" "${secs[lifeboat_rescan]}")"
    printf "%-34s %10s %10s   (%s more skipped after reading)\n" "re-scan files read, skipped unread" "$(scan_field lifeboat_rescan files_scanned)" "$(scan_field lifeboat_rescan skipped_unread_files)" "$(( $(scan_field lifeboat_rescan skipped_unchanged_files) - $(scan_field lifeboat_rescan skipped_unread_files) ))"
fi
want live && live_report
want api && api_report
want proxies && proxies_report
echo
printf "== time: total %s s; by section:" "$(( $(date +%s) - bench_t0 ))"
for s in backup restore verify ir boot publish scan live api proxy; do [ -n "${section_s[$s]:-}" ] && printf " %s %s s," "$s" "${section_s[$s]}"; done
echo
