"""leakalloc's reachability check against a reference nobody here wrote: Debian's
valgrind --leak-check=full on real programs at exit. valgrind replaces malloc itself,
so each program runs twice: once under valgrind, once under leakalloc at sample:0 with
reach:true and the final dump. valgrind's definitely + indirectly lost blocks and bytes
must equal the blocks and bytes of leakalloc's lost dump; for sort, whose one leak is
known (16 bytes), the leaking call site (the return address in /usr/bin/sort, relative
to its load address) must be the same too.

usage: valgrind_compare.py LIBRARY WORKDIR"""
import glob
import os
import re
import shutil
import subprocess
import sys

lib, work = sys.argv[1:3]
if shutil.which("valgrind") is None:
    print("valgrind not installed")
    sys.exit(77)
os.makedirs(work, exist_ok=True)
data = os.path.join(work, "input.txt")
with open(data, "w") as fh:
    fh.write("".join("%d\n" % ((i * 7919) % 2003) for i in range(2000)))

programs = [
    ["sort", data],
    ["perl", "-e", "1"],
    ["ls", "-l", "/usr/bin"],
    ["grep", "-c", "1", data],
]
VALGRIND_BASE = 0x108000  # where valgrind loads a PIE executable on amd64


def valgrind(cmd):
    out = subprocess.run(["valgrind", "--leak-check=full", "--num-callers=40"] + cmd, cwd=work,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True).stderr
    total = [0, 0]
    for kind in ("definitely", "indirectly"):
        m = re.search(r"%s lost: ([\d,]+) bytes in ([\d,]+) blocks" % kind, out)
        if m:
            total[0] += int(m.group(2).replace(",", ""))
            total[1] += int(m.group(1).replace(",", ""))
    sites = re.findall(r"definitely lost in loss record.*\n.*malloc .*\n==\d+==    by (0x[0-9A-F]+): ", out)
    return tuple(total), [int(s, 16) for s in sites]


def leakalloc(cmd):
    for f in glob.glob(os.path.join(work, "leakalloc.*")):
        os.unlink(f)
    env = dict(os.environ, LD_PRELOAD=lib, LEAKALLOC_CONF="sample:0,reach:true,final:true,format:heap")
    subprocess.run(cmd, cwd=work, env=env, stdout=subprocess.DEVNULL, check=True)
    lost = glob.glob(os.path.join(work, "leakalloc.*.f0.lost.heap"))
    if len(lost) != 1:
        sys.exit("%s: no lost dump: %s" % (cmd, os.listdir(work)))
    text = open(lost[0]).read()
    m = re.search(r"^heap profile: *(\d+): *(\d+) ", text, re.M)
    base = {}
    for line in text.split("MAPPED_LIBRARIES:")[1].splitlines():
        f = line.split()
        if len(f) >= 6 and f[2] == "00000000":
            base.setdefault(f[5], int(f[0].split("-")[0], 16))
    sites = []
    for line in text.splitlines():
        s = re.match(r"^ *(\d+): *(\d+) \[.*\] @ (0x[0-9a-f]+)", line)
        if s and int(s.group(1)) > 0:
            sites.append(int(s.group(3), 16))
    return (int(m.group(1)), int(m.group(2))), sites, base


fail = []
for cmd in programs:
    exe = shutil.which(cmd[0])
    ref, ref_sites = valgrind([exe] + cmd[1:])
    got, sites, base = leakalloc([exe] + cmd[1:])
    print("%-30s valgrind definitely+indirectly %d blocks %d bytes; leakalloc lost %d blocks %d bytes"
          % (" ".join(cmd[:2]), ref[0], ref[1], got[0], got[1]))
    if ref != got:
        fail.append("%s: valgrind %s, leakalloc %s" % (cmd, ref, got))
    if cmd[0] == "sort":
        exe_base = base.get(os.path.realpath(exe))
        # valgrind names a caller's frame by its return address minus 1 (inside the call).
        ours = sorted(a - 1 - exe_base for a in sites) if exe_base is not None else None
        theirs = sorted(a - VALGRIND_BASE for a in ref_sites)
        print("  sort's leak site: valgrind %s, leakalloc %s" % ([hex(a) for a in theirs], ours and [hex(a) for a in ours]))
        if ours != theirs:
            fail.append("sort: leak sites differ")
if fail:
    print("\n".join(fail))
    sys.exit(1)
