#!/usr/bin/env python3
"""Reads leakalloc's pprof protobuf dumps back with `go tool pprof` and checks what Go
shows: exact bytes per function at sample:0, age filtering (in the file and through
-tagfocus on the age label), thread labels, alloc_* values, and at sample:12 that the
unsampled estimates land near the truth.

usage: run_pb_test.py exact|sampled PB_WRITER_TEST GO
       run_pb_test.py e2e PB_LEAKY GO [LIBLEAKALLOC]   (LD_PRELOAD when the library is given)
"""
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pb_check  # noqa: E402

MODE, BIN, GO = sys.argv[1], sys.argv[2], sys.argv[3]
LIB = sys.argv[4] if len(sys.argv) > 4 else None

# Must match pb_writer_test.cpp.
OLD_MAIN = (10, 1000)
OLD_THREAD = (7, 3000)
YOUNG_MAIN = (3, 1234)
YOUNG_THREAD = (5, 700)
FREED = (8, 100)
SMALL = (20000, 512)
BIG = (1000, 10000)
BT_LEVELS = 12
BT_SIZES = [16 + i % 61 for i in range(1 << BT_LEVELS)]

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


tmp = tempfile.mkdtemp(prefix="leakalloc-pb-")
env = dict(os.environ)
# go wants a writable HOME and build cache; never the user's.
env.update(HOME=tmp, GOCACHE=os.path.join(tmp, "gocache"), GOPATH=os.path.join(tmp, "gopath"),
           GOFLAGS="", PPROF_TMPDIR=tmp)


def run_program(conf):
    e = dict(env, LEAKALLOC_CONF=conf)
    r = subprocess.run([BIN, MODE, tmp], env=e, capture_output=True, text=True, timeout=60)
    sys.stdout.write(r.stdout)
    sys.stdout.write(r.stderr)
    check(r.returncode == 0, "pb_writer_test %s exits 0 (got %d)" % (MODE, r.returncode))
    if r.returncode != 0:
        finish()
    return r.stdout


def pprof(*args, max_lines=60):
    cmd = [GO, "tool", "pprof"] + list(args)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    print("$ go tool pprof " + " ".join(a.replace(tmp, "$TMP") for a in args))
    lines = (r.stdout + r.stderr).splitlines()
    print("\n".join(lines[:max_lines]))
    if len(lines) > max_lines:
        print("... (%d more lines)" % (len(lines) - max_lines))
    check(r.returncode == 0, "go tool pprof %s exits 0" % " ".join(args[:-2]))
    return r.stdout


UNIT = {"": 1, "B": 1, "kB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}
TOP_LINE = re.compile(r"^\s*([\d.]+)([a-zA-Z]*)\s+[\d.]+%\s+[\d.]+%\s+([\d.]+)([a-zA-Z]*)\s+[\d.]+%\s+(.+)$")


def top(*args):
    """{function: (flat, cum)} from `-top`, values in base units (-unit=B keeps bytes exact)."""
    # -nodefraction=0: small nodes (pb_freed among 4096 bt stacks) are otherwise hidden.
    out = pprof("-top", "-nodecount=1000", "-nodefraction=0", "-unit=B", *args)
    rows = {}
    for line in out.splitlines():
        m = TOP_LINE.match(line)
        if m:
            flat = float(m.group(1)) * UNIT[m.group(2)]
            cum = float(m.group(3)) * UNIT[m.group(4)]
            rows[m.group(5).strip()] = (round(flat), round(cum))
    return rows


def flat(rows, fn):
    return rows.get(fn, (0, 0))[0]


def validate(path, period):
    """The independent decoder's verdict on one file (pb_check.py)."""
    p, bad = pb_check.check(path, period)
    check(not bad, "%s: valid profile.proto (%d samples, %d locations, %d mappings)%s" %
          (os.path.basename(path), len(p["sample"]), len(p["location"]), len(p["mapping"]),
           "" if not bad else ": " + "; ".join(bad[:5])))
    return p


def finish():
    if failures:
        print("%d check(s) failed:" % len(failures))
        for f in failures:
            print("  " + f)
        print("files kept in " + tmp)
        sys.exit(1)
    print("all checks passed")
    shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(0)


def exact():
    out = run_program("sample:0")
    check("tracked allocations during unguarded write_pb: 0 (rc=0)" in out,
          "write_pb makes no tracked allocation (no guard held, sample:0)")
    all_pb = os.path.join(tmp, "all.pb.gz")
    old_pb = os.path.join(tmp, "old.pb.gz")
    with open(all_pb, "rb") as f:
        check(f.read(2) == b"\x1f\x8b", "all.pb.gz is gzip")
    for name in ("all.pb.gz", "old.pb.gz", "unguarded.pb.gz"):
        validate(os.path.join(tmp, name), 1)
    # Raw label values: one sample per (stack, size, thread, age), exact at sample:0.
    p = validate(all_pb, 1)
    ages = {}
    for smp in p["sample"]:
        ages.setdefault(pb_check.label(p, smp, "bytes"), set()).add(pb_check.label(p, smp, "age"))
    check(ages.get(1234) == {0} and ages.get(700) == {0}, "young blocks are labelled age 0 (%s, %s)" %
          (ages.get(1234), ages.get(700)))
    check(len(ages.get(1000, ())) == 1 and min(ages[1000]) >= 2 and len(ages.get(3000, ())) == 1 and
          min(ages[3000]) >= 2, "old blocks are labelled age >= 2 (%s, %s)" % (ages.get(1000), ages.get(3000)))
    sizes = {pb_check.label(p, smp, "bytes"): smp["value"][2:] for smp in p["sample"]
             if pb_check.label(p, smp, "bytes") in (1000, 3000, 1234, 700)}
    check(sizes == {1000: [10, 10000, 0], 3000: [7, 21000, 0], 1234: [3, 3702, 0], 700: [5, 3500, 0]},
          "per-size samples carry exact inuse counts and bytes: %s" % sizes)

    old = {"pb_old_main": OLD_MAIN, "pb_old_thread": OLD_THREAD}
    young = {"pb_young_main": YOUNG_MAIN, "pb_young_thread": YOUNG_THREAD}
    bt_bytes = sum(BT_SIZES)

    rows = top("-sample_index=inuse_space", BIN, all_pb)
    for fn, (n, size) in list(old.items()) + list(young.items()):
        check(flat(rows, fn) == n * size, "all: %s inuse_space %d == %d" % (fn, flat(rows, fn), n * size))
    check(flat(rows, "pb_bt_leaf") == bt_bytes,
          "all: pb_bt_leaf inuse_space %d == %d (4096 stacks)" % (flat(rows, "pb_bt_leaf"), bt_bytes))
    check("pb_freed" not in rows or flat(rows, "pb_freed") == 0, "all: freed blocks are not in use")

    rows = top("-sample_index=inuse_objects", BIN, all_pb)
    for fn, (n, size) in list(old.items()) + list(young.items()):
        check(flat(rows, fn) == n, "all: %s inuse_objects %d == %d" % (fn, flat(rows, fn), n))
    check(flat(rows, "pb_bt_leaf") == len(BT_SIZES), "all: pb_bt_leaf inuse_objects %d" % flat(rows, "pb_bt_leaf"))

    rows = top("-sample_index=alloc_space", BIN, all_pb)
    for fn, (n, size) in list(old.items()) + list(young.items()) + [("pb_freed", FREED)]:
        check(flat(rows, fn) == n * size, "all: %s alloc_space %d == %d" % (fn, flat(rows, fn), n * size))
    rows = top("-sample_index=alloc_objects", BIN, all_pb)
    check(flat(rows, "pb_freed") == FREED[0], "all: pb_freed alloc_objects %d == %d" % (flat(rows, "pb_freed"), FREED[0]))

    # The default sample type is inuse_space.
    out = pprof("-top", BIN, all_pb)
    check("Type: inuse_space" in out, "default sample type is inuse_space")

    # The age label: old blocks are 2 s old at the dump, young ones 0 s.
    rows = top("-tagfocus=age=2s:", BIN, all_pb)
    for fn, (n, size) in old.items():
        check(flat(rows, fn) == n * size, "age>=2s: %s %d == %d" % (fn, flat(rows, fn), n * size))
    check(flat(rows, "pb_bt_leaf") == bt_bytes, "age>=2s: pb_bt_leaf %d" % flat(rows, "pb_bt_leaf"))
    for fn in young:
        check(flat(rows, fn) == 0, "age>=2s: %s absent" % fn)
    rows = top("-tagfocus=age=:1s", BIN, all_pb)
    for fn, (n, size) in young.items():
        check(flat(rows, fn) == n * size, "age<=1s: %s %d == %d" % (fn, flat(rows, fn), n * size))
    for fn in list(old) + ["pb_bt_leaf"]:
        check(flat(rows, fn) == 0, "age<=1s: %s absent" % fn)
    # Age 0 must survive as a label value (pprof drops a unitless 0).
    rows = top("-tagfocus=age=:500ms", BIN, all_pb)
    check(flat(rows, "pb_young_main") == YOUNG_MAIN[0] * YOUNG_MAIN[1] and
          flat(rows, "pb_young_thread") == YOUNG_THREAD[0] * YOUNG_THREAD[1], "age<=500ms keeps age-0 blocks")

    # The object-size label selects exact sizes.
    rows = top("-tagfocus=bytes=3000B", BIN, all_pb)
    check(flat(rows, "pb_old_thread") == OLD_THREAD[0] * OLD_THREAD[1] and flat(rows, "pb_old_main") == 0,
          "tagfocus bytes=3000B selects pb_old_thread only")

    # Thread labels: the named worker holds old+young thread blocks.
    out = pprof("-tags", BIN, all_pb)
    check(re.search(r"^\s*age: Total", out, re.M) is not None, "-tags lists age")
    check(re.search(r"^\s*thread: Total", out, re.M) is not None, "-tags lists thread")
    check(re.search(r"^\s*thread_id: Total", out, re.M) is not None, "-tags lists thread_id")
    check(re.search(r"\(\s*[\d.]+%\): pb-worker$", out, re.M) is not None, "-tags shows thread name pb-worker")
    check(re.search(r"\(\s*[\d.]+%\): pb_writer_test$", out, re.M) is not None,
          "-tags shows the main thread's name")
    check(re.search(r"\(\s*[\d.]+%\): 2s$", out, re.M) is not None, "-tags shows age 2s")
    rows = top("-tagfocus=thread=pb-worker", BIN, all_pb)
    want = OLD_THREAD[0] * OLD_THREAD[1] + YOUNG_THREAD[0] * YOUNG_THREAD[1]
    got = flat(rows, "pb_old_thread") + flat(rows, "pb_young_thread")
    check(got == want and flat(rows, "pb_old_main") == 0,
          "tagfocus thread=pb-worker: %d == %d, no main-thread blocks" % (got, want))
    # One key per flag: the age condition goes through -tagignore.
    rows = top("-tagfocus=thread=pb-worker", "-tagignore=age=:1s", BIN, all_pb)
    check(flat(rows, "pb_old_thread") == OLD_THREAD[0] * OLD_THREAD[1] and flat(rows, "pb_young_thread") == 0,
          "tagfocus thread=pb-worker + tagignore age<=1s keeps only pb_old_thread")

    # The file of a dump with an age threshold still holds every live block (any age can
    # be applied later); the threshold's old blocks are what -tagfocus=age=2s: keeps.
    rows = top("-sample_index=inuse_space", BIN, old_pb)
    for fn, (n, size) in list(old.items()) + list(young.items()):
        check(flat(rows, fn) == n * size, "old file holds every block: %s %d == %d" % (fn, flat(rows, fn), n * size))
    rows = top("-sample_index=inuse_space", "-tagfocus=age=2s:", BIN, old_pb)
    for fn, (n, size) in old.items():
        check(flat(rows, fn) == n * size, "old file, age>=2s: %s %d == %d" % (fn, flat(rows, fn), n * size))
    check(flat(rows, "pb_bt_leaf") == bt_bytes, "old file, age>=2s: pb_bt_leaf %d" % flat(rows, "pb_bt_leaf"))
    for fn in young:
        check(flat(rows, fn) == 0, "old file, age>=2s: %s absent" % fn)

    rows = top(BIN, os.path.join(tmp, "unguarded.pb.gz"))
    check(flat(rows, "pb_old_main") == OLD_MAIN[0] * OLD_MAIN[1], "unguarded dump: pb_old_main %d" % flat(rows, "pb_old_main"))

    out = pprof("-comments", BIN, old_pb)
    check("every live block, age threshold 2000 ms" in out and "sample:0" in out, "comment names age and sample")
    out = pprof("-raw", BIN, old_pb, max_lines=12)
    check(re.search(r"^PeriodType: space bytes$", out, re.M) is not None, "period type space/bytes")
    check(re.search(r"^Period: 1$", out, re.M) is not None, "period 1 at sample:0")
    check("alloc_objects/count alloc_space/bytes inuse_objects/count inuse_space/bytes[dflt] freed_objects/count" in out,
          "sample types in order, inuse_space default")
    m = re.search(r"^1: 0x[0-9a-f]+/0x[0-9a-f]+/0x[0-9a-f]+ (\S+) ([0-9a-f]*)", out, re.M)
    check(m is not None and os.path.realpath(m.group(1)) == os.path.realpath(BIN),
          "mapping 1 is the main executable (%s)" % (m.group(1) if m else None))
    # The build ID read from our own memory must be the one in the file.
    readelf = shutil.which("readelf")
    want = None
    if readelf:
        r = subprocess.run([readelf, "-n", BIN], capture_output=True, text=True)
        want = re.search(r"Build ID: ([0-9a-f]+)", r.stdout)
    if want:
        check(m is not None and m.group(2) == want.group(1),
              "mapping 1 build ID %s == readelf's %s" % (m.group(2) if m else None, want.group(1)))


def sampled():
    run_program("sample:12")
    pb = os.path.join(tmp, "sampled.pb.gz")
    validate(pb, 4096)
    out = pprof("-raw", BIN, pb, max_lines=12)
    check(re.search(r"^Period: 4096$", out, re.M) is not None, "period 4096 at sample:12")
    # At 2^12 bytes per sample, ~2350 of the 20000 small blocks and ~913 of the 1000
    # big ones are sampled: one standard deviation of the estimate is ~2% and ~1%, so
    # 10% is five of them (and the sampler is seeded, so the draw is fixed anyway).
    tol = 0.10
    rows = top("-sample_index=inuse_space", BIN, pb)
    for fn, (n, size) in [("pb_sampled_small", SMALL), ("pb_sampled_big", BIG)]:
        got, want = flat(rows, fn), n * size
        check(abs(got - want) <= tol * want, "%s inuse_space %d within 10%% of %d (%.1f%%)" %
              (fn, got, want, 100.0 * (got - want) / want))
    rows = top("-sample_index=inuse_objects", BIN, pb)
    for fn, (n, size) in [("pb_sampled_small", SMALL), ("pb_sampled_big", BIG)]:
        got = flat(rows, fn)
        check(abs(got - n) <= tol * n, "%s inuse_objects %d within 10%% of %d" % (fn, got, n))
    rows = top("-sample_index=alloc_space", BIN, pb)
    for fn, (n, size) in [("pb_sampled_small", SMALL), ("pb_sampled_big", BIG)]:
        got, want = flat(rows, fn), n * size
        check(abs(got - want) <= tol * want, "%s alloc_space %d within 10%% of %d" % (fn, got, want))


def e2e():
    e = dict(env, LEAKALLOC_CONF="sample:0,age:1s,final:true,interval:0,format:pb,prefix:%s/pb" % tmp)
    if LIB:
        e["LD_PRELOAD"] = LIB
    r = subprocess.run([BIN], env=e, capture_output=True, text=True, timeout=60)
    sys.stdout.write(r.stdout + r.stderr)
    check(r.returncode == 0, "pb_leaky exits 0 (got %d)" % r.returncode)
    files = sorted(glob.glob(os.path.join(tmp, "pb.*.f0.pb.gz")))
    print("dump files: %s" % [os.path.basename(f) for f in os.listdir(tmp) if f.startswith("pb.")])
    check(len(files) == 1, "exactly one exit dump pb.<pid>.<seq>.f0.pb.gz")
    if not files:
        finish()
    pb = files[0]
    old = {"leak_old": 12 * 2000, "leak_in_thread": 6 * 5000}
    rows = top(BIN, pb)
    for fn, want in old.items():
        check(flat(rows, fn) == want, "exit dump: %s inuse_space %d == %d" % (fn, flat(rows, fn), want))
    check(flat(rows, "leak_young") > 0, "exit dump (age:1s): leak_young is in the pb (every live block)")
    check(flat(top("-tagfocus=age=1s:", BIN, pb), "leak_young") == 0, "exit dump, age>=1s: leak_young left out")
    check(flat(rows, "free_me") == 0, "exit dump: free_me not in use")
    rows = top("-sample_index=alloc_space", BIN, pb)
    check(flat(rows, "free_me") == 5 * 300, "exit dump: free_me alloc_space %d == 1500" % flat(rows, "free_me"))
    rows = top("-tagfocus=age=1s:", BIN, pb)
    for fn, want in old.items():
        check(flat(rows, fn) == want, "tagfocus age>=1s: %s %d == %d" % (fn, flat(rows, fn), want))
    rows = top("-tagfocus=thread=pb-leaker", BIN, pb)
    check(flat(rows, "leak_in_thread") == 30000 and flat(rows, "leak_old") == 0,
          "tagfocus thread=pb-leaker selects the exited thread's leaks only")
    out = pprof("-tags", BIN, pb)
    check(re.search(r"\(\s*[\d.]+%\): pb-leaker$", out, re.M) is not None, "-tags shows thread pb-leaker")
    check(re.search(r"^\s*age: Total", out, re.M) is not None, "-tags lists age")


def churn():
    out = run_program("sample:0")
    m = re.search(r"held by pb_bt_leaf: (\d+) bytes in (\d+) blocks", out)
    n = re.search(r"churn dumps: (\d+)", out)
    check(m is not None and n is not None and int(n.group(1)) >= 2,
          "churn made %s dumps while the threads ran" % (n.group(1) if n else None))
    if m is None:
        finish()
    files = sorted(glob.glob(os.path.join(tmp, "churn.*.pb.gz")))
    bad = [f for f in files if pb_check.check(f, 1)[1]]
    check(not bad, "all %d churn dumps are valid profiles (%s)" %
          (len(files), ", ".join(os.path.basename(f) + ": " + pb_check.check(f, 1)[1][0] for f in bad[:3])))
    # Go reads the first, a middle and the last one made during the churn.
    during = [f for f in files if "final" not in f]
    for f in sorted({during[0], during[len(during) // 2], during[-1]}):
        out = pprof("-raw", BIN, f, max_lines=8)
        check("Samples:" in out, "go reads %s" % os.path.basename(f))
    final = os.path.join(tmp, "churn.final.pb.gz")
    rows = top("-sample_index=inuse_space", BIN, final)
    check(flat(rows, "pb_bt_leaf") == int(m.group(1)),
          "after the churn: pb_bt_leaf inuse_space %d == %s held" % (flat(rows, "pb_bt_leaf"), m.group(1)))
    rows = top("-sample_index=inuse_objects", BIN, final)
    check(flat(rows, "pb_bt_leaf") == int(m.group(2)),
          "after the churn: pb_bt_leaf inuse_objects %d == %s" % (flat(rows, "pb_bt_leaf"), m.group(2)))


if MODE == "exact":
    exact()
elif MODE == "sampled":
    sampled()
elif MODE == "churn":
    churn()
elif MODE == "e2e":
    e2e()
else:
    sys.exit("unknown mode " + MODE)
finish()
