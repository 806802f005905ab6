#!/usr/bin/env python3
"""End-to-end tests of the trend report and its verdicts (issue 27): real programs under
`leakalloc run` with interval dumps, their reports read as a user reads them, the JSON
checked against the schemas in docs/.

Usage: verdict_test.py CASE --tool T --lib L --verdict-fixture F --source SRC --docs D --work DIR
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys

ARGS = None
FAILURES = []


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print("FAIL: " + what, flush=True)
    return cond


def run(cmd, env=None, timeout=120):
    e = dict(os.environ)
    e.setdefault("HOME", ARGS.work)
    e["LEAKALLOC_LIB"] = ARGS.lib
    if env:
        e.update(env)
    return subprocess.run(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                          text=True, errors="replace")


def fresh_dir(name):
    d = os.path.join(ARGS.work, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


HEAD = re.compile(r"^#(\d+) (lost|growing|steady|young|unknown)\b")
LEAF = re.compile(r"^\s+at 0x[0-9a-f]+: (\S+)")


def verdicts(text):
    """[(verdict, leaf function, block of text)] in rank order, from the trend report."""
    out = []
    for line in text.splitlines():
        m = HEAD.match(line)
        if m:
            out.append([m.group(2), None, line])
            continue
        if out:
            out[-1][2] += "\n" + line
            m = LEAF.match(line)
            if m and out[-1][1] is None:
                out[-1][1] = m.group(1)
    return out


def has_reach():
    """`leakalloc run` knows --reach (issue 26): the lost verdict and CI mode's lost-only
    count are checked with it. A build without it fails here instead of skipping them."""
    p = run([ARGS.tool, "run", "--reach", "--quiet", "--out", fresh_dir("has_reach"), "--", "/bin/true"])
    check("unknown option" not in p.stderr, "run --reach must be known: " + p.stderr)
    return True


def validate(doc, schema_name):
    import jsonschema
    with open(os.path.join(ARGS.docs, schema_name)) as f:
        schema = json.load(f)
    try:
        jsonschema.validate(doc, schema)
        return True
    except jsonschema.ValidationError as e:
        return check(False, "%s: %s" % (schema_name, e))


def case_verdicts():
    d = fresh_dir("verdicts")
    reach = has_reach()
    cmd = [ARGS.tool, "run", "--sample", "0", "--interval", "300ms", "--top", "10", "--out", d]
    if reach:
        cmd.append("--reach")
    p = run(cmd + ["--", ARGS.verdict_fixture, "--seconds", "3"])
    check(p.returncode == 0, "run exited %d: %s" % (p.returncode, p.stderr))
    text = p.stderr
    check("Trend report over " in text, "run must end with the trend over its dumps:\n" + text)
    check(re.search(r"left out: \S+\.f0\.pb\.gz \(taken at exit", text) is not None,
          "the exit dump must be left out of the trend:\n" + text)
    got = verdicts(text)
    by_leaf = {leaf: v for v, leaf, _ in got}
    want = {"growing_list": "growing", "steady_table": "steady", "cache_insert": "steady", "short_lived": "young",
            "lost_leak": "lost" if reach else "growing"}
    for leaf, v in want.items():
        check(by_leaf.get(leaf) == v, "%s: verdict %s, want %s:\n%s" % (leaf, by_leaf.get(leaf), v, text))
    order = [leaf for _, leaf, _ in got]
    if all(leaf in order for leaf in want):
        # Ranked lost / growing by rate (1000 B per tick before 512), steady by old bytes
        # (the table's 51200 before the cache's 8192), young last.
        check(order.index("lost_leak") < order.index("growing_list") < order.index("steady_table") <
              order.index("cache_insert") < order.index("short_lived"), "ranking: %s" % order)
    if not reach:
        check("reachability: not checked in these dumps, so no stack is called lost" in text,
              "without reach data the report must say why nothing is lost:\n" + text)
    # The growing list: 512 bytes every 10 ms tick, about 51 KB/s less the sleeps' overshoot.
    for v, leaf, block in got:
        if leaf == "growing_list":
            m = re.search(r"growing: \+([\d.]+) KiB/s", block)
            check(m is not None and 20 < float(m.group(1)) < 52, "growing_list's rate: %s" % block)
            m = re.search(r"rose in (\d+) of (\d+) intervals", block)
            check(m is not None and m.group(1) == m.group(2), "growing_list rose every interval: %s" % block)

    # The same over the directory, as JSON, valid against the schema and saying the same.
    p = run([ARGS.tool, "report", "--format", "json", "--top", "50", d])
    check(p.returncode == 0, "report --format json DIR exited %d: %s" % (p.returncode, p.stderr))
    doc = json.loads(p.stdout)
    validate(doc, "report.schema.json")
    j = {}
    for s in doc["stacks"]:
        leaf = next((f["function"] for f in s["frames"] if f["function"]), None)
        j[leaf] = s
    for leaf, v in want.items():
        check(leaf in j and j[leaf]["verdict"] == v, "json: %s verdict %s" % (leaf, j.get(leaf, {}).get("verdict")))
    check(doc["reach_checked"] == reach, "json: reach_checked %s" % doc["reach_checked"])
    if "steady_table" in j:
        s = j["steady_table"]
        check(s["live_bytes"] == 51200 and s["live_count"] == 200 and s["series_bytes"] == [51200] * len(doc["dumps"]),
              "json: the table is 200 x 256 bytes at every dump: %s" % s)
        check(s["growth_bytes_per_s"] == 0, "json: the table does not grow: %s" % s["growth_bytes_per_s"])
    # Lifetimes, to within a bucket (a bucket's upper edge is what p50/p99 give): the
    # short-lived blocks die a tick (about 10 ms) after birth: half under 32 ms, and on a
    # loaded machine, where a 10 ms sleep can take far longer, 99% under 128 ms; the
    # cache's evicted entries lived over a second (evictions spread over 3 s, 64 slots).
    if "short_lived" in j:
        s = j["short_lived"]
        check(s["freed_count"] is not None and s["freed_count"] >= 20 * 200 and s["lifetime_p50_ms"] <= 32 and
              s["lifetime_p50_ms"] >= 16 and s["lifetime_p99_ms"] <= 128, "short_lived lifetimes: %s" % s)
    if "cache_insert" in j:
        s = j["cache_insert"]
        check(s["freed_count"] is not None and 15 <= s["freed_count"] <= 30 and s["lifetime_p50_ms"] >= 2048,
              "cache lifetimes: p50 over a second: %s" % s)
    for leaf in ("steady_table", "growing_list", "lost_leak"):
        if leaf in j:
            check(j[leaf]["freed_count"] == 0 and j[leaf]["lifetime_p50_ms"] is None,
                  "%s frees nothing: %s" % (leaf, j[leaf]))
    # The same through go tool pprof: freed blocks by lifetime label.
    if shutil.which("go"):
        last = doc["dumps"][-1]["path"]

        def freed(*extra):
            p = run(["go", "tool", "pprof", "-top", "-nodecount=100", "-nodefraction=0", "-edgefraction=0", "-sample_index=freed_objects"] + list(extra) +
                    [ARGS.verdict_fixture, last])
            rows = {}
            for line in p.stdout.splitlines():
                parts = line.split()
                if len(parts) == 6 and parts[1].endswith("%"):
                    rows[parts[5]] = int(parts[0])
            return rows
        young = freed("-tagfocus=lifetime=:100ms")
        old = freed("-tagfocus=lifetime=1s:")
        short = j.get("short_lived", {}).get("freed_count") or 0
        # (An entry evicted at the eviction right after its insertion lived about 100 ms.)
        check(young.get("short_lived", 0) >= 0.99 * short and young.get("cache_insert", 0) <= 3,
              "pprof -tagfocus=lifetime=:100ms: the short-lived stack's frees (of %d) only: %s" % (short, young))
        check(old.get("cache_insert", 0) >= 8 and "short_lived" not in old,
              "pprof -tagfocus=lifetime=1s: the cache's frees only: %s" % old)
        # Every live block is in the pb, young ones too; the age label selects.
        def inuse(*extra):
            p = run(["go", "tool", "pprof", "-top", "-nodecount=100", "-nodefraction=0", "-edgefraction=0", "-sample_index=inuse_space", "-unit=B"] +
                    list(extra) + [ARGS.verdict_fixture, last])
            rows = {}
            for line in p.stdout.splitlines():
                parts = line.split()
                if len(parts) == 6 and parts[1].endswith("%"):
                    rows[parts[5]] = int(parts[0].rstrip("B"))
            return rows
        every = inuse()
        check(every.get("short_lived") == j["short_lived"]["live_bytes"] if "short_lived" in j else False,
              "the pb holds the young blocks: %s" % every)
        check("short_lived" not in inuse("-tagfocus=age=1s:") and inuse("-tagfocus=age=1s:").get("steady_table") == 51200,
              "-tagfocus=age=1s: leaves the young blocks out")
    if not reach and "lost_leak" in j:
        check(j["lost_leak"]["lost_bytes"] is None, "json: no lost bytes without reach data")
    check(len(doc["dumps"]) >= 5 and all(x["kind"] == "i" for x in doc["dumps"]),
          "json: the interval dumps, without the exit dump: %s" % [x["path"] for x in doc["dumps"]])
    times = [x["time_s"] for x in doc["dumps"]]
    check(times == sorted(times) and 0 < times[0] < 1.0, "json: dump times are the uptimes: %s" % times)

    # A single dump: same schema; diff: its own schema, with the frames of the report's.
    dumps = sorted(x["path"] for x in doc["dumps"])
    p = run([ARGS.tool, "report", "--format", "json", dumps[0]])
    check(p.returncode == 0, "report --format json FILE: %s" % p.stderr)
    one = json.loads(p.stdout)
    validate(one, "report.schema.json")
    check(len(one["dumps"]) == 1 and one["stacks"] and one["stacks"][0]["growth_bytes_per_s"] is None,
          "json of one dump: no growth")
    first, last = doc["dumps"][0]["path"], doc["dumps"][-1]["path"]
    p = run([ARGS.tool, "diff", "--format", "json", first, last])
    check(p.returncode == 0, "diff --format json: %s" % p.stderr)
    diff = json.loads(p.stdout)
    validate(diff, "diff.schema.json")
    leaves = [next((f["function"] for f in s["frames"] if f["function"]), None) for s in diff["stacks"]]
    check(leaves[:2] == ["lost_leak", "growing_list"], "diff json: the two growing stacks first: %s" % leaves)
    with open(os.path.join(ARGS.docs, "report.schema.json")) as f:
        rs = json.load(f)
    with open(os.path.join(ARGS.docs, "diff.schema.json")) as f:
        ds = json.load(f)
    check(rs["definitions"]["frame"] == ds["definitions"]["frame"], "the two schemas' frame definitions differ")

    # A `.lost` sibling (issue 26's lost dump) gives the lost verdict. Until the library
    # writes them, one is made by go tool pprof from the last dump, keeping lost_leak only.
    if not reach and shutil.which("go"):
        last = doc["dumps"][-1]["path"]
        lost = last[:-len(".pb.gz")] + ".lost.pb.gz"
        p = run(["go", "tool", "pprof", "-proto", "-focus=lost_leak", "-output=" + lost, ARGS.verdict_fixture, last])
        check(p.returncode == 0 and os.path.exists(lost), "go tool pprof -proto: %s" % p.stderr)
        p = run([ARGS.tool, "report", "--format", "json", "--top", "50", d])
        lj = json.loads(p.stdout) if p.returncode == 0 else {"stacks": [], "reach_checked": False}
        validate(lj, "report.schema.json")
        first = lj["stacks"][0] if lj["stacks"] else {}
        leaf = next((f["function"] for f in first.get("frames", []) if f["function"]), None)
        check(lj["reach_checked"] and leaf == "lost_leak" and first["verdict"] == "lost" and
              first["lost_bytes"] == first["live_bytes"] and first["indirect_bytes"] == 0,
              "with a .lost sibling, lost_leak is lost and ranked first: %s" % first)
        others = [s["verdict"] for s in lj["stacks"][1:]]
        check("lost" not in others and others.count("growing") == 1,
              "only lost_leak is lost; growing_list still grows: %s" % others)
        p = run([ARGS.tool, "report", d])
        check("reachability: not checked" not in p.stdout and re.search(r"^#1 lost: \d+ bytes direct", p.stdout, re.M),
              "text report with a .lost sibling:\n" + p.stdout)
        os.unlink(lost)

    # A schema that is not checked is no schema: a document missing a field must fail.
    import jsonschema
    broken = json.loads(json.dumps(doc))
    del broken["stacks"][0]["verdict"]
    try:
        jsonschema.validate(broken, rs)
        check(False, "the schema accepted a stack without a verdict")
    except jsonschema.ValidationError:
        pass


def preload(conf):
    return {"LD_PRELOAD": ARGS.lib, "LEAKALLOC_CONF": conf}


STACK_LINE = re.compile(r"^leakalloc:\s+(0x[0-9a-f]+)(?: (\S+)\+(0x[0-9a-f]+))?$")


def leak_error_stacks(text):
    """[(bytes, blocks, [(pc, module, offset)])] from leak_error's message."""
    out = []
    for line in text.splitlines():
        m = re.match(r"^leakalloc:   #\d+ (\d+) bytes in (\d+) blocks?$", line)
        if m:
            out.append((int(m.group(1)), int(m.group(2)), []))
            continue
        m = STACK_LINE.match(line)
        if m and out:
            out[-1][2].append((int(m.group(1), 16), m.group(2), int(m.group(3), 16) if m.group(3) else None))
    return out


def addr2line_function(binary, offset):
    # The offset is of the return address; the call is the byte before it.
    p = subprocess.run(["addr2line", "-f", "-e", binary, hex(offset - 1)], stdout=subprocess.PIPE, text=True)
    return p.stdout.split("\n", 1)[0]


def case_leak_error():
    reach = has_reach()
    d = fresh_dir("leak_error")
    # A leaking program, exact: fails, names its three largest stacks symbol-free with
    # module+offset (checked with addr2line), and the exit dump to run report on.
    conf = "sample:0,leak_error:true,format:heap+pb,prefix:%s/le" % d + (",reach:true" if reach else "")
    p = run([ARGS.verdict_fixture, "--seconds", "1.5"], env=preload(conf))
    check(p.returncode == 1, "a leaking program must exit 1 under leak_error, got %d: %s" % (p.returncode, p.stderr))
    check(re.search(r"^leakalloc: leak_error: \d+ blocks \(\d+ bytes\) ", p.stderr, re.M) is not None,
          "leak_error's summary line:\n" + p.stderr)
    if not reach:
        check("reach is off: reachable memory counts too" in p.stderr,
              "without reach, leak_error must say that reachable memory counts:\n" + p.stderr)
    stacks = leak_error_stacks(p.stderr)
    # With reach only the lost stack counts; without it the three largest.
    check(len(stacks) == (1 if reach else 3), "leak_error's stacks:\n" + p.stderr)
    fixture = os.path.realpath(ARGS.verdict_fixture)
    leaves = []
    for b, n, frames in stacks:
        if check(frames and frames[0][1] == fixture and frames[0][2] is not None,
                 "leaf frame with the fixture's module+offset: %s\n%s" % (frames[:1], p.stderr)):
            leaves.append(addr2line_function(fixture, frames[0][2]))
    # 150 ticks: lost_leak 150 x 1000 B, growing_list 150 x 512 B, the table 200 x 256 B.
    want = ["lost_leak"] if reach else ["lost_leak", "growing_list", "steady_table"]
    check(leaves[:len(want)] == want, "leak_error's stacks by bytes: %s, want %s" % (leaves, want))
    if not reach and len(stacks) == 3:
        check(stacks[0][0] == stacks[0][1] * 1000 and stacks[2][:2] == (51200, 200),
              "exact numbers at sample:0: %s" % [(b, n) for b, n, _ in stacks])
    m = re.search(r"names and lines: leakalloc report (\S+)$", p.stderr, re.M)
    if check(m is not None and m.group(1).endswith(".f0.pb.gz") and os.path.exists(m.group(1)),
             "leak_error must name the exit dump's pb:\n" + p.stderr):
        r = run([ARGS.tool, "report", "--top", "1", m.group(1)])
        check(re.search(r"^\s+at 0x[0-9a-f]+: lost_leak ", r.stdout, re.M) is not None,
              "report of the named dump: lost_leak first:\n" + r.stdout + r.stderr)

    # /bin/ls closes its stderr before exit (gnulib close_stdout): the message still
    # reaches the user, through the copy of fd 2 taken at start-up.
    p = run(["/bin/ls", "/"], env=preload("sample:0,leak_error:true,prefix:%s/ls" % d + (",reach:true" if reach else "")))
    if p.returncode != 0:
        check(p.returncode == 1 and "leakalloc: leak_error: " in p.stderr,
              "/bin/ls / failing under leak_error must say why: rc %d, stderr %r" % (p.returncode, p.stderr))
    check(p.returncode == (0 if reach else 1), "/bin/ls / under leak_error: rc %d (reach %s)" % (p.returncode, reach))
    # The copy is close-on-exec: a program the process execs (without the library) does
    # not inherit it.
    p = run(["python3", "-c", "import os; e = dict(os.environ); del e['LD_PRELOAD']; "
             "print(sorted(os.listdir('/proc/self/fd'))); os.execve('/bin/ls', ['ls', '/proc/self/fd'], e)"],
            env=preload("leak_error:true"))
    lines = p.stdout.splitlines()
    check(len(lines) >= 2 and "'255'" in lines[0] and "255" not in lines[1:],
          "fd 255 in the process, not in what it execs: %r" % p.stdout)

    # Clean programs: a threaded C++ program and perl. With reach they pass; without, what
    # they keep (glibc's per-thread blocks, perl's interpreter) counts, and the message says so.
    for label, cmd in (("threads", [ARGS.threads_fixture]), ("perl", ["perl", "-e", "1"])):
        p = run(cmd, env=preload("leak_error:true" + (",reach:true" if reach else "")))
        if reach:
            check(p.returncode == 0, "%s under leak_error,reach must pass: rc %d %s" % (label, p.returncode, p.stderr))
        else:
            check(p.returncode == 0 or "reach is off: reachable memory counts too" in p.stderr,
                  "%s under leak_error without reach: rc %d, the message must say reachable memory counts: %s" %
                  (label, p.returncode, p.stderr))


def case_python():
    """A Python script leaking through a module-level list: `leakalloc run` sets
    PYTHONMALLOC=malloc, so the leak shows as the interpreter's own allocation path, one
    block per object, not as pymalloc's arenas (256 KiB blocks of obmalloc). Debian's
    python3.11 is stripped: the frames it names come from its dynamic symbols
    (_PyEval_EvalFrameDefault, PyEval_EvalCode, ...). The user's own PYTHONMALLOC wins,
    which is also the control that this test can tell the two apart."""
    d = fresh_dir("python")
    script = os.path.join(d, "leaky.py")
    with open(script, "w") as f:
        f.write("#!/usr/bin/python3\n"  # Debian's, whatever python3 is first in PATH
                "import time\n"
                "LEAK = []\n"
                "def handle(i):\n"
                "    LEAK.append(('request-%d' % i) * 3)\n"
                "for step in range(12):\n"
                "    for i in range(2000):\n"
                "        handle(i)\n"
                "    time.sleep(0.1)\n")
    os.chmod(script, 0o755)

    def top_growing(env):
        p = run([ARGS.tool, "run", "--sample", "0", "--top", "3", "--interval", "300ms", "--out", d, "--", script],
                env=env)
        check(p.returncode == 0, "python run: rc %d %s" % (p.returncode, p.stderr))
        got = verdicts(p.stderr)
        return p.stderr, (got[0] if got else ("", "", ""))

    text, (verdict, leaf, block) = top_growing(None)
    check("PYTHONMALLOC=malloc" in text, "run must say it set PYTHONMALLOC=malloc:\n" + text)
    m = re.search(r"live (\d+) bytes \([^)]*\) in (\d+) blocks", block)
    check(verdict == "growing" and m is not None and int(m.group(2)) >= 10000 and
          int(m.group(1)) / int(m.group(2)) < 200,
          "the top stack grows by one small block per string:\n" + block)
    check("_PyEval_EvalFrameDefault" in block and "PyEval_EvalCode" in block,
          "the top stack goes through the interpreter's eval loop:\n" + block)
    check(not re.search(r"obmalloc|pymalloc|new_arena|_PyObject_Malloc", block),
          "pymalloc's arena allocator must not be on the top stack:\n" + block)
    # Control: with pymalloc (the user's choice wins), the same check sees arenas.
    text, (verdict, leaf, block) = top_growing({"PYTHONMALLOC": "pymalloc"})
    check("PYTHONMALLOC=malloc" not in text, "the user's PYTHONMALLOC must be kept:\n" + text)
    m = re.search(r"live (\d+) bytes \([^)]*\) in (\d+) blocks?", block)
    check(m is None or int(m.group(1)) / max(1, int(m.group(2))) >= 200,
          "with pymalloc the top stack is arenas, not objects:\n" + block)


LOST_HEADER = re.compile(r"^  lost: (\d+) bytes \(.*\) in (\d+) blocks from (\d+) stacks")
STACK_HEAD = re.compile(r"^#(\d+): ")
STACK_LOST = re.compile(r"^    lost: (\d+) bytes in (\d+) blocks?")


def single_report_lost(dump):
    """(header lost bytes, blocks), [(leaf, lost bytes, lost blocks)] in rank order."""
    p = run([ARGS.tool, "report", "--top", "10", "--depth", "1", "--no-histogram", dump])
    check(p.returncode == 0, "report %s exited %d: %s" % (dump, p.returncode, p.stderr))
    header, stacks = None, []
    for line in p.stdout.splitlines():
        m = LOST_HEADER.match(line)
        if m:
            header = (int(m.group(1)), int(m.group(2)))
        if STACK_HEAD.match(line):
            stacks.append([None, 0, 0])
        m = STACK_LOST.match(line)
        if m and stacks:
            stacks[-1][1:] = [int(m.group(1)), int(m.group(2))]
        m = LEAF.match(line)
        if m and stacks and stacks[-1][0] is None:
            stacks[-1][0] = m.group(1)
    return header, stacks, p.stdout


def valgrind_lost(argv):
    """valgrind's definitely + indirectly lost (bytes, blocks) for a run of argv."""
    p = subprocess.run(["valgrind", "--leak-check=full", "--error-exitcode=0"] + argv,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    total = [0, 0]
    for kind in ("definitely", "indirectly"):
        m = re.search(kind + r" lost: ([\d,]+) bytes in ([\d,]+) blocks", p.stderr)
        if check(m is not None, "valgrind printed no '%s lost' line:\n%s" % (kind, p.stderr[-2000:])):
            total[0] += int(m.group(1).replace(",", ""))
            total[1] += int(m.group(2).replace(",", ""))
    return tuple(total)


def case_lost_single():
    """One dump's report (not a trend) shows what the reachability check found, per stack
    and in total, from the pb's `reach` labels and from the .heap's `.lost` sibling; at
    sample:0 it equals valgrind's definitely + indirectly lost on the same program."""
    d = fresh_dir("lost_single")
    argv = [ARGS.verdict_fixture, "--seconds", "1"]
    env = preload("sample:0,reach:true,age:1ms,interval:1h,format:heap+pb,prefix:" + os.path.join(d, "v"))
    p = run(argv, env=env)
    check(p.returncode == 0, "fixture exited %d: %s" % (p.returncode, p.stderr))
    finals = sorted(f for f in os.listdir(d) if ".f0." in f)
    pb = [f for f in finals if f.endswith(".f0.pb.gz")]
    heap = [f for f in finals if f.endswith(".f0.heap")]
    if not check(len(pb) == 1 and len(heap) == 1, "one final .pb.gz and .heap, got %s" % finals):
        return
    want = valgrind_lost(argv)
    check(want[0] > 0, "valgrind must find the fixture's lost blocks: %s" % (want,))
    for name in (pb[0], heap[0]):
        header, stacks, text = single_report_lost(os.path.join(d, name))
        check(header == want, "%s: report's lost (bytes, blocks) %s, valgrind's %s:\n%s" % (name, header, want, text))
        check(bool(stacks) and stacks[0][0] == "lost_leak" and (stacks[0][1], stacks[0][2]) == want,
              "%s: the first stack must be lost_leak with all the lost bytes: %s\n%s" % (name, stacks, text))
        check(all(s[1] == 0 for s in stacks[1:]), "%s: no other stack is lost: %s" % (name, stacks))
    # Without a check the report says so instead of printing a zero.
    p = run([ARGS.tool, "report", "--depth", "1", "--no-histogram", os.path.join(d, pb[0])])
    os.unlink(os.path.join(d, heap[0].replace(".f0.heap", ".f0.lost.heap")))
    q = run([ARGS.tool, "report", "--depth", "1", os.path.join(d, heap[0])])
    check("  lost: not checked" in q.stdout, "a .heap without its .lost sibling: 'lost: not checked':\n" + q.stdout)


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("case")
    for a in ("tool", "lib", "verdict-fixture", "threads-fixture", "source", "docs", "work"):
        ap.add_argument("--" + a, default="")
    ARGS = ap.parse_args()
    os.makedirs(ARGS.work, exist_ok=True)
    ARGS.work = os.path.abspath(ARGS.work)
    globals()["case_" + ARGS.case]()
    if FAILURES:
        print("%d check(s) failed" % len(FAILURES))
        return 1
    print("ok: " + ARGS.case)
    return 0


if __name__ == "__main__":
    sys.exit(main())
