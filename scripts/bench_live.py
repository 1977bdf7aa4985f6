#!/usr/bin/env python3
"""Helpers of scripts/bench-live.sh (the bench's live section), standard library only.

  bench_live.py qmp SOCKET JSON...        runs QMP commands (after qmp_capabilities)
                                          on a QEMU's QMP socket, prints each return
  bench_live.py hmp SOCKET LINE...        runs HMP command lines through QMP
                                          human-monitor-command; fails when one answers
                                          anything (HMP qemu-io answers only its
                                          errors; its report goes to QEMU's stdout)
  bench_live.py guest PORT TIMEOUT LINE   runs one shell line on the test guest's
                                          command port (TCP 23 forwarded to PORT),
                                          prints its output, exits with its status
  bench_live.py halt-kernel OUT           writes a multiboot kernel that halts the CPU
                                          (cli; hlt): a VM that runs and idles, with no
                                          boot disk and no OS
  bench_live.py change-files DIR N SEED   writes N files of 1 MiB of pseudo-random
                                          bytes (fixed seed: the same data every run)
"""
import json
import random
import socket
import struct
import sys


def qmp_session(path, commands):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(120)
    s.connect(path)
    f = s.makefile("rw")

    def reply():
        while True:
            line = f.readline()
            if not line:
                sys.exit("QMP %s: QEMU closed the connection" % path)
            msg = json.loads(line)
            if "event" not in msg:
                return msg

    reply()  # the greeting
    out = []
    for cmd in [{"execute": "qmp_capabilities"}] + commands:
        f.write(json.dumps(cmd) + "\n")
        f.flush()
        r = reply()
        if "error" in r:
            sys.exit("QMP %s %s: %s" % (path, json.dumps(cmd), r["error"]))
        out.append(r.get("return"))
    return out[1:]


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    args = sys.argv[2:]
    if what == "qmp" and len(args) >= 2:
        for r in qmp_session(args[0], [json.loads(a) for a in args[1:]]):
            print(json.dumps(r))
    elif what == "hmp" and len(args) >= 2:
        cmds = [{"execute": "human-monitor-command", "arguments": {"command-line": line}}
                for line in args[1:]]
        for line, r in zip(args[1:], qmp_session(args[0], cmds)):
            if r.strip():
                sys.exit("HMP %r: %s" % (line, r.strip()))
    elif what == "guest" and len(args) == 3:
        port, timeout, line = int(args[0]), float(args[1]), args[2]
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.settimeout(timeout)
        s.sendall(line.encode() + b"\n")
        s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        text = data.decode(errors="replace").rstrip("\n")
        out, _, last = text.rpartition("\n")
        if not last.startswith("LIFEBOAT-RC="):
            sys.exit("guest command %r: no exit status in the reply %r" % (line, text))
        if out:
            print(out)
        sys.exit(int(last.split("=", 1)[1]))
    elif what == "halt-kernel" and len(args) == 1:
        # Multiboot header with the address fields (flag 16): loaded at 1 MiB,
        # entry right after the 32-byte header.
        magic, flags, base = 0x1BADB002, 0x00010000, 0x100000
        header = struct.pack("<8I", magic, flags, (-(magic + flags)) & 0xFFFFFFFF,
                             base, base, 0, 0, base + 32)
        code = bytes([0xFA, 0xF4, 0xEB, 0xFD])  # cli; hlt; jmp back to hlt
        with open(args[0], "wb") as f:
            f.write(header + code + bytes(512 - len(header) - len(code)))
    elif what == "change-files" and len(args) == 3:
        rng = random.Random(int(args[2]))
        for i in range(int(args[1])):
            with open("%s/%03d.bin" % (args[0], i), "wb") as f:
                f.write(rng.randbytes(1 << 20))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
