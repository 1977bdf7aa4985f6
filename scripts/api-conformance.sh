#!/usr/bin/env bash
# The server's API against its own OpenAPI document: starts `lifeboat serve`
# on a free loopback port with a small repository, and runs schemathesis
# (from PyPI, pinned, installed in target/schemathesis-venv) over every
# documented operation with the bootstrap admin token (SCHEMATHESIS_VENV
# puts the virtualenv elsewhere). A 5xx, an answer
# that does not match the document, or an undocumented status fails.
# The proxy routes (/api/v1/proxy/...) are left out: they need an enrolled
# proxy's client certificate, which schemathesis does not present;
# crates/cli/tests/proxies.rs and proxy_jobs.rs exercise them.
# Usage: scripts/api-conformance.sh [path/to/lifeboat]  (default target/debug/lifeboat)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/debug/lifeboat}
version=4.32.5
venv=${SCHEMATHESIS_VENV:-$PWD/target/schemathesis-venv}
if ! "$venv/bin/st" --version 2>/dev/null | grep -q "$version"; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "schemathesis==$version"
fi
work=$(mktemp -d)
pid=
cleanup() {
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin" repo init --repo "$work/repo" --no-encryption >/dev/null
head -c 1048576 /dev/urandom >"$work/disk.raw"
"$bin" backup --repo "$work/repo" --vm vm1 "disk0=$work/disk.raw" >/dev/null
"$bin" serve --listen "127.0.0.1:$port" --data-dir "$work/data" --repo "main=$work/repo" 2>"$work/server.log" &
pid=$!
for _ in $(seq 200); do
    grep -q "serving HTTPS" "$work/server.log" && break
    sleep 0.1
done
grep -q "serving HTTPS" "$work/server.log" || { cat "$work/server.log" >&2; exit 1; }
token=$(cat "$work/data/admin.token")
status=0
# In the scratch folder: schemathesis keeps its example database in the
# working directory.
config=$PWD/scripts/schemathesis.toml
(cd "$work" && "$venv/bin/st" --config-file "$config" run "https://localhost:$port/api/v1/openapi.json" \
    --tls-verify "$work/data/tls/ca.pem" -H "Authorization: Bearer $token" \
    --exclude-path-regex '^/api/v1/(proxy|agent)/' \
    --checks all --max-examples 50 --seed 1) || status=$?
if grep -q '"status":5' "$work/server.log"; then
    echo "scripts/api-conformance.sh: the server answered 5xx:" >&2
    grep '"status":5' "$work/server.log" >&2
    status=1
fi
exit "$status"
