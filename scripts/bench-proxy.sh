# The bench's `proxy` section, sourced by scripts/bench.sh (it uses
# bench.sh's helpers: sample, range, med, ratio, warm, and $lifeboat,
# $image, $runs, $BENCH_DIR).
#
# A backup through a proxy against a local one (issue 17's goal: >= 0.8x
# the local speed): `lifeboat serve` on a free loopback port with its own
# CA and a fresh repository; one `lifeboat proxy` (--max-jobs 1, no
# passphrase in its environment) enrolled with it; a job of the bench
# image pinned to that proxy. Each run: `lifeboat backup` of the image
# into a fresh local repository, then a run of the job into a fresh
# served repository (the server restarted on it), both from a warm page
# cache, --runs times alternating; the proxy's time is `job run --wait`
# (queued, handed to the proxy, the upload: open, the chunks the
# repository lacks, commit; to within the 0.5 s of its polling). Server and proxy are stopped on every exit (trap).

proxy_dir="$BENCH_DIR/proxy"
proxy_serve_pid=""
proxy_pid=""

proxy_fail() { echo "proxy section: $*" >&2; exit 1; }
proxy_teardown() {
    local p
    for p in "$proxy_pid" "$proxy_serve_pid"; do
        # (a proxy has no graceful stop: it dies of the signal)
        [ -z "$p" ] || { kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; }
    done
    proxy_pid=""; proxy_serve_pid=""
}

# proxy_serve REPO: (re)starts the server on REPO, keeping its data dir.
proxy_serve() {
    [ -z "$proxy_serve_pid" ] || { kill "$proxy_serve_pid"; wait "$proxy_serve_pid" 2>/dev/null || true; }
    "$lifeboat" serve --listen "127.0.0.1:$proxy_port" --data-dir "$proxy_dir/data" \
        --repo "bench=$1" >>"$proxy_dir/serve.log" 2>&1 &
    proxy_serve_pid=$!
    for _ in $(seq 150); do
        [ -s "$proxy_dir/data/admin.token" ] && (exec 3<>"/dev/tcp/127.0.0.1/$proxy_port") 2>/dev/null && return 0
        kill -0 "$proxy_serve_pid" 2>/dev/null || proxy_fail "lifeboat serve exited: $(tail -5 "$proxy_dir/serve.log")"
        sleep 0.2
    done
    proxy_fail "lifeboat serve did not start"
}

# proxy_cli ARGS...: the CLI against the server with the admin token.
proxy_cli() {
    LIFEBOAT_SERVER="https://localhost:$proxy_port" LIFEBOAT_CA="$proxy_dir/data/tls/ca.pem" \
        LIFEBOAT_TOKEN="$(cat "$proxy_dir/data/admin.token")" "$lifeboat" "$@"
}

proxy_section() {
    rm -rf "$proxy_dir"; mkdir -p "$proxy_dir"
    proxy_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    trap proxy_teardown EXIT
    "$lifeboat" repo init --repo "$proxy_dir/served" >/dev/null
    proxy_serve "$proxy_dir/served"
    local secret i t0
    secret=$(proxy_cli proxy-enrollment create --json | jq -r .secret)
    (unset LIFEBOAT_PASSPHRASE; LIFEBOAT_SERVER="https://localhost:$proxy_port" LIFEBOAT_CA="$proxy_dir/data/tls/ca.pem" \
        "$lifeboat" proxy --check --data-dir "$proxy_dir/p1" --enroll "$secret" --name p1 >/dev/null) ||
        proxy_fail "enrolling the proxy failed"
    (unset LIFEBOAT_PASSPHRASE; exec "$lifeboat" proxy --data-dir "$proxy_dir/p1" --max-jobs 1) \
        >/dev/null 2>"$proxy_dir/proxy.log" &
    proxy_pid=$!
    proxy_cli job create bench --repo-name bench --source "disk0=raw:$image" --proxy p1 >/dev/null
    for i in $(seq "$runs"); do
        echo "   -- run $i of $runs"
        rm -rf "$proxy_dir/local"
        "$lifeboat" repo init --repo "$proxy_dir/local" >/dev/null
        warm "$image"
        timed proxy_local "$lifeboat" backup --repo "$proxy_dir/local" --vm bench "disk0=$image"
        rm -rf "$proxy_dir/local"
        rm -rf "$proxy_dir/served"
        "$lifeboat" repo init --repo "$proxy_dir/served" >/dev/null
        proxy_serve "$proxy_dir/served"
        # The proxy's held work request died with the server: it asks
        # again 2 s later.
        sleep 3
        warm "$image"
        # One client polling every 0.5 s (`--wait`): the time is that
        # coarse, and the polling costs next to nothing.
        t0=$(now)
        proxy_cli job run bench --wait --json >"$proxy_dir/session.json" ||
            proxy_fail "the session failed: $(jq -r .error "$proxy_dir/session.json" 2>/dev/null)"
        sample proxy_upload "$(elapsed "$t0" "$(now)")"
        printf "   %-34s %6s s\n   %-34s %6s s\n" "local lifeboat backup" "${secs[proxy_local]}" \
            "through proxy p1 (upload)" "$(echo "${samples[proxy_upload]}" | awk '{print $NF}')"
    done
    sample proxy_rss "$(awk '/VmHWM/ { printf "%d", $2 / 1024 }' "/proc/$proxy_pid/status")"
    sample proxy_server_rss "$(awk '/VmHWM/ { printf "%d", $2 / 1024 }' "/proc/$proxy_serve_pid/status")"
    proxy_teardown
    trap - EXIT
    rm -rf "$proxy_dir/served"
}

proxy_report() {
    echo
    echo "== backup through a proxy (server + proxy on loopback, upload over mutual TLS) against local; median (min-max) of $runs runs"
    printf "%-34s %s s\n" "local lifeboat backup" "$(range proxy_local)"
    printf "%-34s %s s\n" "through a proxy" "$(range proxy_upload)"
    printf "%-34s %sx   (>= 0.8)\n" "proxy speed / local speed" "$(ratio "$(med proxy_local)" "$(med proxy_upload)")"
    printf "%-34s %s MiB, server %s MiB\n" "proxy peak RSS" "$(range proxy_rss)" "$(range proxy_server_rss)"
}
