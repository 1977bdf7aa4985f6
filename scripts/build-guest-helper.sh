#!/usr/bin/env bash
# Builds lifeboat-guest-helper statically linked (glibc static-pie, so it
# runs in any x86_64 Linux guest whatever its libc) and copies it to OUT_DIR.
#
#   scripts/build-guest-helper.sh OUT_DIR
#
# Release profile without debug info, symbols stripped. The build uses its own
# target directory, OUT_DIR/target (CARGO_TARGET_DIR is ignored: a test may
# call this while cargo holds the lock of the test's target directory).
# Ship the result beside the `lifeboat` binary: `lifeboat backup --app-aware`
# looks for it there (or takes --guest-helper-bin PATH).
set -euo pipefail
die() { echo "build-guest-helper.sh: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: $0 OUT_DIR"
out=$(mkdir -p "$1" && cd "$1" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
cargo=${CARGO:-cargo}
command -v "$cargo" >/dev/null || die "cargo not found (install Rust with rustup)"
CARGO_TARGET_DIR="$out/target" \
    CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols \
    "$cargo" rustc --locked --release --manifest-path "$root/Cargo.toml" \
    -p lifeboat-guest-helper --bin lifeboat-guest-helper -- -C target-feature=+crt-static
bin="$out/target/release/lifeboat-guest-helper"
[ -x "$bin" ] || die "cargo built no $bin"
desc=$(file -b "$bin") || die "the 'file' command is missing (apt-get install file)"
case "$desc" in
*"statically linked"* | *"static-pie linked"*) ;;
*) die "$bin is not statically linked: $desc" ;;
esac
cp "$bin" "$out/lifeboat-guest-helper.tmp"
mv "$out/lifeboat-guest-helper.tmp" "$out/lifeboat-guest-helper"
echo "build-guest-helper.sh: $out/lifeboat-guest-helper ($desc)"
