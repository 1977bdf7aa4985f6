# The bench's `api` section, sourced by scripts/bench.sh (it uses bench.sh's
# helpers: sample, range, med, and $lifeboat, $work, $image, $runs,
# $BENCH_DIR).
#
# The backup server's API under load (issue 17's goal: >= 2,000 req/s with
# p99 < 50 ms while a backup runs): `lifeboat serve` on a free loopback
# port with its own CA, serving the bench repository ($work/lb); wrk
# (Debian's) with 2 threads and 64 connections over HTTPS, the bootstrap
# admin token in the Authorization header, 10 s per URL, on
# GET /api/v1/jobs and GET /api/v1/repositories/bench/restore-points, first
# idle, then while `lifeboat backup` of the bench image into a scratch
# repository runs beside it; --runs times. The server is stopped on every
# exit (trap).

api_dir="$BENCH_DIR/api"
api_pid=""
api_urls=(jobs restore_points)
declare -A api_path=([jobs]=/api/v1/jobs [restore_points]=/api/v1/repositories/bench/restore-points)

api_fail() { echo "api section: $*" >&2; exit 1; }
api_teardown() { [ -z "$api_pid" ] || { kill "$api_pid" 2>/dev/null && wait "$api_pid" 2>/dev/null; }; api_pid=""; }

# api_wrk LABEL PATH SECONDS: one wrk run; samples LABEL_rps and LABEL_p99 (ms).
api_wrk() {
    local out rps p99
    out=$(wrk -t2 -c64 -d"$3"s --latency -H "Authorization: Bearer $api_token" "$api_url$2" 2>&1) ||
        api_fail "wrk on $2 failed: $out"
    if echo "$out" | grep -q "Non-2xx"; then api_fail "wrk on $2 got errors: $out"; fi
    rps=$(echo "$out" | awk '/^Requests\/sec:/ { printf "%.0f", $2 }')
    p99=$(echo "$out" | awk '$1 == "99%" { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
        f = (u == "us") ? 0.001 : (u == "s") ? 1000 : 1; printf "%.1f", v * f }')
    [ -n "$rps" ] && [ -n "$p99" ] || api_fail "could not read wrk's output: $out"
    sample "$1_rps" "$rps"; sample "$1_p99" "$p99"
    printf "   %-34s %8s req/s, p99 %6s ms\n" "$1" "$rps" "$p99"
}

api_section() {
    command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null ||
        api_fail "wrk is missing: apt-get install wrk"
    rm -rf "$api_dir"; mkdir -p "$api_dir"
    local port i u
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    trap api_teardown EXIT
    "$lifeboat" serve --listen "127.0.0.1:$port" --data-dir "$api_dir/data" --repo "bench=$work/lb" \
        >"$api_dir/serve.log" 2>&1 &
    api_pid=$!
    for _ in $(seq 150); do
        [ -s "$api_dir/data/admin.token" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        kill -0 "$api_pid" 2>/dev/null || api_fail "lifeboat serve exited: $(tail -5 "$api_dir/serve.log")"
        sleep 0.2
    done
    api_token=$(cat "$api_dir/data/admin.token")
    api_url="https://127.0.0.1:$port"
    for i in $(seq "$runs"); do
        echo "   -- run $i of $runs"
        for u in "${api_urls[@]}"; do api_wrk "api_idle_$u" "${api_path[$u]}" 10; done
        rm -rf "$api_dir/scratch"
        "$lifeboat" repo init --repo "$api_dir/scratch" >/dev/null
        "$lifeboat" backup --repo "$api_dir/scratch" --vm load "disk0=$image" >/dev/null 2>"$api_dir/backup.err" &
        local backup_pid=$!
        sleep 1
        for u in "${api_urls[@]}"; do api_wrk "api_backup_$u" "${api_path[$u]}" 5; done
        kill -0 "$backup_pid" 2>/dev/null && echo "   (the backup was still running after both wrk runs)" ||
            echo "   NOTE: the backup ended before the second wrk run did"
        wait "$backup_pid" || api_fail "the backup beside wrk failed: $(cat "$api_dir/backup.err")"
        rm -rf "$api_dir/scratch"
    done
    sample api_server_rss "$(awk '/VmHWM/ { printf "%d", $2 / 1024 }' "/proc/$api_pid/status")"
    api_teardown
    trap - EXIT
}

api_report() {
    local u
    echo
    echo "== API under wrk (HTTPS, 2 threads, 64 connections, admin token; median (min-max) of $runs runs)"
    for u in "${api_urls[@]}"; do
        printf "%-34s idle %s req/s, p99 %s ms; during a backup %s req/s, p99 %s ms   (>= 2000, < 50)\n" \
            "GET ${api_path[$u]}" "$(range "api_idle_${u}_rps")" "$(range "api_idle_${u}_p99")" \
            "$(range "api_backup_${u}_rps")" "$(range "api_backup_${u}_p99")"
    done
    printf "%-34s %s MiB\n" "server peak RSS" "$(range api_server_rss)"
}
