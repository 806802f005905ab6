"""The reach label and the lost dump, read by the real readers: reach_cases' labels case
(5 held blocks of 72 bytes, a lost chain of 10 blocks of 56, a lost cycle of 4 of 88) at
sample:0 with reach:true writes a dump and a lost dump in heap and pb formats. The pb
dump's samples carry reach=reachable/direct/indirect with the exact counts; the lost
dumps hold exactly the 14 lost blocks, and jeprof and go tool pprof read them.

usage: check_labels.py PROGRAM LIBRARY WORKDIR PB_CHECK_DIR"""
import glob
import os
import subprocess
import sys

prog, lib, work, pbdir = sys.argv[1:5]
sys.path.insert(0, pbdir)
import pb_check  # noqa: E402

os.makedirs(work, exist_ok=True)
for f in glob.glob(os.path.join(work, "leakalloc.*")):
    os.unlink(f)
env = dict(os.environ, LD_PRELOAD=lib, LEAKALLOC_CONF="sample:0,reach:true,format:heap+pb")
subprocess.run([prog, "labels"], cwd=work, env=env, check=True)

fail = []
dump = glob.glob(os.path.join(work, "leakalloc.*.m0.pb.gz"))
lost = glob.glob(os.path.join(work, "leakalloc.*.m0.lost.pb.gz"))
lost_heap = glob.glob(os.path.join(work, "leakalloc.*.m0.lost.heap"))
if len(dump) != 1 or len(lost) != 1 or len(lost_heap) != 1:
    sys.exit("expected one dump and one lost dump in each format: %s" % os.listdir(work))


def counts(path):
    """{(reach, bytes): blocks} over the samples of live blocks (inuse_objects)."""
    p = pb_check.decode(path)
    out = {}
    for s in p["sample"]:
        if s["value"][2] == 0:
            continue  # the allocation totals of a stack, no live block
        key = (pb_check.label(p, s, "reach"), pb_check.label(p, s, "bytes"))
        out[key] = out.get(key, 0) + s["value"][2]
    return out


c = counts(dump[0])
want = {("direct", 56): 1, ("indirect", 56): 9, ("direct", 88): 1, ("indirect", 88): 3}
for k, n in want.items():
    if c.get(k) != n:
        fail.append("dump: %s blocks %s, want %d" % (k, c.get(k), n))
if c.get(("reachable", 72), 0) < 5:
    fail.append("dump: reachable 72-byte blocks %s, want at least 5" % c.get(("reachable", 72)))
others = {k: n for k, n in c.items() if k[0] != "reachable" and k not in want}
if others:
    fail.append("dump: unexpected lost blocks %s" % others)
unlabelled = {k: n for k, n in c.items() if k[0] is None}
if unlabelled:
    fail.append("dump: samples without a reach label %s" % unlabelled)

lc = counts(lost[0])
if lc != want:
    fail.append("lost dump: %s, want %s" % (lc, want))

# The readers: jeprof on the lost .heap, go tool pprof on the lost .pb.gz.
out = subprocess.run(["jeprof", "--text", prog, lost_heap[0]], capture_output=True, text=True)
if out.returncode != 0 or "leak_chain_sized" not in out.stdout or "leak_cycle_sized" not in out.stdout:
    fail.append("jeprof --text on the lost dump: rc %d\n%s%s" % (out.returncode, out.stdout, out.stderr))
out = subprocess.run(["go", "tool", "pprof", "-raw", "-sample_index=inuse_space", lost[0]],
                     capture_output=True, text=True)
if out.returncode != 0 or "reach:[direct]" not in out.stdout:
    fail.append("go tool pprof -raw on the lost dump: rc %d\n%s%s" % (out.returncode, out.stdout[-2000:], out.stderr))

if fail:
    print("\n".join(fail))
    sys.exit(1)
print("labels and lost dumps as expected:", c)
