#!/usr/bin/env python3
"""Writes the seed inputs of the volume and handshake fuzz targets
(partition_table, lvm, vmdk_descriptor, xfs, ntfs, ext4list, nbd_handshake)
into fuzz/corpus/<target>/seed-*, from images made by the real tools:
sfdisk (util-linux), pvcreate/vgcreate/vgcfgrestore (lvm2, on loop devices,
no device-mapper), qemu-img (qemu-utils), mkfs.xfs with a proto file
(xfsprogs), mkntfs + ntfs-3g (ntfs-3g), mkfs.ext4 -d (e2fsprogs). Needs root
for the loop devices and the ntfs-3g mount. Input layouts are documented in
the `fuzzing` module of each crate.

Large images are written as "sparse inputs" (lifeboat_vdisk::SparseInputDisk):
u32 LE size in KiB, then (u32 LE sector, u16 LE length, bytes) pieces holding
only the non-zero 512-byte sectors. Run from anywhere:
python3 fuzz/make_volume_seeds.py
"""
import os
import struct
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    assert len(data) <= 256 * 1024, (target, name, len(data))
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def sh(*args, cwd=None, env=None, stdin=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(args, cwd=cwd, env=e, check=True, input=stdin, stdout=subprocess.PIPE).stdout


def sparse(image, skip=()):
    """The sparse input of `image`: its non-zero sectors, adjacent ones
    merged (at most 32 KiB a piece); sectors in a `skip` byte range left out."""
    data = open(image, "rb").read()
    out = [struct.pack("<I", (len(data) + 1023) // 1024)]
    # Sectors of only 0x00 (and of only 0xFF: the fresh $LogFile of NTFS,
    # which no reader here reads) are left out.
    empty = (b"\0" * 512, b"\xff" * 512)

    def keep(s):
        return data[s * 512 : s * 512 + 512] not in empty and not any(a <= s * 512 < b for a, b in skip)

    s, n = 0, len(data) // 512
    while s < n:
        if not keep(s):
            s += 1
            continue
        e = s
        while e < n and e - s < 64 and keep(e):
            e += 1
        out.append(struct.pack("<IH", s, (e - s) * 512) + data[s * 512 : e * 512])
        s = e
    return b"".join(out)


def blank(path, size):
    with open(path, "wb") as f:
        f.truncate(size)


def losetup(image):
    return sh("losetup", "-f", "--show", image).decode().strip()


# -------------------------------------------------------- partition_table
with tempfile.TemporaryDirectory() as t:
    mbr = os.path.join(t, "mbr.img")
    blank(mbr, 64 * 1024)
    sh("sfdisk", "-q", mbr, stdin=b"label: dos\n1,16,83\n17,16,8e\n33,,5\n34,8,83\n43,,7\n")
    put("partition_table", "mbr-ebr", b"\x00" + open(mbr, "rb").read())
    gpt = os.path.join(t, "gpt.img")
    blank(gpt, 64 * 1024)
    sh("sfdisk", "-q", gpt, stdin=b"label: gpt\nfirst-lba: 34\nstart=34, size=16, type=L, name=root\nstart=50, size=16, type=V\nstart=66, size=8, type=U\n")
    raw = open(gpt, "rb").read()
    put("partition_table", "gpt", b"\x00" + raw)
    put("partition_table", "gpt-fixcrc", b"\x02" + raw)
    big = os.path.join(t, "big.img")
    blank(big, 64 << 20)
    sh("sfdisk", "-q", big, stdin=b"label: gpt\n,16M,L\n,16M,V\n,,H\n")
    put("partition_table", "gpt-64m-sparse", b"\x01" + sparse(big))

# ---------------------------------------------------------------- lvm
with tempfile.TemporaryDirectory() as t:
    img = os.path.join(t, "pv.img")
    blank(img, 8 << 20)
    dev = losetup(img)
    try:
        conf = os.path.join(t, "lvm")
        os.makedirs(conf)
        filt = '[ "a|^%s$|", "r|.*|" ]' % dev
        open(os.path.join(conf, "lvm.conf"), "w").write(
            "devices { obtain_device_list_from_udev = 0 filter = %s global_filter = %s }\n"
            "activation { udev_sync = 0 udev_rules = 0 monitoring = 0 }\n"
            'global { locking_dir = "%s" }\n' % (filt, filt, os.path.join(conf, "lock"))
        )
        env = {"LVM_SYSTEM_DIR": conf, "LVM_SUPPRESS_FD_WARNINGS": "1"}
        sh("pvcreate", "-ff", "-y", dev, env=env)
        sh("vgcreate", "-s", "1M", "fuzzvg", dev, env=env)
        backup = os.path.join(t, "vg.txt")
        sh("vgcfgbackup", "-f", backup, "fuzzvg", env=env)
        text = open(backup).read()
        lvs = """
logical_volumes {
root {
id = "aaaaaa-bbbb-cccc-dddd-eeee-ffff-000001"
status = ["READ", "WRITE", "VISIBLE"]
segment_count = 2
segment1 {
start_extent = 0
extent_count = 2
type = "striped"
stripe_count = 1
stripes = ["pv0", 0]
}
segment2 {
start_extent = 2
extent_count = 1
type = "striped"
stripe_count = 1
stripes = ["pv0", 4]
}
}
}
"""
        end = text.rfind("}")
        open(backup, "w").write(text[:end] + lvs + text[end:])
        sh("vgcfgrestore", "-f", backup, "fuzzvg", env=env)
        full = open(backup).read()
    finally:
        sh("losetup", "-d", dev)
    put("lvm", "pv-disk", b"\x01" + sparse(img))
    put("lvm", "pv-head-raw", b"\x00" + open(img, "rb").read()[: 64 * 1024])
    put("lvm", "metadata-text", b"\x02" + full.encode())

# -------------------------------------------------------- vmdk_descriptor
with tempfile.TemporaryDirectory() as t:
    for sub in ["monolithicFlat", "twoGbMaxExtentFlat", "twoGbMaxExtentSparse", "monolithicSparse"]:
        p = os.path.join(t, sub + ".vmdk")
        sh("qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=" + sub, p, "5G")
        b = open(p, "rb").read()
        if b[:4] == b"KDMV":  # embedded descriptor: at descriptorOffset
            off, size = struct.unpack_from("<QQ", b, 28)
            b = b[off * 512 : (off + size) * 512].rstrip(b"\0")
        put("vmdk_descriptor", sub, b[:64 * 1024])
put(
    "vmdk_descriptor",
    "zero-and-offsets",
    b'# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="custom"\n'
    b'RW 2048 FLAT "a.raw" 0\nRW 2048 ZERO\nRDONLY 4096 FLAT "b.raw" 2048\nRW 8 VMFS "c-flat.vmdk"\n'
    b'ddb.geometry.cylinders = "16383"\n',
)

# ---------------------------------------------------------------- xfs
PROTO = """/dev/null
0 0
d--755 0 0
small d--755 0 0
a.txt ---644 0 0 {a}
b.txt ---600 1000 1000 {b}
$
block-dir d--755 0 0
{many}
$
link-local l--777 0 0 small/a.txt
abs-link l--777 0 0 /small/b.txt
big ---644 0 0 {big}
$
"""
with tempfile.TemporaryDirectory() as t:
    a, b, bigf = (os.path.join(t, n) for n in ("a", "b", "big"))
    open(a, "w").write("hello xfs\n")
    open(b, "wb").write(bytes(range(256)) * 20)
    open(bigf, "wb").write(b"\x5a" * (8 * 1024))
    many = "\n".join("entry-with-a-long-name-%03d ---644 0 0 %s" % (i, a) for i in range(40))
    proto = os.path.join(t, "proto")
    open(proto, "w").write(PROTO.format(a=a, b=b, big=bigf, many=many))
    img = os.path.join(t, "xfs.img")
    blank(img, 24 << 20)
    qa = {"TEST_DIR": "1", "TEST_DEV": "1", "QA_CHECK_FS": "1"}
    sh("mkfs.xfs", "-q", "-f", "-b", "size=1024", "-L", "fuzzxfs", "-p", proto, img, env=qa)
    info = sh("xfs_db", "-r", "-c", "sb 0", "-c", "p logstart logblocks blocksize", img).decode()
    f = dict(l.split(" = ") for l in info.splitlines())
    bs = int(f["blocksize"])
    log = (int(f["logstart"]) * bs, (int(f["logstart"]) + int(f["logblocks"])) * bs)
    # The reader never reads the log: leave it out of the seed.
    put("xfs", "proto-tree", sparse(img, skip=[log]))

# ---------------------------------------------------------------- ntfs
with tempfile.TemporaryDirectory() as t:
    img = os.path.join(t, "ntfs.img")
    blank(img, 2 << 20)
    sh("mkntfs", "-q", "-F", "-f", "-L", "fuzzntfs", "-c", "512", "-s", "512", img)
    mnt = os.path.join(t, "mnt")
    os.makedirs(mnt)
    sh("ntfs-3g", img, mnt)
    try:
        os.makedirs(os.path.join(mnt, "dir", "sub"))
        open(os.path.join(mnt, "small.txt"), "w").write("resident\n")
        open(os.path.join(mnt, "dir", "big.bin"), "wb").write(bytes(range(256)) * 64)
        for i in range(12):
            open(os.path.join(mnt, "dir", "sub", "file-%02d.txt" % i), "w").write("x%d\n" % i)
        os.symlink("small.txt", os.path.join(mnt, "link"))
    finally:
        sh("umount", mnt)
    put("ntfs", "tree", sparse(img))

# ---------------------------------------------------------------- ext4list
with tempfile.TemporaryDirectory() as t:
    root = os.path.join(t, "root")
    os.makedirs(os.path.join(root, "dir", "sub"))
    open(os.path.join(root, "a.txt"), "w").write("hello ext4\n")
    open(os.path.join(root, "dir", "big.bin"), "wb").write(bytes(range(256)) * 24)
    for i in range(30):
        open(os.path.join(root, "dir", "sub", "f%02d" % i), "w").write("x")
    os.symlink("a.txt", os.path.join(root, "link"))
    for name, opts in [("csum", []), ("nocsum", ["-O", "^metadata_csum,^64bit"])]:
        img = os.path.join(t, name + ".img")
        blank(img, 128 * 1024)
        sh("mkfs.ext4", "-q", "-F", "-b", "1024", "-N", "64", *opts, "-d", root, img)
        raw = open(img, "rb").read()
        put("ext4list", "volume-" + name, b"\x00" + raw)
        # The root directory's first block, for the bare block mode.
        stat = sh("debugfs", "-R", "blocks /dir/sub", img).decode().split()
        blk = int(stat[0])
        put("ext4list", "dirblock-" + name, b"\x01" + raw[blk * 1024 : blk * 1024 + 1024])

# ---------------------------------------------------------- nbd_handshake
def u32(v):
    return struct.pack(">I", v)


def opt(code, data=b""):
    return b"IHAVEOPT" + u32(code) + u32(len(data)) + data


def info_data(name, items=()):
    return u32(len(name)) + name + struct.pack(">H", len(items)) + b"".join(struct.pack(">H", i) for i in items)


def meta(name, queries):
    return u32(len(name)) + name + u32(len(queries)) + b"".join(u32(len(q)) + q for q in queries)


hs = {
    "list-info-go": u32(3) + opt(3) + opt(6, info_data(b"ro", [0, 1, 2, 3])) + opt(7, info_data(b"d", [3])),
    "structured-meta-go": u32(1) + opt(8) + opt(9, meta(b"d", [b"base:"])) + opt(10, meta(b"d", [b"base:allocation"])) + opt(7, info_data(b"")),
    "secret-refused": u32(3) + opt(6, info_data(b"secret", [2])) + opt(10, meta(b"secret", [b"base:allocation"])) + opt(7, info_data(b"secret")),
    "export-name-zeroes": u32(1) + opt(99, b"?") + opt(1, b"ro"),
    "export-name-secret": u32(3) + opt(1, b"secret"),
    "starttls-abort": u32(3) + opt(5) + opt(2),
}
for name, data in hs.items():
    put("nbd_handshake", name, data)
print("seeds written to", CORPUS)
