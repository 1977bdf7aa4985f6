# The bench's `live` section, sourced by scripts/bench.sh (it uses bench.sh's
# helpers: measure, timed, sample, med, range, ratio, drop_caches, stored, and
# $image, $size_gib, $runs, $lifeboat, $BENCH_DIR, $root).
#
# Live backup of a running VM, side by side with virtnbdbackup (libvirt's
# pull backup: checkpoints + QEMU's NBD export), QEMU 7.2 under TCG (no KVM
# here). The VM's disk is the bench image converted to qcow2 (cached as
# $BENCH_DIR/live-<N>g.qcow2), copied afresh for every run of every tool.
# The VM runs a multiboot kernel that halts the CPU (no OS, no boot disk): a
# running VM whose disk QEMU serves, idle, the same for both tools (128 MiB,
# one vCPU, machine pc, the disk on virtio-blk with cache=none).
#   lifeboat:      QEMU started here with a QMP socket; `lifeboat backup --vm
#                  live qmp:SOCKET --json` full, the change, the incremental.
#   virtnbdbackup: the same QEMU binary as the <emulator> of a libvirt domain
#                  (libvirtd started here unless one answers already);
#                  `virtnbdbackup -d DOMAIN -l full -o DIR`, the change, `-l inc`.
# The change: 80 writes of 1 MiB of fixed pseudo-random data at the offsets of
# the bench image's change (the same seed), made inside QEMU through the
# device's BlockBackend with HMP `qemu-io` (the path guest writes take): over
# lifeboat's QMP socket, and with `virsh qemu-monitor-command --hmp` for the
# domain. Runs alternate the tools (run 1 lifeboat first, run 2 virtnbdbackup
# first, ...), caches are dropped before every backup.
#
# The guest's write throughput: the test guest (scripts/build-test-guest.sh)
# booted with a second disk (4 GiB qcow2: the first 2 GiB of the bench image,
# then a region the warm-up dd allocates), `dd if=/dev/zero of=/dev/vdb bs=1M
# count=1024 seek=2048 oflag=direct` timed inside the guest (busybox time),
# idle and while a full backup of the VM reads it (dd starts when the
# backup's NBD export is up): a full lifeboat live backup (a fresh repository
# each run) of the guest under QEMU started here, then `virtnbdbackup -l
# full` of the same guest, on fresh copies of its disks, as a libvirt domain
# (the same fleecing by copy-before-write in QEMU, so the two show what is
# fleecing's and what is the tool's).
#
# Everything started here (QEMU processes, the domain, libvirtd) is stopped by
# live_teardown, also on failure (trap). Every tool run is bounded by timeout.

live_dir="$BENCH_DIR/live"
live_helper="$root/scripts/bench_live.py"
live_domain=lifeboat-bench-live
live_disk_dev=/machine/peripheral/disk0/virtio-backend
live_pids=()
live_bg_pid=""   # the backup running beside the guest's dd
live_libvirtd_pid=""
live_domain_defined=no
live_timeout=$(( 600 + size_gib * 300 ))   # seconds for one backup run
live_dd_mib=1024
export LIBVIRT_DEFAULT_URI=qemu:///system

live_fail() { echo "live section: $*" >&2; exit 1; }

live_teardown() {
    set +e
    local p
    [ -z "$live_bg_pid" ] || { kill "$live_bg_pid" 2>/dev/null && wait "$live_bg_pid" 2>/dev/null; }
    live_bg_pid=""
    for p in "${live_pids[@]}"; do
        kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
    done
    live_pids=()
    if [ "$live_domain_defined" = yes ]; then
        virsh -q destroy "$live_domain" >/dev/null 2>&1
        virsh -q undefine "$live_domain" --checkpoints-metadata >/dev/null 2>&1
        live_domain_defined=no
    fi
    if [ -n "$live_libvirtd_pid" ]; then
        kill "$live_libvirtd_pid" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$live_libvirtd_pid" 2>/dev/null || break; sleep 0.1; done
        live_libvirtd_pid=""
    fi
    set -e
}

# Packages: libvirt's daemon and virtnbdbackup. qemu-system-x86 must not come
# along (it would downgrade qemu-utils 10 to 7.2): the extracted QEMU is used.
live_install() {
    local pkgs=(virtnbdbackup libvirt-daemon-driver-qemu libvirt-daemon libvirt-clients python3) missing=() p
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "   installing ${missing[*]}"
    local before plan
    before=$(qemu-img --version | head -1)
    plan=$(DEBIAN_FRONTEND=noninteractive apt-get install -s --no-install-recommends "${missing[@]}" 2>&1) ||
        live_fail "apt-get cannot install ${missing[*]}: $(echo "$plan" | tail -3)"
    if echo "$plan" | grep -E '^Inst (qemu-system|qemu-utils|qemu-block)' | grep -q .; then
        live_fail "installing ${missing[*]} would install or change $(echo "$plan" | grep -E '^Inst qemu' | cut -d' ' -f2 | tr '\n' ' '); install them by hand without it"
    fi
    DEBIAN_FRONTEND=noninteractive nice -n 10 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
        live_fail "apt-get install ${missing[*]} failed"
    [ "$(qemu-img --version | head -1)" = "$before" ] || live_fail "installing ${missing[*]} changed qemu-img: $before -> $(qemu-img --version | head -1)"
}

# libvirtd for virtnbdbackup: QEMU runs as root without security driver,
# namespaces or cgroups (none work in this container). Uses a libvirtd that
# already answers, else starts one (stopped by live_teardown).
live_libvirt() {
    local conf=/etc/libvirt/qemu.conf marker="# Written by Lifeboat's scripts/bench-live.sh"
    if [ ! -f "$conf" ] || head -1 "$conf" | grep -qF "$marker"; then
        mkdir -p /etc/libvirt
        cat >"$conf" <<CONF
$marker: QEMU runs as root, without security
# driver, namespaces or cgroups (a container without them).
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
namespaces = []
cgroup_controllers = []
stdio_handler = "file"
CONF
    else
        echo "   NOTE: $conf is not the bench's; using it as it is"
    fi
    # The QEMU driver resolves its built-in default user before reading
    # qemu.conf: without the account libvirtd's QEMU driver does not start.
    id libvirt-qemu >/dev/null 2>&1 || useradd -r -M -d /var/lib/libvirt -s /usr/sbin/nologin -U libvirt-qemu
    if virsh -c qemu:///system -q list --all >/dev/null 2>&1; then
        echo "   using the libvirtd that already answers on qemu:///system"
        return 0
    fi
    printf 'auth_unix_rw = "none"\nauth_unix_ro = "none"\nlog_outputs = "3:file:%s/libvirtd.log"\n' "$live_dir" >"$live_dir/libvirtd.conf"
    rm -f "$live_dir/libvirtd.pid"
    libvirtd -d -f "$live_dir/libvirtd.conf" -p "$live_dir/libvirtd.pid" ||
        live_fail "libvirtd did not start: $(tail -3 "$live_dir/libvirtd.log" 2>/dev/null)"
    for _ in $(seq 100); do
        [ -s "$live_dir/libvirtd.pid" ] && live_libvirtd_pid=$(cat "$live_dir/libvirtd.pid")
        virsh -c qemu:///system -q list --all >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    live_fail "libvirtd does not answer on qemu:///system after 20 s: $(grep -v dmidecode "$live_dir/libvirtd.log" 2>/dev/null | tail -3)"
}

# live_qemu_start NAME ARGS...: starts QEMU in the background with a QMP
# socket $live_dir/NAME.qmp; returns once the socket exists.
live_qemu_start() {
    local name=$1; shift
    rm -f "$live_dir/$name.qmp"
    "$live_qemu" -accel tcg -machine pc -m 128 -smp 1 -display none -monitor none -no-reboot \
        -qmp "unix:$live_dir/$name.qmp,server=on,wait=off" "$@" </dev/null >"$live_dir/$name.log" 2>&1 &
    live_pids+=($!)
    local pid=$!
    for _ in $(seq 150); do
        [ -S "$live_dir/$name.qmp" ] && return 0
        kill -0 "$pid" 2>/dev/null || live_fail "QEMU ($name) exited: $(tail -5 "$live_dir/$name.log")"
        sleep 0.2
    done
    live_fail "QEMU ($name) did not open its QMP socket in 30 s: $(tail -5 "$live_dir/$name.log")"
}
live_qemu_stop() { # NAME: quit through QMP, then reap it
    python3 "$live_helper" qmp "$live_dir/$1.qmp" '{"execute":"quit"}' >/dev/null 2>&1 || true
    local p # one QEMU runs at a time
    for p in "${live_pids[@]}"; do
        timeout 10 tail --pid="$p" -f /dev/null || kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    live_pids=()
}
live_blockdev() { # FILE NODE: a qcow2 disk with cache=none, as libvirt's cache='none'
    printf '{"driver":"qcow2","node-name":"%s","file":{"driver":"file","filename":"%s","cache":{"direct":true}}}' "$2" "$1"
}

# The change, through QEMU: HMP qemu-io lines for the device.
live_change_lines() { # DEVICE-QOM-PATH
    local i=0 mib
    while read -r mib; do
        printf 'qemu-io -d %s "write -s %s/chg/%03d.bin %sM 1M"\n' "$1" "$live_dir" "$i" "$mib"
        i=$((i + 1))
    done <"$live_dir/offsets"
}
to_mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
# proc_cpu PID: CPU seconds (user + system) the process used so far.
proc_cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }
load1() { cut -d' ' -f1 /proc/loadavg; }
# live_timed LABEL CMD...: timed, plus the load average beside it.
live_timed() {
    timed "$@"
    sample "$1_cpu" "${cpu[$1]}"
    local l; l=$(load1); sample "$1_load" "$l"
    echo "      (load average $l)"
}

live_one_lifeboat() { # RUN
    local disk="$live_dir/lb.qcow2" repo="$live_dir/lb-repo" w="$live_dir/lb-work"
    cp "$live_base" "$disk"
    rm -rf "$repo" "$w"; mkdir -m 0700 "$w"
    "$lifeboat" repo init --repo "$repo" --json >"$live_dir/repo-init.json"
    live_qemu_start lbvm -nic none -serial none -kernel "$live_dir/halt.mb" \
        -blockdev "$(live_blockdev "$disk" fmt0)" -device virtio-blk-pci,drive=fmt0,id=disk0
    local qpid=${live_pids[-1]} q0
    drop_caches
    q0=$(proc_cpu "$qpid")
    live_timed lb_live_full timeout "$live_timeout" sh -c "'$lifeboat' backup --repo '$repo' --vm live 'qmp:$live_dir/lbvm.qmp' --work-dir '$w' --json >'$live_dir/lb-full.json'"
    sample lb_live_full_qemu_cpu "$(awk -v a="$q0" -v b="$(proc_cpu "$qpid")" 'BEGIN { printf "%.2f", b - a }')"
    sample lb_live_full_rss "$(( ${rss[lb_live_full]} / 1024 ))"
    sample lb_live_full_stored "$(to_mib "$(stored "$repo")")"
    local lines=(); mapfile -t lines < <(live_change_lines "$live_disk_dev")
    python3 "$live_helper" hmp "$live_dir/lbvm.qmp" "${lines[@]}" || live_fail "the change through lifeboat's VM's QMP failed"
    drop_caches
    live_timed lb_live_incr timeout "$live_timeout" sh -c "'$lifeboat' backup --repo '$repo' --vm live 'qmp:$live_dir/lbvm.qmp' --work-dir '$w' --json >'$live_dir/lb-incr.json'"
    sample lb_live_incr_rss "$(( ${rss[lb_live_incr]} / 1024 ))"
    sample lb_live_stored "$(to_mib "$(stored "$repo")")"
    local j="$live_dir/lb-incr.json"
    [ "$(jq -r '[.disks[].read] | unique | join(",")' "$j")" = incremental ] ||
        live_fail "lifeboat's second backup was not incremental: $(jq -c '[.disks[] | {disk, read, why_full}]' "$j")"
    sample lb_incr_read "$(to_mib "$(jq '[.disks[].bytes_read] | add' "$j")")"
    sample lb_incr_changed "$(to_mib "$(jq '[.disks[].changed_bytes] | add' "$j")")"
    sample lb_incr_uploaded "$(to_mib "$(jq '[.disks[].uploaded_bytes] | add' "$j")")"
    sample lb_full_read "$(to_mib "$(jq '[.disks[].bytes_read] | add' "$live_dir/lb-full.json")")"
    sample lb_paused_ms "$(jq '.paused_ms' "$j")"
    echo "      incremental: read $(( $(jq '[.disks[].bytes_read] | add' "$j") >> 20 )) MiB, changed $(( $(jq '[.disks[].changed_bytes] | add' "$j") >> 20 )) MiB, uploaded $(( $(jq '[.disks[].uploaded_bytes] | add' "$j") >> 20 )) MiB, guest paused $(jq .paused_ms "$j") ms"
    live_qemu_stop lbvm
    rm -rf "$repo" "$w" "$disk"
}

# live_domain_xml MEMORY_MIB OS_EXTRA DEVICES EXTRA: the domain, on the
# bench's QEMU, TCG, machine pc, one vCPU.
live_domain_xml() {
    cat <<XML
<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>$live_domain</name>
  <memory unit='MiB'>$1</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>$2</os>
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <emulator>$live_qemu</emulator>$3
    <memballoon model='none'/>
  </devices>$4
</domain>
XML
}
live_define_start() { # XML: defines and starts $live_domain
    live_undefine # left by a killed run
    virsh -q define "$1" >/dev/null || live_fail "virsh define $1 failed"
    live_domain_defined=yes
    virsh -q start "$live_domain" >/dev/null ||
        live_fail "virsh start $live_domain failed: $(tail -5 "/var/log/libvirt/qemu/$live_domain.log" 2>/dev/null)"
}
live_undefine() {
    if virsh -q dominfo "$live_domain" >/dev/null 2>&1; then
        virsh -q destroy "$live_domain" >/dev/null 2>&1 || true
        virsh -q undefine "$live_domain" --checkpoints-metadata >/dev/null 2>&1 ||
            live_fail "virsh undefine $live_domain failed"
    fi
    live_domain_defined=no
}
live_vnb_bytes() { # LOG: the data extents virtnbdbackup read
    grep -o '[0-9]* bytes of data extents to backup' "$1" | awk '{ s += $1 } END { print s + 0 }'
}
live_one_vnb() { # RUN
    local disk="$live_dir/vnb.qcow2" out="$live_dir/vnb-out"
    cp "$live_base" "$disk"
    rm -rf "$out"
    live_domain_xml 128 "<kernel>$live_dir/halt.mb</kernel>" "
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='$disk'/>
      <target dev='vda' bus='virtio'/>
    </disk>" "" >"$live_dir/domain.xml"
    live_define_start "$live_dir/domain.xml"
    local qpid q0
    qpid=$(cat "/run/libvirt/qemu/$live_domain.pid")
    drop_caches
    q0=$(proc_cpu "$qpid")
    live_timed vnb_live_full timeout "$live_timeout" virtnbdbackup -n -d "$live_domain" -l full -o "$out"
    sample vnb_live_full_qemu_cpu "$(awk -v a="$q0" -v b="$(proc_cpu "$qpid")" 'BEGIN { printf "%.2f", b - a }')"
    sample vnb_live_full_rss "$(( ${rss[vnb_live_full]} / 1024 ))"
    sample vnb_live_full_stored "$(to_mib "$(stored "$out")")"
    sample vnb_full_read "$(to_mib "$(live_vnb_bytes "$BENCH_DIR/vnb_live_full.err")")"
    local line reply
    while read -r line; do
        reply=$(virsh qemu-monitor-command "$live_domain" --hmp "$line") || live_fail "virsh qemu-monitor-command failed: $line"
        [ -z "$(echo "$reply" | tr -d '[:space:]')" ] || live_fail "the change in the domain: $line: $reply"
    done < <(live_change_lines /machine/peripheral/virtio-disk0/virtio-backend)
    drop_caches
    live_timed vnb_live_incr timeout "$live_timeout" virtnbdbackup -n -d "$live_domain" -l inc -o "$out"
    sample vnb_live_incr_rss "$(( ${rss[vnb_live_incr]} / 1024 ))"
    sample vnb_live_stored "$(to_mib "$(stored "$out")")"
    sample vnb_incr_read "$(to_mib "$(live_vnb_bytes "$BENCH_DIR/vnb_live_incr.err")")"
    echo "      incremental: read $(( $(live_vnb_bytes "$BENCH_DIR/vnb_live_incr.err") >> 20 )) MiB (data extents of the checkpoint's bitmap)"
    live_undefine
    rm -rf "$out" "$disk"
}

# The guest's write throughput, idle and during a full backup: the test
# guest under QEMU started here (lifeboat), then the same guest and fresh
# copies of its disks as a libvirt domain (virtnbdbackup -l full).
live_guest_fresh_disks() {
    cp --sparse=always "$BENCH_DIR/guest/guest.raw" "$live_dir/guest.raw"
    cp "$live_data_base" "$live_dir/data.qcow2"
    rm -f "$live_dir/guest-serial.log"
}
live_guest_boot_wait() { # PORT: until the guest is ready, then the warm-up dd
    local i
    for i in $(seq 300); do
        grep -q LIFEBOAT-GUEST-READY "$live_dir/guest-serial.log" 2>/dev/null && break
        [ "$i" -lt 300 ] || live_fail "the test guest did not boot in 300 s: $(tail -5 "$live_dir/guest-serial.log" 2>/dev/null)"
        sleep 1
    done
    live_guest_port=$1
    # Allocates the region the timed dd writes: every run overwrites allocated clusters.
    live_guest "$live_dd_line" >/dev/null || live_fail "dd in the guest failed: $(live_guest "$live_dd_line" 2>&1 | tail -3)"
}
live_guest() { timeout 600 python3 "$live_helper" guest "$live_guest_port" 590 "$1"; }
live_guest_dd_mbs() { # the dd's MB/s, timed by the guest's busybox time
    local s
    s=$(live_guest "time $live_dd_line" | sed -n 's/^real[[:space:]]*\([0-9]*\)m[[:space:]]*\([0-9.]*\)s$/\1 \2/p' | awk '{ print $1 * 60 + $2 }')
    [ -n "$s" ] || live_fail "no time from the guest's dd"
    awk -v s="$s" -v m="$live_dd_mib" 'BEGIN { printf "%.1f", m * 1.048576 / s }'
}
# live_dd_runs TOOL SOCKET CMD...: per run, dd idle, then CMD (a full backup)
# in the background and dd once SOCKET (its NBD export) exists.
live_dd_runs() {
    local tool=$1 sock=$2 i bpid t0 overlap mbs; shift 2
    for i in $(seq "$runs"); do
        drop_caches
        mbs=$(live_guest_dd_mbs) # (an assignment: a failure stops the bench)
        sample "dd_idle_$tool" "$mbs"
        rm -rf "$live_dir/dd-out" "$live_dir/dd-work" "$sock"
        mkdir -m 0700 "$live_dir/dd-work"
        [ "$tool" != lifeboat ] || "$lifeboat" repo init --repo "$live_dir/dd-out" >/dev/null
        drop_caches
        t0=$(now)
        # timeout first: killing it (live_teardown) signals its whole process group.
        timeout "$live_timeout" /usr/bin/time -f "__TIME__ %e %U %S" "$@" >"$live_dir/dd-backup.out" 2>"$live_dir/dd-backup.err" &
        bpid=$!
        live_bg_pid=$bpid
        for _ in $(seq 1200); do [ -S "$sock" ] && break; kill -0 "$bpid" 2>/dev/null || break; sleep 0.05; done
        [ -S "$sock" ] || { wait "$bpid" || true; live_bg_pid=""; live_fail "$tool's NBD export did not come up: $(tail -5 "$live_dir/dd-backup.err")"; }
        mbs=$(live_guest_dd_mbs)
        if kill -0 "$bpid" 2>/dev/null; then overlap=yes; else overlap=no; fi
        wait "$bpid" || { live_bg_pid=""; live_fail "$tool's backup during dd failed: $(tail -5 "$live_dir/dd-backup.err")"; }
        live_bg_pid=""
        sample "dd_backup_$tool" "$mbs"
        sample "dd_backup_${tool}_s" "$(elapsed "$t0" "$(now)")"
        sample "dd_backup_${tool}_load" "$(load1)"
        sample "dd_backup_${tool}_cores" "$(grep __TIME__ "$live_dir/dd-backup.err" | awk '{ printf "%.2f", ($3 + $4) / $2 }')"
        last() { echo "${samples[$1]}" | awk '{print $NF}'; }
        echo "      $tool run $i: guest dd idle $(last "dd_idle_$tool") MB/s, during the backup $mbs MB/s (dd within the backup: $overlap; backup $(last "dd_backup_${tool}_s") s using $(last "dd_backup_${tool}_cores") cores, load $(load1))"
        [ "$overlap" = yes ] || echo "      NOTE: the backup finished before the guest's dd: the rate is partly idle"
    done
    rm -rf "$live_dir/dd-out" "$live_dir/dd-work"
}
live_guest_dd() {
    local port=$((20000 + RANDOM % 20000))
    live_dd_line="dd if=/dev/zero of=/dev/vdb bs=1M count=$live_dd_mib seek=2048 oflag=direct"
    live_guest_fresh_disks
    live_qemu_start guest -m 256 -serial "file:$live_dir/guest-serial.log" \
        -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:23" -device virtio-net-pci,netdev=n0,romfile= \
        -drive "file=$live_dir/guest.raw,format=raw,if=none,id=root,cache=writeback" \
        -device virtio-blk-pci,drive=root,id=disk0,bootindex=0 \
        -blockdev "$(live_blockdev "$live_dir/data.qcow2" data0)" -device virtio-blk-pci,drive=data0,id=disk1
    live_guest_boot_wait "$port"
    live_dd_runs lifeboat "$live_dir/dd-work/nbd.sock" \
        "$lifeboat" backup --repo "$live_dir/dd-out" --vm ddguest "qmp:$live_dir/guest.qmp" --work-dir "$live_dir/dd-work" --json
    live_qemu_stop guest

    port=$((20000 + RANDOM % 20000))
    live_guest_fresh_disks
    # User networking with the port forward is not in libvirt's XML without
    # passt: passed through as QEMU arguments.
    live_domain_xml 256 "" "
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' cache='writeback'/>
      <source file='$live_dir/guest.raw'/>
      <target dev='vda' bus='virtio'/>
      <boot order='1'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='$live_dir/data.qcow2'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <serial type='file'><source path='$live_dir/guest-serial.log'/><target port='0'/></serial>" "
  <qemu:commandline>
    <qemu:arg value='-netdev'/><qemu:arg value='user,id=n0,hostfwd=tcp:127.0.0.1:$port-:23'/>
    <qemu:arg value='-device'/><qemu:arg value='virtio-net-pci,netdev=n0,romfile=,bus=pci.0,addr=0x10'/>
  </qemu:commandline>" >"$live_dir/guest-domain.xml"
    live_define_start "$live_dir/guest-domain.xml"
    live_guest_boot_wait "$port"
    live_dd_runs vnb "$live_dir/dd-vnb.sock" \
        virtnbdbackup -n -d "$live_domain" -l full -o "$live_dir/dd-out" -f "$live_dir/dd-vnb.sock"
    live_undefine
    rm -f "$live_dir/guest.raw" "$live_dir/data.qcow2"
}

live_section() {
    live_install
    command -v jq >/dev/null || live_fail "jq is missing (apt-get install jq)"
    scripts/build-test-guest.sh "$BENCH_DIR/guest" >/dev/null || live_fail "scripts/build-test-guest.sh $BENCH_DIR/guest failed (it provides QEMU 7.2 and the test guest)"
    live_qemu="$BENCH_DIR/guest/bin/qemu-system-x86_64"
    [ -x "$live_qemu" ] || live_fail "no QEMU at $live_qemu (scripts/build-test-guest.sh makes it)"
    rm -rf "$live_dir"; mkdir -p "$live_dir/chg"
    trap 'live_teardown' EXIT
    trap 'exit 130' INT TERM
    # The VM's disk and the dd guest's data disk, converted once.
    live_base="$BENCH_DIR/live-${size_gib}g.qcow2"
    if [ ! -f "$live_base" ]; then
        echo "   converting $image to $live_base (once)"
        nice -n 10 qemu-img convert -f raw -O qcow2 "$image" "$live_base.tmp" && mv "$live_base.tmp" "$live_base"
    fi
    live_data_base="$BENCH_DIR/live-data.qcow2"
    if [ ! -f "$live_data_base" ]; then
        local mib=$(( size_gib >= 2 ? 2048 : size_gib << 10 ))
        nice -n 10 qemu-img dd -f raw -O qcow2 bs=1M count="$mib" if="$image" of="$live_data_base.tmp"
        qemu-img resize -q "$live_data_base.tmp" 4G && mv "$live_data_base.tmp" "$live_data_base"
    fi
    python3 "$live_helper" halt-kernel "$live_dir/halt.mb"
    python3 "$live_helper" change-files "$live_dir/chg" 80 42
    # The offsets of the bench image's change (bench.sh: the same seed and formula).
    RANDOM=42
    for _ in $(seq 80); do echo $(( (RANDOM * 32768 + RANDOM) % ((size_gib << 10) - 1) )); done >"$live_dir/offsets"
    live_libvirt
    local i
    for i in $(seq "$runs"); do
        echo "   -- run $i of $runs"
        if [ $((i % 2)) = 1 ]; then live_one_lifeboat "$i"; live_one_vnb "$i"; else live_one_vnb "$i"; live_one_lifeboat "$i"; fi
    done
    echo "   -- the guest's write throughput (dd of $live_dd_mib MiB, oflag=direct), idle and during a full live backup"
    live_guest_dd
    live_teardown
    trap - EXIT INT TERM
}

live_report() {
    local cs_mib
    cs_mib=$(( $(jq -r .chunk_size "$live_dir/repo-init.json") >> 20 ))
    echo
    echo "== live backup of a running VM (QEMU 7.2 under TCG, ${size_gib} GiB qcow2 disk, $(( $(stat -c %s "$live_base") >> 20 )) MiB allocated; median (min-max) of $runs runs)"
    printf "%-40s %s s (load %s)\n" "lifeboat full" "$(range lb_live_full)" "$(range lb_live_full_load)"
    printf "%-40s %s s (load %s)\n" "virtnbdbackup full" "$(range vnb_live_full)" "$(range vnb_live_full_load)"
    printf "%-40s %sx (>= 2)\n" "full: lifeboat faster by" "$(ratio "$(med vnb_live_full)" "$(med lb_live_full)")"
    printf "%-40s %s s (load %s)\n" "lifeboat after the 1% change" "$(range lb_live_incr)" "$(range lb_live_incr_load)"
    printf "%-40s %s s (load %s)\n" "virtnbdbackup after the 1% change" "$(range vnb_live_incr)" "$(range vnb_live_incr_load)"
    printf "%-40s %sx (>= 2)\n" "incremental: lifeboat faster by" "$(ratio "$(med vnb_live_incr)" "$(med lb_live_incr)")"
    printf "%-40s %sx (>= 20)\n" "lifeboat full / incremental" "$(ratio "$(med lb_live_full)" "$(med lb_live_incr)")"
    printf "%-40s read %s MiB, changed %s MiB (80 x 1 MiB written), uploaded %s MiB; %s MiB chunks\n" "lifeboat incremental" \
        "$(med lb_incr_read)" "$(med lb_incr_changed)" "$(med lb_incr_uploaded)" "$cs_mib"
    printf "%-40s %s MiB (the checkpoint's bitmap, 64 KiB granules)\n" "virtnbdbackup incremental read" "$(med vnb_incr_read)"
    printf "%-40s lifeboat %s MiB, virtnbdbackup %s MiB\n" "full backup read" "$(med lb_full_read)" "$(med vnb_full_read)"
    printf "%-40s full %s, incremental %s MiB (<= 256); virtnbdbackup %s, %s\n" "lifeboat peak RSS" "$(range lb_live_full_rss)" "$(range lb_live_incr_rss)" "$(range vnb_live_full_rss)" "$(range vnb_live_incr_rss)"
    printf "%-40s lifeboat %s, virtnbdbackup %s MiB   %sx (<= 1)\n" "stored after full" "$(med lb_live_full_stored)" "$(med vnb_live_full_stored)" "$(ratio "$(med lb_live_full_stored)" "$(med vnb_live_full_stored)")"
    printf "%-40s lifeboat %s, virtnbdbackup %s MiB   %sx (<= 1)\n" "stored after both" "$(med lb_live_stored)" "$(med vnb_live_stored)" "$(ratio "$(med lb_live_stored)" "$(med vnb_live_stored)")"
    printf "%-40s lifeboat %s, %s; virtnbdbackup %s, %s\n" "CPU s (user + sys), full, incremental" "$(range lb_live_full_cpu)" "$(range lb_live_incr_cpu)" "$(range vnb_live_full_cpu)" "$(range vnb_live_incr_cpu)"
    printf "%-40s lifeboat %s, virtnbdbackup %s (QEMU serves the export)\n" "QEMU's CPU s during the full backup" "$(range lb_live_full_qemu_cpu)" "$(range vnb_live_full_qemu_cpu)"
    printf "%-40s %s ms\n" "lifeboat guest pause (incremental)" "$(range lb_paused_ms)"
    local t name
    for t in lifeboat vnb; do
        name=$([ $t = lifeboat ] && echo lifeboat || echo virtnbdbackup)
        printf "%-40s idle %s, during %s MB/s   %sx (>= 0.7)\n" "guest dd $live_dd_mib MiB, $name backup" \
            "$(range "dd_idle_$t")" "$(range "dd_backup_$t")" "$(ratio "$(med "dd_backup_$t")" "$(med "dd_idle_$t")")"
        printf "%-40s %s s, %s cores (CPU s / wall s), load %s\n" "   $name backup of the dd guest" "$(range "dd_backup_${t}_s")" "$(range "dd_backup_${t}_cores")" "$(range "dd_backup_${t}_load")"
    done
}
