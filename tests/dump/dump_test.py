#!/usr/bin/env python3
"""End-to-end dump tests: drive tests/dump/dump_sites.c under leakalloc and check what
the real readers (jeprof, google-pprof, go tool pprof) make of the dumps.

Usage: dump_test.py SCENARIO --prog BIN [--lib libleakalloc.so] --workdir DIR

Without --lib the program must be linked with -lleakalloc. Every scenario states its
LEAKALLOC_CONF. Synchronisation: with summary:true leakalloc prints one stderr line per
dump after the files are closed, so the driver waits for that line before reading.
"""
import argparse
import errno
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time

# Site -> in-use bytes (requested sizes x counts; see dump_sites.c).
OLD_SITES = {
    "leak_buffers": 25 * 4000,
    "leak_small": 100 * 24,
    "worker_leak_site": 8 * 7000,
    "long_lived_site": 4 * 5000,
}
FREED_SITES = ["freed_site", "cross_site"]
ALL_SITES = list(OLD_SITES) + FREED_SITES + ["young_site", "growth_site", "child_site", "grow_site"]

ARGS = None
FAILURES = []


def check(cond, msg):
    if cond:
        print("  ok:", msg)
    else:
        print("  FAIL:", msg)
        FAILURES.append(msg)


def fatal(msg):
    print("FATAL:", msg)
    sys.exit(1)


# ---- the program -----------------------------------------------------------------------

class Prog:
    def __init__(self, conf, prefix, cwd=None):
        """prefix None: leakalloc's default prefix, files in `cwd`."""
        env = dict(os.environ)
        env["LEAKALLOC_CONF"] = conf + (",prefix:" + prefix if prefix else "")
        if ARGS.lib:
            env["LD_PRELOAD"] = ARGS.lib
        cwd = cwd or ARGS.workdir
        self.prefix = prefix or os.path.join(cwd, "leakalloc")
        self.p = subprocess.Popen([ARGS.prog], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env, cwd=cwd)
        self.pid = self.p.pid
        self.err_lines = []
        self.err_q = queue.Queue()
        self.out_q = queue.Queue()
        threading.Thread(target=self._pump, args=(self.p.stderr, self.err_q), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.p.stdout, self.out_q), daemon=True).start()

    @staticmethod
    def _pump(f, q):
        for raw in f:
            q.put(raw.decode(errors="replace").rstrip("\n"))
        q.put(None)

    def cmd(self, line, timeout=60):
        self.p.stdin.write((line + "\n").encode())
        self.p.stdin.flush()
        want = "ok " + line.split(" ")[0]
        got = []
        deadline = time.time() + timeout
        while True:
            try:
                l = self.out_q.get(timeout=max(0.1, deadline - time.time()))
            except queue.Empty:
                fatal("no answer to %r within %ss (stderr: %s)" % (line, timeout, self.stderr_text()))
            if l is None:
                fatal("program ended during %r (stderr: %s)" % (line, self.stderr_text()))
            if l == want:
                return got
            got.append(l)

    def _drain_err(self):
        while True:
            try:
                l = self.err_q.get_nowait()
            except queue.Empty:
                return
            if l is not None:
                self.err_lines.append(l)

    def stderr_text(self):
        self._drain_err()
        return "\n".join(self.err_lines)

    def wait_err(self, pattern, timeout=60, start=0):
        """Waits for a stderr line matching `pattern` at index >= start; returns (index, match)."""
        rx = re.compile(pattern)
        deadline = time.time() + timeout
        while True:
            self._drain_err()
            for i in range(start, len(self.err_lines)):
                m = rx.search(self.err_lines[i])
                if m:
                    return i, m
            if time.time() > deadline:
                fatal("no stderr line matching %r within %ss; stderr:\n%s"
                      % (pattern, timeout, self.stderr_text()))
            time.sleep(0.02)

    def finish(self, code=0, timeout=60):
        self.p.stdin.write(("exit %d\n" % code).encode())
        self.p.stdin.flush()
        try:
            rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            fatal("program did not exit")
        time.sleep(0.05)
        self._drain_err()
        return rc

    def dump_name(self, seq, kind, kseq, suffix=".heap", pid=None):
        return "%s.%d.%d.%s%d%s" % (self.prefix, pid or self.pid, seq, kind, kseq, suffix)

    def signal_dump(self, kseq, pid=None, start=0):
        """Sends the dump signal and waits for the dump's summary line."""
        self.cmd("sig")
        return self.wait_summary("s", kseq, pid, start)

    def wait_summary(self, kind, kseq, pid=None, start=0, timeout=60):
        pid = pid or self.pid
        return self.wait_err(r"^leakalloc: dump %s%d: .* wrote (\S*\.%d\.\d+\.%s%d\.heap)"
                             % (kind, kseq, pid, kind, kseq), timeout, start)


# ---- readers -----------------------------------------------------------------------------

def reader_env():
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    env.pop("LEAKALLOC_CONF", None)
    for k, sub in (("HOME", "home"), ("GOCACHE", "gocache"), ("PPROF_TMPDIR", "pproftmp")):
        d = os.path.join(ARGS.workdir, sub)
        os.makedirs(d, exist_ok=True)
        env[k] = d
    env["PPROF_BINARY_PATH"] = os.path.dirname(os.path.realpath(ARGS.prog))
    return env


def run_reader(argv):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=reader_env(),
                       timeout=120, cwd=ARGS.workdir)
    out = r.stdout.decode(errors="replace")
    if r.returncode != 0:
        fatal("%s failed (%d): %s %s" % (argv[0], r.returncode, out, r.stderr.decode(errors="replace")))
    return out, r.stderr.decode(errors="replace")


def parse_perl_text(out):
    """jeprof/google-pprof --text --show_bytes: `flat flat% sum% cum cum% name`."""
    flat = {}
    total = None
    for line in out.splitlines():
        m = re.match(r"^Total(?: \(t\d+\))?: (\d+) B", line.strip())
        if m:
            total = int(m.group(1))
            continue
        m = re.match(r"^\s*(-?\d+)\s+\S+%\s+\S+%\s+(-?\d+)\s+\S+%\s+(.+?)\s*$", line)
        if m:
            flat[m.group(3)] = flat.get(m.group(3), 0) + int(m.group(1))
    return flat, total


def jeprof(path, *extra):
    out, err = run_reader(["jeprof", "--text", "--show_bytes"] + list(extra) + [ARGS.prog, path])
    return parse_perl_text(out)


def google_pprof(path):
    out, err = run_reader(["google-pprof", "--text", "--show_bytes", ARGS.prog, path])
    return parse_perl_text(out)


def go_top(path, base=None, index="inuse_space", extra=()):
    argv = ["go", "tool", "pprof", "-top", "-nodefraction=0", "-nodecount=100000",
            "-sample_index=" + index, "-unit=B"] + list(extra)
    if base:
        argv.append("-base=" + base)
    out, err = run_reader(argv + [ARGS.prog, path])
    flat = {}
    total = None
    for line in out.splitlines():
        m = re.search(r"of (-?\d+)B total", line)
        if m:
            total = int(m.group(1))
        m = re.match(r"^\s*(-?\d+)B?\s+\S+%\s+\S+%\s+(-?\d+)B?\s+\S+%\s+(.+?)\s*$", line)
        if m:
            flat[m.group(3)] = flat.get(m.group(3), 0) + int(m.group(1))
    if total is None and "Showing nodes" not in out:
        fatal("go tool pprof printed no profile for %s: %s %s" % (path, out, err))
    return flat, total


def check_sites(reader, flat, expect, absent=()):
    for site, b in expect.items():
        check(flat.get(site, 0) == b, "%s: %s = %d bytes (got %s)" % (reader, site, b, flat.get(site)))
    for site in absent:
        check(flat.get(site, 0) == 0, "%s: %s absent (got %s)" % (reader, site, flat.get(site)))


def check_heap_file(path, exact=True):
    with open(path, "rb") as f:
        data = f.read()
    text = data.decode(errors="replace")
    first = text.split("\n", 1)[0]
    if path.endswith(".heap_v2"):
        ok = re.match(r"^heap_v2/\d+$", first) is not None
    else:
        tag = r"heapprofile" if exact else r"heap_v2/\d+"
        ok = re.match(r"^heap profile: \d+: \d+ \[\d+: \d+\] @ " + tag + "$", first) is not None
    check(ok, "%s: header %r" % (os.path.basename(path), first))
    check("\nMAPPED_LIBRARIES:\n" in text and text.endswith("\n"),
          "%s: complete (maps copied, ends with a newline)" % os.path.basename(path))
    st = os.stat(path)
    check(st.st_mode & 0o777 == 0o600, "%s: mode 0600" % os.path.basename(path))
    return text


def fresh_dir(name):
    d = os.path.join(ARGS.workdir, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


# ---- scenarios ---------------------------------------------------------------------------

def scenario_exact():
    """sample:0, age 0: exact bytes per site in every reader and format; -base growth;
    prof.dump through leakalloc_mallctl (automatic and explicit names)."""
    d = fresh_dir("exact")
    fmts = "heap+heap_v2+pb"
    p = Prog("sample:0,signal:USR2,summary:true,format:" + fmts, os.path.join(d, "la"))
    p.cmd("old")
    _, m = p.signal_dump(0)
    s0 = p.dump_name(0, "s", 0)
    check(m.group(1) == s0, "signal dump named %s" % s0)
    for suffix in (".heap", ".heap_v2", ".pb.gz"):
        check(os.path.exists(p.dump_name(0, "s", 0, suffix)), "file %s exists" % p.dump_name(0, "s", 0, suffix))
    check_heap_file(s0)
    check_heap_file(p.dump_name(0, "s", 0, ".heap_v2"))

    flat, total = jeprof(s0)
    check_sites("jeprof heap", flat, OLD_SITES, FREED_SITES)
    flat, total = google_pprof(s0)
    check_sites("google-pprof heap", flat, OLD_SITES, FREED_SITES)
    flat, total = go_top(s0)
    check_sites("go pprof heap", flat, OLD_SITES, FREED_SITES)
    # Alloc columns are the cumulative history: freed sites show up there.
    flat, total = go_top(s0, index="alloc_space")
    check_sites("go pprof heap alloc_space", flat,
                dict(OLD_SITES, freed_site=50 * 1000, cross_site=10 * 3000))

    v2 = p.dump_name(0, "s", 0, ".heap_v2")
    flat, total = jeprof(v2)
    check_sites("jeprof heap_v2", flat, OLD_SITES, FREED_SITES)
    with open(v2) as f:
        m = re.search(r"^# thread t(\d+): tid \d+ name dumpworker$", f.read(), re.M)
    check(m is not None, "heap_v2 names the worker thread")
    if m:
        flat, total = jeprof(v2, "--thread=" + m.group(1))
        check_sites("jeprof heap_v2 --thread=%s" % m.group(1), flat,
                    {"worker_leak_site": 56000}, ["leak_buffers", "leak_small", "long_lived_site"])
        check(total == 56000, "jeprof --thread total is the worker's 56000 bytes (got %s)" % total)

    pb = p.dump_name(0, "s", 0, ".pb.gz")
    flat, total = go_top(pb)
    check_sites("go pprof pb", flat, OLD_SITES, FREED_SITES)

    # Growth between two dumps of one run.
    p.cmd("growth")
    p.cmd("freelong")
    _, m = p.signal_dump(1)
    s1 = p.dump_name(1, "s", 1)
    check(m.group(1) == s1, "second signal dump named %s" % s1)
    flat, total = go_top(s1, base=s0)
    check_sites("go pprof -base", flat, {"growth_site": 30000, "long_lived_site": -20000},
                ["leak_buffers", "leak_small", "worker_leak_site"])

    # prof.dump: the automatic name, then a caller-chosen one (+ the other formats' suffixes).
    p.cmd("mdump -")
    m0 = p.dump_name(2, "m", 0)
    check(os.path.exists(m0), "prof.dump wrote %s" % m0)
    explicit = os.path.join(d, "explicit.heap")
    p.cmd("mdump " + explicit)
    for path in (explicit, explicit + ".heap_v2", explicit + ".pb.gz"):
        check(os.path.exists(path), "prof.dump with a name wrote %s" % path)
    flat, total = jeprof(explicit)
    check_sites("jeprof explicit heap", flat, dict(OLD_SITES, growth_site=30000, long_lived_site=0))
    # The same name again replaces each file by a rename (a new inode), as jemalloc's
    # prof.dump replaces it; it failed with EEXIST before (issue 24).
    before = {f: os.lstat(f).st_ino for f in (explicit, explicit + ".heap_v2", explicit + ".pb.gz")}
    got = p.cmd("mdump " + explicit)
    check("mdump failed" not in got, "prof.dump to an existing name must succeed: %s" % got)
    for f, ino in before.items():
        check(os.lstat(f).st_ino != ino, "prof.dump replaced %s" % f)
    flat, total = jeprof(explicit)
    check_sites("jeprof replaced explicit heap", flat, dict(OLD_SITES, growth_site=30000, long_lived_site=0))
    rc = p.finish()
    p._drain_err()
    check(not any("cannot write dump" in l for l in p.err_lines), "no dump failed: %s" % p.err_lines)
    check(rc == 0, "exit status 0 (got %d)" % rc)
    check(not any("f0" in f for f in os.listdir(d)), "no final dump without final:true")


def scenario_age():
    """age:2s: blocks younger than the threshold are absent from every format."""
    d = fresh_dir("age")
    p = Prog("sample:0,age:2s,final:false,interval:0,signal:USR2,summary:true,format:heap+heap_v2+pb",
             os.path.join(d, "la"))
    p.cmd("old")
    p.cmd("sleep 2600")
    p.cmd("young")
    idx, m = p.signal_dump(0)
    line = p.err_lines[idx]
    s0 = p.dump_name(0, "s", 0)
    nums = re.search(r"(\d+) live blocks \((\d+) bytes\), (\d+) blocks \((\d+) bytes\) alive >= 2000 ms", line)
    check(nums is not None, "summary line has live and old totals: %r" % line)
    if nums:
        live_b, live_by, old_b, old_by = map(int, nums.groups())
        check(live_b - old_b == 6 and live_by - old_by == 54000,
              "summary: the 6 young blocks (54000 bytes) are live but not old (%r)" % line)
    absent = FREED_SITES + ["young_site"]
    check_sites("jeprof heap age", jeprof(s0)[0], OLD_SITES, absent)
    check_sites("google-pprof heap age", google_pprof(s0)[0], OLD_SITES, absent)
    check_sites("go pprof heap age", go_top(s0)[0], OLD_SITES, absent)
    check_sites("jeprof heap_v2 age", jeprof(p.dump_name(0, "s", 0, ".heap_v2"))[0], OLD_SITES, absent)
    # The pb holds every live block; its age label selects the old ones.
    pb = p.dump_name(0, "s", 0, ".pb.gz")
    check_sites("go pprof pb age", go_top(pb, extra=("-tagfocus=age=2s:",))[0], OLD_SITES, absent)
    check_sites("go pprof pb all", go_top(pb)[0], dict(OLD_SITES, young_site=54000), FREED_SITES)
    with open(s0) as f:
        check("# age_threshold_ms: 2000\n" in f.read(), "metadata records the age threshold")
    rc = p.finish()
    check(rc == 0, "exit status 0 (got %d)" % rc)
    check(sorted(os.listdir(d)) == sorted(os.path.basename(p.dump_name(0, "s", 0, s))
                                          for s in (".heap", ".heap_v2", ".pb.gz")),
          "final:false and interval:0 given explicitly: no other dump (%s)" % os.listdir(d))


def parse_names(d, pid):
    rx = re.compile(r"^la\.(\d+)\.(\d+)\.([fiusm])(\d+)\.heap$")
    out = []
    for f in os.listdir(d):
        m = rx.match(f)
        if m and int(m.group(1)) == pid:
            out.append((int(m.group(2)), m.group(3), int(m.group(4)), os.path.join(d, f)))
    return sorted(out)


def check_sequence(names, what):
    def short(v):
        return str(v) if len(v) <= 12 else "%s ... %s" % (v[:5], v[-5:])
    seqs = [n[0] for n in names]
    check(seqs == list(range(len(seqs))),
          "%s: seq numbers 0..%d without gaps (%s)" % (what, len(seqs) - 1, short(seqs)))
    per_kind = {}
    for seq, kind, kseq, _ in names:
        per_kind.setdefault(kind, []).append(kseq)
    for kind, ks in per_kind.items():
        check(ks == list(range(len(ks))),
              "%s: kind %s numbered 0..%d in order (%s)" % (what, kind, len(ks) - 1, short(ks)))
    return per_kind


def grow_in_steps(p, mib):
    """`mib` times: 1 MiB more of grow_site, then 150 ms for the dump thread's poll."""
    for _ in range(mib):
        p.cmd("grow 1")
        p.cmd("sleep 150")


def scenario_triggers():
    """Every trigger writes its file, with the right name, while the program runs."""
    # interval + signal + prof.dump + final; all kinds share one seq counter.
    d = fresh_dir("triggers")
    p = Prog("sample:0,interval:300ms,signal:USR2,final:true,summary:true", os.path.join(d, "la"))
    p.cmd("old")
    i, _ = p.wait_summary("i", 1, timeout=30)
    p.signal_dump(0)
    p.cmd("mdump -")
    p.cmd("sleep 400")
    rc = p.finish()
    check(rc == 0, "exit status 0 (got %d)" % rc)
    names = parse_names(d, p.pid)
    kinds = check_sequence(names, "interval/signal/mdump/final")
    check(len(kinds.get("i", [])) >= 2, "interval dumps written while running (%s)" % kinds.get("i"))
    check(kinds.get("s") == [0] and kinds.get("m") == [0] and kinds.get("f") == [0],
          "one signal, one prof.dump and one final dump (%s)" % kinds)
    check(names and names[-1][1] == "f", "the final dump is the last one")
    for n in names:
        check_heap_file(n[3])
    flat, _ = go_top([n for n in names if n[1] == "f"][0][3])
    check_sites("go pprof final", flat, OLD_SITES, FREED_SITES)

    # lg_interval: one dump per 2 MiB allocated (polled; bursts can merge two).
    d = fresh_dir("lg_interval")
    p = Prog("sample:0,lg_interval:21,summary:true", os.path.join(d, "la"))
    grow_in_steps(p, 8)
    p.wait_summary("i", 1, timeout=30)
    rc = p.finish()
    check(rc == 0, "lg_interval: exit status 0")
    names = parse_names(d, p.pid)
    kinds = check_sequence(names, "lg_interval")
    check(set(kinds) == {"i"} and len(kinds["i"]) >= 2 and len(kinds["i"]) <= 5,
          "lg_interval:21 over 8 MiB: 2..5 kind-i dumps (%s)" % kinds)
    last = names[-1][3]
    flat, _ = go_top(last)
    check(flat.get("grow_site", 0) >= 2 * 1048576 and flat.get("grow_site", 0) % 65536 == 0,
          "lg_interval dump shows grow_site in whole 64 KiB blocks (%s)" % flat.get("grow_site"))

    # gdump: new high-water marks of live bytes.
    d = fresh_dir("gdump")
    p = Prog("sample:0,gdump:true,summary:true", os.path.join(d, "la"))
    grow_in_steps(p, 6)
    p.wait_summary("u", 1, timeout=30)
    p.cmd("cleanup")
    p.cmd("sleep 200")
    p.cmd("grow 1")   # below the old mark: no new high-water mark
    p.cmd("sleep 300")
    rc = p.finish()
    check(rc == 0, "gdump: exit status 0")
    names = parse_names(d, p.pid)
    kinds = check_sequence(names, "gdump")
    check(set(kinds) == {"u"} and 2 <= len(kinds["u"]) <= 6, "gdump over 6 MiB: 2..6 kind-u dumps (%s)" % kinds)
    sizes = [go_top(n[3])[0].get("grow_site", 0) for n in names]
    check(sizes == sorted(sizes) and sizes[-1] >= 4 * 1048576,
          "each gdump holds more grow_site bytes than the one before (%s)" % sizes)


def scenario_derived():
    """age:1s alone: dumps every second while running and once at exit."""
    d = fresh_dir("derived")
    p = Prog("sample:0,age:1s,summary:true", os.path.join(d, "la"))
    p.cmd("old")
    p.wait_summary("i", 1, timeout=30)
    rc = p.finish()
    check(rc == 0, "exit status 0")
    names = parse_names(d, p.pid)
    kinds = check_sequence(names, "age:1s")
    check(len(kinds.get("i", [])) >= 2 and kinds.get("f") == [0],
          "interval dumps (every age) and a final one (%s)" % kinds)
    flat, _ = jeprof(names[-1][3])
    check_sites("jeprof final age:1s", flat, OLD_SITES, FREED_SITES)

    # No prefix: leakalloc.<pid>... in the working directory.
    d = fresh_dir("default_prefix")
    p = Prog("sample:0,signal:USR2,summary:true", None, cwd=d)
    p.cmd("old")
    _, m = p.signal_dump(0)
    check(m.group(1) == "leakalloc.%d.0.s0.heap" % p.pid, "default name %s" % m.group(1))
    check(os.path.exists(os.path.join(d, "leakalloc.%d.0.s0.heap" % p.pid)), "written in the cwd")
    check(p.finish() == 0, "default prefix: exit status 0")


def scenario_unwritable():
    """A dump that cannot be written says why, once per cause (issue 24: not at every
    dump), and the program goes on."""
    d = fresh_dir("unwritable")
    missing = os.path.join(d, "missing", "la")
    p = Prog("sample:0,signal:USR2,summary:true,format:heap+pb", missing)
    p.cmd("old")
    p.cmd("sig")
    i, _ = p.wait_err(r"^leakalloc: cannot write dump %s: No such file or directory$"
                      % re.escape(p.dump_name(0, "s", 0)), 30)
    p.wait_err(r"^leakalloc: dump s0: .* wrote nothing$", 30)
    p.cmd("sig")   # later dumps are still tried, and fail silently for the same cause
    p.wait_err(r"^leakalloc: dump s1: .* wrote nothing$", 30)
    os.makedirs(os.path.dirname(missing))
    p.signal_dump(2)
    check(os.path.exists(p.dump_name(2, "s", 2)), "once the directory exists the next dump is written")
    rc = p.finish()
    check(rc == 0, "exit status 0 (got %d)" % rc)
    msgs = [l for l in p.err_lines if "cannot write dump" in l]
    check(len(msgs) == 1, "one message for one cause over four failed files (%d)" % len(msgs))

    # A prefix below a regular file.
    notdir = os.path.join(d, "plainfile")
    open(notdir, "w").close()
    p = Prog("sample:0,signal:USR2,summary:true", os.path.join(notdir, "la"))
    p.cmd("sig")
    p.wait_err(r"^leakalloc: cannot write dump %s: Not a directory$" % re.escape(p.dump_name(0, "s", 0)), 30)
    check(p.finish() == 0, "ENOTDIR: exit status 0")

    # A directory without write permission (root ignores modes: checked only when not root).
    if os.geteuid() != 0:
        ro = fresh_dir("readonly")
        os.chmod(ro, 0o500)
        p = Prog("sample:0,signal:USR2,summary:true", os.path.join(ro, "la"))
        p.cmd("sig")
        p.wait_err(r"^leakalloc: cannot write dump %s: Permission denied$"
                   % re.escape(p.dump_name(0, "s", 0)), 30)
        check(p.finish() == 0, "EACCES: exit status 0")
        os.chmod(ro, 0o700)
    else:
        print("  note: running as root, the permission case is not exercised")

    # Write errors (a file-size limit stands in for a full disk): no truncated file left.
    d2 = fresh_dir("fsize")
    p = Prog("sample:0,signal:USR2,summary:true,format:heap+heap_v2+pb", os.path.join(d2, "la"))
    p.cmd("old")
    p.cmd("rlimit 1500")
    p.cmd("sig")
    p.wait_err(r"^leakalloc: cannot write dump %s: File too large$"
               % re.escape(p.dump_name(0, "s", 0, ".heap")), 30)
    p.wait_err(r"^leakalloc: dump s0: ", 30)
    for suffix in (".heap", ".heap_v2"):
        check(not os.path.exists(p.dump_name(0, "s", 0, suffix)), "failed %s removed" % suffix)
    p.cmd("rlimit -1")
    p.signal_dump(1)
    check_sites("go pprof after a failed dump", go_top(p.dump_name(1, "s", 1))[0], OLD_SITES, FREED_SITES)
    check(p.finish() == 0, "EFBIG: exit status 0")


def scenario_storm():
    """A signal storm, then fork() in a loop, both with 50 ms interval dumps while four
    threads allocate heavily: the program lives, every dump is complete and readable."""
    d = fresh_dir("storm")
    # keep:0: on a loaded machine the storm outlasts 64 intervals, and retention would
    # then delete the middle of the sequence this test checks.
    p = Prog("sample:10,signal:USR2,interval:50ms,keep:0,summary:true,format:heap+heap_v2+pb",
             os.path.join(d, "la"))
    p.cmd("old")
    p.cmd("storm 3000", timeout=150)
    p.cmd("forkstorm 40", timeout=150)
    p.cmd("sleep 100")
    rc = p.finish()
    check(rc == 0, "exit status 0 after the storm (got %d)" % rc)
    names = parse_names(d, p.pid)
    kinds = check_sequence(names, "storm")
    check(len(kinds.get("s", [])) >= 1 and len(kinds.get("i", [])) >= 2,
          "signal and interval dumps during the storm (%s)" % {k: len(v) for k, v in kinds.items()})
    for n in names:
        check_heap_file(n[3], exact=False)
        check(os.path.exists(n[3][:-5] + ".heap_v2") and os.path.exists(n[3][:-5] + ".pb.gz"),
              "%s: all three formats" % os.path.basename(n[3]))
    # Every file of the last signal dump is readable; sampled, so the values are estimates.
    last_s = [n for n in names if n[1] == "s"][-1][3]
    flat, total = go_top(last_s)
    check(total is not None and total > 0, "go pprof reads a dump made during the storm")
    flat, total = jeprof(last_s[:-5] + ".heap_v2")
    check(total is not None and total > 0, "jeprof reads a heap_v2 dump made during the storm")
    flat, total = go_top(last_s[:-5] + ".pb.gz")
    check(total is not None and total > 0, "go pprof reads a pb dump made during the storm")
    errors = [l for l in p.err_lines if "cannot" in l]
    check(not errors, "no dump failed (%s)" % errors[:3])


def scenario_fork():
    """fork after a dump: the child dumps (its own dump thread, pid, numbering) and the
    parent goes on. The child starts that thread at its first allocation, not in fork():
    until then it has one thread, so unshare(CLONE_NEWUSER) works in it."""
    d = fresh_dir("fork")
    p = Prog("sample:0,signal:USR2,final:true,summary:true", os.path.join(d, "la"))
    p.cmd("old")
    p.signal_dump(0)
    lines = p.cmd("forkthreads")
    m = re.match(r"^threads (-?\d+) unshare (-?\d+) then (-?\d+)$", lines[0]) if lines else None
    check(m is not None, "forkthreads answered: %s" % lines)
    if m:
        before, err, after = int(m.group(1)), int(m.group(2)), int(m.group(3))
        check(before == 1, "a fork child has one thread until it allocates (it had %d)" % before)
        check(err != errno.EINVAL, "unshare(CLONE_NEWUSER) in a fork child (errno %d; EINVAL: more than one thread)" % err)
        if err != 0:
            print("note: unshare(CLONE_NEWUSER) is not permitted here (errno %d); the thread count still counts" % err)
        check(after == 2, "the child's dump thread starts at its first allocation (threads: %d)" % after)
    flag = os.path.join(d, "child-wait")
    open(flag, "w").close()
    lines = p.cmd("fork " + flag)
    m = re.match(r"^child (\d+)$", lines[0]) if lines else None
    if not m:
        fatal("no child pid: %s" % lines)
    child = int(m.group(1))
    _, sm = p.wait_summary("s", 0, pid=child, timeout=30)
    cs0 = p.dump_name(0, "s", 0, pid=child)
    check(sm.group(1) == cs0, "the child's dump is %s" % cs0)
    check_sites("go pprof child", go_top(cs0)[0], dict(OLD_SITES, child_site=3333), FREED_SITES)
    os.unlink(flag)
    p.cmd("wait")
    check(os.path.exists(p.dump_name(1, "f", 0, pid=child)), "the child's final dump")
    p.cmd("growth")
    _, sm = p.signal_dump(1)
    check_sites("jeprof parent after fork", jeprof(p.dump_name(1, "s", 1))[0],
                dict(OLD_SITES, growth_site=30000), ["child_site"])
    rc = p.finish()
    check(rc == 0, "parent exit status 0 (got %d)" % rc)
    names = parse_names(d, p.pid)
    check_sequence(names, "parent")
    check([n[1] for n in names] == ["s", "s", "f"], "parent: s0 s1 f0 (%s)" % names)


def scenario_leak_error():
    """leak_error:true exits 1 only when blocks older than age remain."""
    d = fresh_dir("leak_error")
    p = Prog("sample:0,leak_error:true,age:1s,final:false,interval:0", os.path.join(d, "la"))
    p.cmd("old")
    p.cmd("sleep 1300")
    rc = p.finish()
    check(rc == 1, "leaks older than 1s: exit status 1 (got %d)" % rc)
    m = [l for l in p.err_lines if l.startswith("leakalloc: leak_error: ")]
    check(len(m) == 1, "one leak_error line (%s)" % p.err_lines)
    if m:
        nb = re.search(r"leak_error: (\d+) blocks \((\d+) bytes\)", m[0])
        check(nb is not None and int(nb.group(2)) >= sum(OLD_SITES.values()),
              "the line counts the leaked bytes (%s)" % m[0])
    # The same leaks, but younger than age: status unchanged.
    p = Prog("sample:0,leak_error:true,age:60s,final:false,interval:0", os.path.join(d, "lb"))
    p.cmd("old")
    rc = p.finish(7)
    check(rc == 7, "no block older than 60s: the program's own status 7 (got %d)" % rc)
    check(not any("leak_error" in l for l in p.err_lines), "no leak_error line")


def scenario_sampled():
    """sample:10 (1 KiB period): the files carry raw samples and the period, and every
    reader unsamples. 64 KiB blocks are sampled with probability 1 - e^-64, so their
    estimate is exact and can be asserted."""
    d = fresh_dir("sampled")
    p = Prog("sample:10,signal:USR2,summary:true,format:heap+heap_v2+pb", os.path.join(d, "la"))
    p.cmd("old")
    p.cmd("grow 2")
    p.signal_dump(0)
    s0 = p.dump_name(0, "s", 0)
    text = check_heap_file(s0, exact=False)
    check(text.startswith("heap profile: ") and " @ heap_v2/1024\n" in text.split("\n", 1)[0] + "\n",
          "legacy header records the 1024-byte period")
    with open(p.dump_name(0, "s", 0, ".heap_v2")) as f:
        check(f.readline() == "heap_v2/1024\n", "heap_v2 header records the 1024-byte period")
    want = {"grow_site": 2 * 1048576}
    check_sites("jeprof sampled heap", jeprof(s0)[0], want)
    check_sites("google-pprof sampled heap", google_pprof(s0)[0], want)
    check_sites("go pprof sampled heap", go_top(s0)[0], want)
    check_sites("jeprof sampled heap_v2", jeprof(p.dump_name(0, "s", 0, ".heap_v2"))[0], want)
    check_sites("go pprof sampled pb", go_top(p.dump_name(0, "s", 0, ".pb.gz"))[0], want)
    check(p.finish() == 0, "exit status 0")


def scenario_exec():
    """A new program image in the same process (a wrapper script's `exec`, a pyenv shim)
    starts its dump numbering again, under the same pid: its dumps must not fail on the
    names the first image used, and must not touch those files."""
    d = fresh_dir("exec")
    p = Prog("sample:0,interval:0,final:false,format:heap+pb", os.path.join(d, "la"))
    p.cmd("old")
    p.cmd("mdump -")
    p.cmd("mdump -")
    first = [p.dump_name(0, "m", 0), p.dump_name(1, "m", 1)]
    for f in first:
        check(os.path.exists(f), "first image wrote %s" % os.path.basename(f))
    before = {f: open(f, "rb").read() for f in first}
    p.cmd("exec")
    p.cmd("young")
    p.cmd("mdump -")
    p.cmd("mdump -")
    time.sleep(0.2)
    err = p.stderr_text()
    check("cannot write dump" not in err, "no dump failed after exec (stderr: %s)" % err)
    second = [p.dump_name(2, "m", 0), p.dump_name(3, "m", 1)]
    for f in second:
        check(os.path.exists(f), "second image wrote %s" % os.path.basename(f))
        check(os.path.exists(f[:-len(".heap")] + ".pb.gz"), "and its .pb.gz")
    for f in first:
        check(open(f, "rb").read() == before[f], "%s untouched" % os.path.basename(f))
    check_sites("jeprof heap, first image", jeprof(first[0])[0], OLD_SITES, ["young_site"])
    if os.path.exists(second[0]):
        check_heap_file(second[0])
        check_sites("jeprof heap, second image", jeprof(second[0])[0], {"young_site": 54000},
                    list(OLD_SITES))
        check_sites("go pprof pb, second image", go_top(second[0][:-len(".heap")] + ".pb.gz")[0],
                    {"young_site": 54000}, list(OLD_SITES))
    want = sorted(os.path.basename(f)[:-len(".heap")] + sfx for f in first + second
                  for sfx in (".heap", ".pb.gz"))
    check(sorted(os.listdir(d)) == want, "the directory holds the 8 files of 4 dumps (%s)" % sorted(os.listdir(d)))
    p.cmd("cleanup")
    check(p.finish() == 0, "exit status 0")


def scenario_threads():
    """70000 short-lived threads, more than the thread registry's 65535 entries: the
    entries of ended threads are reused, so a thread made after them is named in the
    dumps and has a thread cache; an ended thread whose blocks are still live keeps its
    entry and its name."""
    d = fresh_dir("threads")
    p = Prog("sample:0,interval:0,final:false,format:heap+heap_v2+pb", os.path.join(d, "la"))
    start = time.monotonic()
    p.cmd("threads 70000", timeout=240)
    print("  (70000 threads in %.1f s)" % (time.monotonic() - start))
    path = os.path.join(d, "threads.heap")
    p.cmd("mdump " + path)
    v2 = path + ".heap_v2"
    text = check_heap_file(v2)
    names = dict((m.group(2), int(m.group(1)))
                 for m in re.finditer(r"^# thread t(\d+): tid \d+ name (\S.*)$", text, re.M))
    check("la-keeper" in names, "heap_v2 names the ended thread whose blocks are live (%s)" % sorted(names))
    check("la-late" in names, "heap_v2 names the thread made after 70000 others (%s)" % sorted(names))
    check("(other threads)" not in names, "no thread fell into the registry's shared entry")
    want = {"keeper_site": 5 * 3333, "late_site": 7 * 4444}
    for name, site in (("la-keeper", "keeper_site"), ("la-late", "late_site")):
        if name not in names:
            continue
        check(names[name] < 65535, "%s has an entry of its own (t%d)" % (name, names[name]))
        flat, total = jeprof(v2, "--thread=%d" % names[name])
        check_sites("jeprof heap_v2 --thread=%d (%s)" % (names[name], name), flat, {site: want[site]},
                    [s for s in want if s != site])
        check(total == want[site], "jeprof --thread total is %s's %d bytes (got %s)" % (name, want[site], total))
    pb = path + ".pb.gz"
    for name, site in (("la-keeper", "keeper_site"), ("la-late", "late_site")):
        flat, total = go_top(pb, extra=["-tagfocus=thread=" + name])
        check_sites("go pprof pb -tagfocus=thread=%s" % name, flat, {site: want[site]},
                    [s for s in want if s != site])
    p.cmd("cleanup")
    check(p.finish() == 0, "exit status 0")


def dumps_written(p, kind):
    """kseq of every kind-`kind` dump the summary lines say were written."""
    p._drain_err()
    rx = re.compile(r"^leakalloc: dump %s(\d+): .* wrote \S" % kind)
    return [int(m.group(1)) for m in (rx.search(l) for l in p.err_lines) if m]


def scenario_keep():
    """keep:N: of the interval and gdump dumps, the first and the N latest stay (every
    format of each), the others are deleted as new ones come; signal and final dumps are
    never deleted; keep:0 keeps all, and the default is 64."""
    d = fresh_dir("keep")
    p = Prog("sample:0,interval:100ms,keep:3,signal:USR2,final:true,summary:true,format:heap+pb",
             os.path.join(d, "la"))
    p.cmd("old")
    p.signal_dump(0)
    p.wait_summary("i", 9, timeout=60)
    p.signal_dump(1)
    rc = p.finish()
    check(rc == 0, "keep:3: exit status 0 (got %d)" % rc)
    written = dumps_written(p, "i")
    check(written == list(range(len(written))) and len(written) >= 10, "interval dumps i0..i%d written" % len(written))
    names = parse_names(d, p.pid)
    kinds = {}
    for seq, kind, kseq, _ in names:
        kinds.setdefault(kind, []).append(kseq)
    last = written[-1] if written else -1
    check(kinds.get("i") == [0, last - 2, last - 1, last],
          "keep:3 keeps i0 and the 3 latest (i%d..i%d): %s" % (last - 2, last, kinds.get("i")))
    check(kinds.get("s") == [0, 1] and kinds.get("f") == [0], "signal and final dumps all kept: %s" % kinds)
    heaps = sorted(f[:-len(".heap")] for f in os.listdir(d) if f.endswith(".heap"))
    pbs = sorted(f[:-len(".pb.gz")] for f in os.listdir(d) if f.endswith(".pb.gz"))
    check(heaps == pbs and len(heaps) == len(names), "every kept dump has both formats, no orphan: %s / %s" % (heaps, pbs))
    latest_i = [n[3] for n in names if n[1] == "i"][-1]
    flat, _ = jeprof(latest_i)
    check_sites("jeprof latest kept interval dump", flat, OLD_SITES, FREED_SITES)
    flat, _ = go_top(latest_i[:-len(".heap")] + ".pb.gz")
    check_sites("go pprof latest kept interval dump (pb)", flat, OLD_SITES, FREED_SITES)

    # reach:true: each dump's .lost files go with it (they were left behind, one set per
    # interval, for ever).
    d = fresh_dir("keep_reach")
    p = Prog("sample:0,interval:100ms,keep:2,reach:true,summary:true,format:heap+pb", os.path.join(d, "la"))
    p.cmd("old")
    p.wait_summary("i", 6, timeout=60)
    check(p.finish() == 0, "keep:2 reach:true: exit status 0")
    written = dumps_written(p, "i")
    last = written[-1] if written else -1
    kept = [n[2] for n in parse_names(d, p.pid) if n[1] == "i"]
    check(kept == [0, last - 1, last], "keep:2 reach:true keeps i0, i%d, i%d: %s" % (last - 1, last, kept))
    files = os.listdir(d)
    for ext in (".heap", ".pb.gz"):
        plain = sorted(f[:-len(ext)] for f in files if f.endswith(ext) and not f.endswith(".lost" + ext))
        lost = sorted(f[:-len(".lost" + ext)] for f in files if f.endswith(".lost" + ext))
        check(plain == lost, "keep:2 reach:true: each kept dump has its .lost%s and no other stays: %s / %s"
              % (ext, plain, lost))

    # gdump with keep:1: the first and the latest high-water mark.
    d = fresh_dir("keep_gdump")
    p = Prog("sample:0,gdump:true,keep:1,summary:true", os.path.join(d, "la"))
    grow_in_steps(p, 6)
    p.wait_summary("u", 2, timeout=30)
    check(p.finish() == 0, "keep:1 gdump: exit status 0")
    written = dumps_written(p, "u")
    names = parse_names(d, p.pid)
    check([n[2] for n in names] == [0, written[-1]] and all(n[1] == "u" for n in names),
          "keep:1 keeps u0 and u%d: %s" % (written[-1], [(n[1], n[2]) for n in names]))

    # keep:0 keeps everything; the default keeps 64 after the first.
    for conf, want in (("keep:0", None), ("", 64)):
        d = fresh_dir("keep_all" if want is None else "keep_default")
        p = Prog("sample:0,interval:10ms,summary:true" + ("," + conf if conf else ""), os.path.join(d, "la"))
        p.wait_summary("i", 80, timeout=60)
        check(p.finish() == 0, "%s: exit status 0" % (conf or "default keep"))
        written = dumps_written(p, "i")
        kept = [n[2] for n in parse_names(d, p.pid)]
        expect = written if want is None else [0] + written[-want:]
        check(kept == expect, "%s: kept i%s, wanted i%s" % (conf or "default keep", kept, expect))


SCENARIOS = {
    "keep": scenario_keep,
    "exec": scenario_exec,
    "threads": scenario_threads,
    "sampled": scenario_sampled,
    "exact": scenario_exact,
    "age": scenario_age,
    "triggers": scenario_triggers,
    "derived": scenario_derived,
    "unwritable": scenario_unwritable,
    "storm": scenario_storm,
    "fork": scenario_fork,
    "leak_error": scenario_leak_error,
}


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=sorted(SCENARIOS))
    ap.add_argument("--prog", required=True)
    ap.add_argument("--lib", default="")
    ap.add_argument("--workdir", required=True)
    ARGS = ap.parse_args()
    ARGS.prog = os.path.realpath(ARGS.prog)
    os.makedirs(ARGS.workdir, exist_ok=True)
    SCENARIOS[ARGS.scenario]()
    if FAILURES:
        print("%d check(s) failed" % len(FAILURES))
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
