#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz targets into fuzz/corpus/<target>/seed-*.

Needs qemu-img and qemu-io (apt-get install qemu-utils) for the image seeds,
and a built `lifeboat` binary (cargo build -p lifeboat-cli) for the repo
seeds. Input layouts are documented at the top of each fuzz_targets/*.rs.
Run from anywhere: python3 fuzz/make_seeds.py
"""
import os
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    assert len(data) < 64 * 1024 + 1, (name, len(data))
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- rpc_xdr
def u32(v):
    return struct.pack(">I", v)


def u64(v):
    return struct.pack(">Q", v)


def opaque(b):
    return u32(len(b)) + b + b"\0" * ((4 - len(b) % 4) % 4)


def fh(n):
    """A placeholder the harness replaces by live handle n (28 bytes)."""
    return opaque(b"@FH@" + bytes([n]) + b"\0" * 23)


AUTH_NONE = u32(0) + opaque(b"")
AUTH_SYS = u32(1) + opaque(u32(1) + opaque(b"fuzzhost") + u32(0) + u32(0) + u32(1) + u32(0))
SATTR_NONE = u32(0) * 6  # mode, uid, gid, size, atime, mtime: all "don't set"


def call(xid, prog, vers, proc_, cred, args=b""):
    return u32(xid) + u32(0) + u32(2) + u32(prog) + u32(vers) + u32(proc_) + cred + AUTH_NONE + args


def record(msg):
    return u32(0x80000000 | len(msg)) + msg


ROOT, SESSION, DISK, DESC, SUB, FILE = range(6)
NFS = lambda xid, p, args: call(xid, 100003, 3, p, AUTH_SYS, args)
rpc = {
    "pmap-null": call(1, 100000, 2, 0, AUTH_NONE),
    "pmap-getport": call(2, 100000, 2, 3, AUTH_NONE, u32(100003) + u32(3) + u32(6) + u32(0)),
    "pmap-set": call(3, 100000, 2, 1, AUTH_NONE, u32(100099) + u32(1) + u32(17) + u32(999)),
    "pmap-dump": call(4, 100000, 2, 4, AUTH_NONE),
    "mnt-null": call(5, 100005, 3, 0, AUTH_NONE),
    "mnt-mnt": call(6, 100005, 3, 1, AUTH_SYS, opaque(b"/lifeboat/s1")),
    "mnt-dump": call(7, 100005, 3, 2, AUTH_SYS),
    "mnt-umnt": call(8, 100005, 3, 3, AUTH_SYS, opaque(b"/lifeboat/s1")),
    "mnt-export": call(9, 100005, 3, 5, AUTH_SYS),
    "nfs-null": call(10, 100003, 3, 0, AUTH_NONE),
    "nfs-getattr": NFS(11, 1, fh(DISK)),
    "nfs-setattr": NFS(12, 2, fh(FILE) + u32(1) + u32(0o600) + u32(0) * 5 + u32(0)),
    "nfs-lookup": NFS(13, 3, fh(SESSION) + opaque(b"vm-disk0-flat.vmdk")),
    "nfs-access": NFS(14, 4, fh(DISK) + u32(0x3F)),
    "nfs-read": NFS(15, 6, fh(DISK) + u64(0) + u32(4096)),
    "nfs-write": NFS(16, 7, fh(FILE) + u64(0) + u32(5) + u32(2) + opaque(b"hello")),
    "nfs-write-disk": NFS(17, 7, fh(DISK) + u64(512) + u32(4) + u32(0) + opaque(b"disk")),
    "nfs-create": NFS(18, 8, fh(SUB) + opaque(b"new.lck") + u32(0) + SATTR_NONE),
    "nfs-create-excl": NFS(19, 8, fh(SUB) + opaque(b"x.lck") + u32(2) + b"verifier"),
    "nfs-mkdir": NFS(20, 9, fh(SESSION) + opaque(b"logs") + SATTR_NONE),
    "nfs-remove": NFS(21, 12, fh(SUB) + opaque(b"new.lck")),
    "nfs-rmdir": NFS(22, 13, fh(SESSION) + opaque(b"logs")),
    "nfs-rename": NFS(23, 14, fh(SUB) + opaque(b"a.lck") + fh(SUB) + opaque(b"b.lck")),
    "nfs-readdir": NFS(24, 16, fh(SESSION) + u64(0) + b"\0" * 8 + u32(4096)),
    "nfs-readdirplus": NFS(25, 17, fh(ROOT) + u64(0) + b"\0" * 8 + u32(1024) + u32(8192)),
    "nfs-fsstat": NFS(26, 18, fh(ROOT)),
    "nfs-fsinfo": NFS(27, 19, fh(DISK)),
    "nfs-pathconf": NFS(28, 20, fh(SESSION)),
    "nfs-commit": NFS(29, 21, fh(DISK) + u64(0) + u32(0)),
    "nfs-getattr-forged": NFS(30, 1, opaque(b"\x01\x02" + b"\0" * 26)),
}
for name, msg in rpc.items():
    put("rpc_xdr", name, b"\x00" + msg)
put("rpc_xdr", "stream-3-calls", b"\x01" + b"".join(record(rpc[k]) for k in ["nfs-null", "nfs-getattr", "nfs-read"]))
m = rpc["mnt-mnt"]
put("rpc_xdr", "stream-fragments", b"\x01" + u32(8) + m[:8] + u32(0x80000000 | (len(m) - 8)) + m[8:])
put("rpc_xdr", "denied-mnt", b"\x02" + rpc["mnt-mnt"])
put("rpc_xdr", "denied-getattr", b"\x03" + record(rpc["nfs-getattr"]))

# -------------------------------------------------------------- nbd_proto
IHAVEOPT = b"IHAVEOPT"


def opt(code, data=b""):
    return IHAVEOPT + u32(code) + u32(len(data)) + data


def info_data(name, items=()):
    return u32(len(name)) + name + struct.pack(">H", len(items)) + b"".join(struct.pack(">H", i) for i in items)


def meta(name, queries):
    return u32(len(name)) + name + u32(len(queries)) + b"".join(u32(len(q)) + q for q in queries)


def req(kind, offset, length, flags=0, payload=b""):
    return u32(0x25609513) + struct.pack(">HH", flags, kind) + u64(7) + u64(offset) + u32(length) + payload


FLAGS = u32(3)
nbd = {
    "go-read": FLAGS + opt(7, info_data(b"d", [0, 1, 2, 3])) + req(0, 0, 4096) + req(2, 0, 0),
    "structured-blockstatus": FLAGS + opt(8) + opt(10, meta(b"d", [b"base:allocation"]))
    + opt(7, info_data(b"d")) + req(7, 0, 1 << 20, 8) + req(0, 4096, 512, 4) + req(2, 0, 0),
    "write-flush-trim": FLAGS + opt(7, info_data(b"")) + req(1, 0, 8, 1, b"abcdefgh")
    + req(3, 0, 0) + req(4, 0, 4096) + req(6, 8192, 4096, 2) + req(5, 0, 65536) + req(2, 0, 0),
    "list-info-abort": FLAGS + opt(3) + opt(6, info_data(b"ro", [3])) + opt(9, meta(b"d", [b"base:"])) + opt(2),
    "export-name-ro": u32(1) + opt(1, b"ro") + req(0, 0, 512) + req(1, 0, 4, 0, b"nope"),
    "unknown-option": FLAGS + opt(5) + opt(99, b"xyz") + opt(7, info_data(b"nosuch")),
}
for name, data in nbd.items():
    put("nbd_proto", name, data)

# ---------------------------------------------------------- image_headers
def sh(*args, cwd):
    subprocess.run(args, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


if not shutil.which("qemu-img") or not shutil.which("qemu-io"):
    sys.exit("qemu-img/qemu-io missing: apt-get install qemu-utils")
with tempfile.TemporaryDirectory() as t:
    sh("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=512", "a.qcow2", "1M", cwd=t)
    sh("qemu-io", "-c", "write -P 0x55 0 4k", "-c", "write -z 8k 4k", "a.qcow2", cwd=t)
    sh("qemu-img", "convert", "-c", "-O", "qcow2", "-o", "cluster_size=4096", "a.qcow2", "c.qcow2", cwd=t)
    sh("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096,compat=0.10", "v2.qcow2", "1M", cwd=t)
    sh("qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=streamOptimized", "s.vmdk", "1M", cwd=t)
    sh("qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", "f.vmdk", "1M", cwd=t)
    sh("qemu-img", "create", "-q", "-f", "vmdk", "b.vmdk", "1M", cwd=t)
    sh("qemu-io", "-c", "write -P 0x44 0 4k", "b.vmdk", cwd=t)
    for n in ["a.qcow2", "c.qcow2", "v2.qcow2", "s.vmdk", "f.vmdk"]:
        put("image_headers", n, open(os.path.join(t, n), "rb").read())
    # monolithicSparse with 4 KiB grains (qemu writes 64 KiB ones): header,
    # descriptor, GD/GT as qemu laid them out, data grains from sector 32.
    d = bytearray(open(os.path.join(t, "b.vmdk"), "rb").read())
    struct.pack_into("<Q", d, 20, 8)  # grainSize = 8 sectors
    struct.pack_into("<Q", d, 64, 32)  # overHead = 32 sectors
    data0 = bytes(d[128 * 512 : 128 * 512 + 4096])
    rgt = struct.unpack_from("<I", d, 21 * 512)[0]
    gt = struct.unpack_from("<I", d, 26 * 512)[0]
    for table in (rgt, gt):
        d[table * 512 : table * 512 + 2048] = b"\0" * 2048
        struct.pack_into("<I", d, table * 512, 32)
        struct.pack_into("<I", d, table * 512 + 12, 40)
    put("image_headers", "sparse-4k.vmdk", bytes(d[: 32 * 512]) + data0 + b"\x77" * 4096)
put("image_headers", "vhdx-signature", b"vhdxfile" + "lifeboat fuzz".encode("utf-16-le") + b"\0" * 4000)
put("image_headers", "raw", bytes(range(256)) * 8)

# --------------------------------------------------------------- repo_blob
lifeboat = os.path.join(HERE, "..", "target", "debug", "lifeboat")
if not os.path.exists(lifeboat):
    sys.exit("build the CLI first: cargo build -p lifeboat-cli")
with tempfile.TemporaryDirectory() as t:
    repo, src = os.path.join(t, "repo"), os.path.join(t, "d.raw")
    disk = bytearray(512 * 1024)
    for i in range(0, len(disk), 4096):
        disk[i : i + 16] = b"lifeboat-fuzz-%02x" % (i // 4096 % 256)
    open(src, "wb").write(disk)
    subprocess.run([lifeboat, "repo", "init", "--repo", repo, "--no-encryption", "--chunk-size-kib", "256"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([lifeboat, "backup", "--repo", repo, "--vm", "vm", "d0=" + src], check=True, stdout=subprocess.DEVNULL)
    for root, _, files in os.walk(repo):
        for f in files:
            p = os.path.join(root, f)
            b = open(p, "rb").read()
            kind = {b"LBCK": 0, b"LBIX": 1, b"LBMF": 2}.get(b[:4])
            if kind is None:
                continue
            # bit 3: the harness recomputes the checksum for its own context
            put("repo_blob", "%s-%s" % (["chunk", "index", "manifest"][kind], f[:12]), bytes([8 | kind]) + b)
put("repo_blob", "roundtrip", b"\x10" + b"lifeboat " * 50)
index = struct.pack("<IIQQ", 4096, 0, 8192, 2) + b"\x11" * 32 + b"\0" * 32
put("repo_blob", "bare-index", b"\x20" + index)
manifest = b'{"format_version":1,"vm":"vm","id":"20260101-000000-abcd","time":"2026-01-01T00:00:00Z","disks":[{"name":"d0","size":8192,"chunk_size":4096,"source":"raw x","stats":{"bytes_read":0,"data_chunks":1,"zero_chunks":1,"new_chunks":1,"new_stored_bytes":10}}],"locked_until":null}'
put("repo_blob", "bare-manifest", b"\x20" + manifest)
put("repo_blob", "bare-digest", b"\x20" + b"7de9a45a3b40c456ecf959107b2d7da69be8e4d4a80669c382ae1b8ef7380ea8")
print("seeds written to", CORPUS)
