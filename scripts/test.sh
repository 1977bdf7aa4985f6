#!/usr/bin/env bash
# Runs every Lifeboat test on a fresh Debian machine:
#   1. installs the system packages the tests use (real QEMU tools, e2fsprogs, ...),
#   2. checks formatting and lints,
#   3. runs the Rust tests of the whole workspace.
# Fixtures are built by the tests themselves and cached under target/fixtures.
set -euo pipefail
cd "$(dirname "$0")/.."

# Packages the tests need. qemu-utils: qemu-img/qemu-io (format oracles);
# e2fsprogs: mkfs.ext4/debugfs (demo and test disks); util-linux: unshare, losetup, mount;
# libnbd-bin: nbdinfo, nbdcopy (NBD export tests); libnfs-utils: nfs-ls,
# nfs-cp, nfs-cat (NFS tests); rpcbind: rpcinfo (portmapper test); fdisk:
# sfdisk (partition tables); lvm2: pvcreate/vgcfgrestore (LVM test disks);
# clamav: clamscan (scan tests, with a generated signature database, no
# freshclam); dosfstools, mtools: vfat test volumes; fusefat: vfat mounts
# where the kernel has no vfat driver (publish); gdisk: sgdisk; xfsprogs,
# btrfs-progs, ntfs-3g: xfs/btrfs/ntfs test volumes (publish, browse);
# erofs-utils: a filesystem the kernel knows but publish must not mount;
# openssl: test certificates for NBD over TLS, s_client against the guest helper;
# file: checks that the guest helper is statically linked (build-guest-helper.sh);
# curl: requests to `lifeboat serve` (server tests); sqlite3: sets a newer
# schema version in the server's catalog (refused at start); python3-venv:
# schemathesis from PyPI against the server's OpenAPI document; iproute2,
# nftables: a proxy in a network namespace nobody can dial (proxy_netns).
# The test guest (scripts/build-test-guest.sh, run by the tests) installs
# its own packages and unpacks QEMU into target/fixtures.
packages=(qemu-utils e2fsprogs util-linux fdisk lvm2 libnbd-bin libnfs-utils rpcbind clamav dosfstools mtools fusefat gdisk xfsprogs btrfs-progs ntfs-3g erofs-utils openssl file chrony faketime curl sqlite3 python3-venv iproute2 nftables)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing: ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        echo "scripts/test.sh: need root to apt-get install ${missing[*]} (or install them yourself)" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# One full build, no incremental caches: they double the target directory's
# size for a build that CI runs once.
export CARGO_INCREMENTAL=0

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== API conformance (schemathesis against the OpenAPI document)"
cargo build --locked -p lifeboat --bin lifeboat
scripts/api-conformance.sh "${CARGO_TARGET_DIR:-target}/debug/lifeboat"

echo "== cargo test"
mkdir -p target
set +e
cargo test --workspace --locked 2>&1 | tee target/test-output.log
status=${PIPESTATUS[0]}
set -e
read -r passed failed < <(grep -E '^test result:' target/test-output.log |
    sed -E 's/.* ([0-9]+) passed; ([0-9]+) failed.*/\1 \2/' |
    awk '{p+=$1; f+=$2} END {print p+0, f+0}')
echo "summary: ${passed} passed, ${failed} failed"
exit "$status"
