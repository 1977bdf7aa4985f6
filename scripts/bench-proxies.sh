# The bench's `proxies` section, sourced by scripts/bench.sh (it uses
# bench.sh's helpers: timed, sample, range, med, ratio, drop_caches, and
# $lifeboat, $image, $runs, $BENCH_DIR).
#
# Issue 17's speed and load goals for proxies:
# - the bench image backed up by a job on an enrolled proxy (server and
#   proxy on loopback, the proxy pulling work over mutual TLS) against the
#   local `lifeboat backup` of the same image into a fresh repository,
#   cold cache, alternating, --runs times: goal >= 0.8x the local speed;
# - the same job run again with nothing changed: the share of the image's
#   bytes it stored (goal < 1 %);
# - four proxies backing up four VMs at once (four different 1 GiB slices
#   of the bench image, one job each on its own proxy): every job
#   succeeds; the wall time and the server's peak RSS (VmHWM).
# Every run gets a fresh repository (the server serves one per run), so no
# run dedups against another. Server and proxies are stopped on every exit.

px_dir="$BENCH_DIR/proxies"
px_pids=()

px_fail() { echo "proxies section: $*" >&2; exit 1; }
px_teardown() {
    local p
    for p in "${px_pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${px_pids[@]}"; do wait "$p" 2>/dev/null || true; done
    px_pids=()
}
# px_cli ARGS...: the CLI against the bench server with the admin token
# (a command, not a function, so `timed` can run it).
px_cli() { env "${px_env[@]}" "$lifeboat" "$@"; }
# px_proxy NAME: enrolls proxy NAME and starts it pulling work.
px_proxy() {
    local secret
    secret=$(px_cli proxy-enrollment create --json | jq -r .secret)
    LIFEBOAT_SERVER="$px_url" LIFEBOAT_CA="$px_dir/data/tls/ca.pem" \
        "$lifeboat" proxy --check --data-dir "$px_dir/$1" --enroll "$secret" --name "$1" \
        >"$px_dir/$1.enroll.log" 2>&1 || px_fail "enrolling $1 failed: $(cat "$px_dir/$1.enroll.log")"
    LIFEBOAT_SERVER="$px_url" "$lifeboat" proxy --data-dir "$px_dir/$1" --max-jobs 1 \
        --source-root "$px_dir" --source-root "$(dirname "$image")" >"$px_dir/$1.log" 2>&1 &
    px_pids+=($!)
}
# px_stored JOB: the bytes the job's newest session stored.
px_stored() { px_cli session list --job "$1" --json | jq -r '.[0].bytes_stored'; }

proxies_section() {
    rm -rf "$px_dir"; mkdir -p "$px_dir"
    local i q port repos=() slice
    trap px_teardown EXIT
    # Four different 1 GiB slices of the image: four VMs that share little.
    for q in 1 2 3 4; do
        slice="$px_dir/vm$q.raw"
        dd if="$image" of="$slice" bs=1M skip=$(( (q - 1) * 1024 )) count=1024 conv=sparse status=none
    done
    for i in $(seq "$runs"); do
        "$lifeboat" repo init --repo "$px_dir/r$i" >/dev/null
        "$lifeboat" repo init --repo "$px_dir/four$i" >/dev/null
        repos+=(--repo "r$i=$px_dir/r$i" --repo "four$i=$px_dir/four$i")
    done
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$lifeboat" serve --listen "127.0.0.1:$port" --data-dir "$px_dir/data" "${repos[@]}" \
        --max-jobs 1 >"$px_dir/serve.log" 2>&1 &
    px_server=$!
    px_pids+=("$px_server")
    for _ in $(seq 150); do
        [ -s "$px_dir/data/admin.token" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        kill -0 "$px_server" 2>/dev/null || px_fail "lifeboat serve exited: $(tail -5 "$px_dir/serve.log")"
        sleep 0.2
    done
    px_url="https://localhost:$port"
    px_env=(LIFEBOAT_SERVER="$px_url" LIFEBOAT_CA="$px_dir/data/tls/ca.pem" LIFEBOAT_TOKEN="$(cat "$px_dir/data/admin.token")")
    for q in 1 2 3 4; do px_proxy "p$q"; done

    for i in $(seq "$runs"); do
        echo "   -- run $i of $runs"
        rm -rf "$px_dir/local"
        "$lifeboat" repo init --repo "$px_dir/local" >/dev/null
        drop_caches; timed px_local "$lifeboat" backup --repo "$px_dir/local" --vm bench "disk0=$image"
        rm -rf "$px_dir/local"
        px_cli job create "one$i" --repo-name "r$i" --source "disk0=raw:$image" --proxy p1 >/dev/null
        drop_caches; timed px_proxy_full env "${px_env[@]}" "$lifeboat" job run "one$i" --wait
        timed px_proxy_again env "${px_env[@]}" "$lifeboat" job run "one$i" --wait
        sample px_again_share "$(awk -v s="$(px_stored "one$i")" -v t="$image_bytes" 'BEGIN { printf "%.4f", 100 * s / t }')"
        for q in 1 2 3 4; do
            px_cli job create "vm$q-$i" --repo-name "four$i" --source "disk0=raw:$px_dir/vm$q.raw" --proxy "p$q" >/dev/null
        done
        drop_caches
        local t0 t1 pids=() failed=0
        t0=$(now)
        for q in 1 2 3 4; do
            px_cli job run "vm$q-$i" --wait >"$px_dir/vm$q-$i.out" 2>&1 &
            pids+=($!)
        done
        for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
        t1=$(now)
        [ "$failed" = 0 ] || px_fail "$failed of the four jobs failed: $(cat "$px_dir"/vm*-"$i".out)"
        sample px_four "$(elapsed "$t0" "$t1")"
        printf "   %-28s %8.2f s  (four proxies, four 1 GiB VMs, all succeeded)\n" px_four "$(elapsed "$t0" "$t1")"
        rm -rf "$px_dir/r$i/chunks" "$px_dir/four$i/chunks"
    done
    sample px_server_rss "$(awk '/VmHWM/ { printf "%d", $2 / 1024 }' "/proc/$px_server/status")"
    px_teardown
    trap - EXIT
    rm -f "$px_dir"/vm*.raw
}

proxies_report() {
    echo
    echo "== backup through a proxy (server + enrolled proxy on loopback, mutual TLS; median (min-max) of $runs runs, cold cache)"
    printf "%-34s %s s\n" "local lifeboat backup" "$(range px_local)"
    printf "%-34s %s s   %sx the local speed (>= 0.8)\n" "job on a proxy, full" "$(range px_proxy_full)" \
        "$(ratio "$(med px_local)" "$(med px_proxy_full)")"
    printf "%-34s %s s, stored %s %% of the image (< 1)\n" "job on a proxy, nothing changed" "$(range px_proxy_again)" "$(range px_again_share)"
    printf "%-34s %s s for 4 GiB; server peak RSS %s MiB\n" "four proxies, four VMs at once" "$(range px_four)" "$(range px_server_rss)"
}
