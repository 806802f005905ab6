#!/usr/bin/env python3
"""End-to-end tests of the `leakalloc` command (tools/).

Usage: tools_test.py CASE --tool T --asan-tool T --lib L --fixture F --static-fixture S
                      --source SRC --work DIR

Every case runs the real programs and checks their output, never just an exit status:
the report's numbers are compared with `go tool pprof -top` on the same dump.
"""
import argparse
import gzip
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import time

ARGS = None
FAILURES = []


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print("FAIL: " + what, flush=True)
    return cond


def run(cmd, env=None, timeout=60, check_rc=None, cwd=None):
    e = dict(os.environ)
    e.setdefault("HOME", ARGS.work)
    # No debuginfod server unless a case starts one: reports must not wait on the network.
    e.pop("DEBUGINFOD_URLS", None)
    if env:
        e.update(env)
    p = subprocess.run(cmd, env=e, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, text=True, errors="replace")
    if check_rc is not None and p.returncode != check_rc:
        raise SystemExit("command %s exited %d (wanted %d)\nstdout:\n%s\nstderr:\n%s" %
                         (cmd, p.returncode, check_rc, p.stdout, p.stderr))
    return p


def fresh_dir(name):
    d = os.path.join(ARGS.work, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def source_line(needle):
    """Line number in leak_fixture.c of the one line containing `needle`."""
    with open(os.path.join(ARGS.source, "leak_fixture.c")) as f:
        hits = [i + 1 for i, l in enumerate(f) if needle in l]
    assert len(hits) == 1, (needle, hits)
    return hits[0]


# The fixture's leaks at sample:0: function -> (blocks, bytes, source line of the malloc).
def expected_sites():
    return {
        "leak_large_buffers": (10, 40000, source_line("ALLOC(4000)")),
        "leak_medium_records": (20, 20000, source_line("ALLOC(1000)")),
        "leak_small_strings": (30, 3000, source_line("ALLOC(100)")),
        "leak_growing_cache": (8, 512, source_line("ALLOC(64)")),
    }


REPORT_HEAD = re.compile(r"^#(\d+): (\d+) bytes \([^)]*\) in (\d+) blocks?")
FRAME = re.compile(r"^\s+(at|by) 0x[0-9a-f]+: (.*?)(?: \((.*)\))?(?: \[inlined\])?$")


def parse_report(text):
    """[(rank, bytes, blocks, leaf function, leaf file:line, [all frame texts])]"""
    out = []
    cur = None
    for line in text.splitlines():
        m = REPORT_HEAD.match(line)
        if m:
            cur = [int(m.group(1)), int(m.group(2)), int(m.group(3)), None, None, []]
            out.append(cur)
            continue
        m = FRAME.match(line)
        if m and cur is not None:
            cur[5].append(m.group(2))
            if cur[3] is None:
                cur[3] = m.group(2)
                cur[4] = m.group(3)
    return out


def pprof_top(dump, binary=None, extra=()):
    """function -> flat value from `go tool pprof -top`."""
    cmd = ["go", "tool", "pprof", "-top", "-nodecount=1000", "-nodefraction=0", "-edgefraction=0"]
    cmd += list(extra)
    if binary:
        cmd.append(binary)
    cmd.append(dump)
    p = run(cmd, timeout=120)
    check(p.returncode == 0, "pprof failed on %s: %s" % (dump, p.stderr))
    rows = {}
    started = False
    for line in p.stdout.splitlines():
        if line.strip().startswith("flat"):
            started = True
            continue
        if not started or not line.strip():
            continue
        parts = line.split(None, 5)
        if len(parts) < 6:
            continue
        flat = parts[0]
        flat = flat[:-1] if flat.endswith("B") else flat
        try:
            rows[parts[5].strip()] = float(flat)
        except ValueError:
            pass
    return rows


def pprof_values(dump, binary, kind, extra=()):
    """In-use `kind` ("space" or "objects") per function. A legacy file whose alloc and
    in-use columns agree has only "objects" and "space" in Go's reading."""
    unit = ("-unit=B",) if kind == "space" else ()
    for index in ("inuse_" + kind, kind):
        cmd = ["go", "tool", "pprof", "-raw", "-sample_index=" + index]
        p = run(cmd + ([binary] if binary else []) + [dump], timeout=120)
        if p.returncode == 0:
            return pprof_top(dump, binary, unit + ("-sample_index=" + index,) + tuple(extra))
    check(False, "pprof has neither inuse_%s nor %s for %s" % (kind, kind, dump))
    return {}


def check_report_against_pprof(report_text, dump, label, binary=None, pprof_extra=(),
                               sites=None, exact=True):
    sites = sites if sites is not None else expected_sites()
    rep = parse_report(report_text)
    by_func = {r[3]: r for r in rep}
    order = sorted(sites, key=lambda f: -sites[f][1])
    ranked = [r[3] for r in rep if r[3] in sites]
    check(ranked == order, "%s: ranking %s, wanted %s" % (label, ranked, order))
    for r in rep:
        check(r[0] == rep.index(r) + 1, "%s: rank numbers out of order" % label)
    space = pprof_values(dump, binary, "space", pprof_extra)
    objects = pprof_values(dump, binary, "objects", pprof_extra)
    fname = os.path.join(ARGS.source, "leak_fixture.c")
    for func, (blocks, nbytes, line) in sites.items():
        r = by_func.get(func)
        if not check(r is not None, "%s: %s missing from the report:\n%s" % (label, func, report_text)):
            continue
        if exact:
            check(r[1] == nbytes and r[2] == blocks,
                  "%s: %s has %d bytes in %d blocks, wanted %d in %d" % (label, func, r[1], r[2], nbytes, blocks))
        where = r[4] or ""
        if where and not where.startswith("/"):
            # A name relative to the compilation directory (ccache's base_dir makes them),
            # as a reader that has no DW_AT_comp_dir to join it to gives it (go tool pprof
            # -proto's names): the fixture was compiled in its build directory.
            f, _, n = where.rpartition(":")
            where = os.path.normpath(os.path.join(os.path.dirname(ARGS.fixture), f)) + ":" + n
        check(where == "%s:%d" % (fname, line),
              "%s: %s is at %s, wanted %s:%d" % (label, func, r[4], fname, line))
        # The numbers must agree with pprof's on the very same file.
        pb = space.get(func)
        po = objects.get(func)
        if exact:
            check(pb == r[1], "%s: %s: report says %d bytes, pprof -top %s" % (label, func, r[1], pb))
            check(po == r[2], "%s: %s: report says %d blocks, pprof -top %s" % (label, func, r[2], po))
        else:
            check(pb is not None and abs(pb - r[1]) <= 2,
                  "%s: %s: report says %d bytes, pprof -top %s" % (label, func, r[1], pb))
            check(po is not None and abs(po - r[2]) <= 2,
                  "%s: %s: report says %d blocks, pprof -top %s" % (label, func, r[2], po))
    return rep


def report(*args, tool=None):
    p = run([tool or ARGS.tool, "report"] + list(args))
    check(p.returncode == 0, "report %s exited %d: %s" % (args, p.returncode, p.stderr))
    return p.stdout


def self_dumps(d, *extra):
    run([ARGS.fixture, "--self-dump", os.path.join(d, "self")] + list(extra), check_rc=0)


def preload_env(conf):
    return {"LD_PRELOAD": ARGS.lib, "LEAKALLOC_CONF": conf}


def find(d, suffix):
    got = sorted(f for f in os.listdir(d) if f.endswith(suffix))
    check(len(got) >= 1, "no *%s in %s: %s" % (suffix, d, os.listdir(d)))
    return os.path.join(d, got[-1]) if got else None


# ---------------------------------------------------------------------------- cases

def header_version():
    with open(os.path.join(ARGS.source, "..", "..", "include", "leakalloc", "leakalloc.h")) as f:
        m = re.search(r'^#define LEAKALLOC_VERSION "([0-9.]+)"', f.read(), re.M)
    return m.group(1)


# Every option of every subcommand, as --help must list it.
SUBCOMMAND_OPTIONS = {
    "run": ["--follow", "--reach", "--age", "--sample", "--interval", "--out", "--format", "--top", "--quiet", "--no-symbolize"],
    "report": ["--age", "--top", "--depth", "--binary", "--root", "--no-histogram", "--format"],
    "diff": ["--top", "--depth", "--binary", "--root", "--format"],
    "dump": ["--lost", "--age", "--format", "--timeout", "--top", "--no-symbolize"],
    "symbolize": ["--binary", "--root", "-o"],
    "serve": ["--listen", "--timeout", "--threads", "--keep"],
}


def case_cli():
    """The command line (CLI11): --help everywhere, --version, the exit statuses of usage
    errors, options in both spellings, and PROG's own options left to PROG."""
    p = run([ARGS.tool, "--version"])
    check(p.returncode == 0 and p.stdout.strip() == "leakalloc " + header_version(),
          "--version: rc %d %r, wanted leakalloc %s" % (p.returncode, p.stdout, header_version()))
    p = run([ARGS.tool, "--help"])
    check(p.returncode == 0, "--help: rc %d" % p.returncode)
    for sub in SUBCOMMAND_OPTIONS:
        check(re.search(r"^\s+%s\s" % sub, p.stdout, re.M) is not None, "--help must list %s:\n%s" % (sub, p.stdout))
    for sub, opts in SUBCOMMAND_OPTIONS.items():
        for flag in ("--help", "-h"):
            h = run([ARGS.tool, sub, flag])
            check(h.returncode == 0 and h.stderr == "" and ("Usage: leakalloc " + sub) in h.stdout,
                  "%s %s: rc %d %r %r" % (sub, flag, h.returncode, h.stdout, h.stderr))
            for o in opts:
                check(re.search(r"^\s+%s[ ,]" % re.escape(o), h.stdout, re.M) is not None,
                      "%s --help must list %s:\n%s" % (sub, o, h.stdout))
    # Usage errors: 2 without a known command, 1 for a subcommand's bad option.
    p = run([ARGS.tool])
    check(p.returncode == 2 and "Usage: leakalloc" in p.stderr, "no command: rc %d %r" % (p.returncode, p.stderr))
    p = run([ARGS.tool, "frobnicate"])
    check(p.returncode == 2 and 'unknown command "frobnicate"' in p.stderr, "unknown command: rc %d %r" % (p.returncode, p.stderr))
    for args, msg in ((["report", "--frob", "x.heap"], "--frob"),
                      (["report", "--top", "0", "x.heap"], '--top: expected a positive number, got "0"'),
                      (["report", "--depth"], "--depth needs a value"),
                      (["report"], "DUMP is required"),
                      (["diff", "a.heap"], "OLD_NEW"),
                      (["diff", "--age=1s", "a.heap", "b.heap"], "--age=1s"),
                      (["run", "--sample", "63", "--", "true"], "--sample: expected 0..62"),
                      (["run", "--interval=soon", "true"], '--interval: bad duration "soon"'),
                      (["run", "--out", "", "true"], "--out: empty directory"),
                      (["run"], "PROG is required"),
                      (["dump", "--timeout", "x", "1"], "--timeout: bad duration"),
                      (["dump", "1", "2"], "not expected: 2"),
                      (["dump", "abc"], 'bad PID "abc"'),
                      (["symbolize"], "DUMP is required"),
                      (["symbolize", "-o", "", "a.heap"], "-o: empty file name"),
                      (["symbolize", "-o", "x.pb.gz", "a.heap", "b.heap"], "-o names one file")):
        p = run([ARGS.tool] + args)
        check(p.returncode == 1 and p.stderr.startswith("leakalloc: ") and msg in p.stderr,
              "%s: rc %d, wanted 1 and %r in %r" % (args, p.returncode, msg, p.stderr))
    # Both spellings of an option; PROG's options stay PROG's, with or without --.
    d = fresh_dir("cli")
    env = {"LEAKALLOC_LIB": ARGS.lib}
    for args in (["--quiet", "--out=" + d, ARGS.fixture, "--exit", "5"],
                 ["--quiet", "--out", d, "--", ARGS.fixture, "--exit", "5"]):
        p = run([ARGS.tool, "run"] + args, env=env)
        check(p.returncode == 5 and p.stderr == "", "run %s: rc %d %r" % (args, p.returncode, p.stderr))
    p = run([ARGS.tool, "run", "--age=1s", "--top=0", "--out", d, ARGS.fixture, "--help"], env=env)
    check("age:1000ms" in p.stderr and "Usage: leakalloc" not in p.stdout + p.stderr,
          "run PROG --help must reach PROG: rc %d %r" % (p.returncode, p.stderr))


def case_man():
    """The man page, generated from --help-all at build time, renders and documents every
    command and option."""
    check(os.path.exists(ARGS.man), "no man page at %s" % ARGS.man)
    p = run(["man", "-l", ARGS.man], env={"MANWIDTH": "100", "MANPAGER": "cat", "PAGER": "cat"})
    text = re.sub(r".\x08", "", p.stdout)
    check(p.returncode == 0 and "LEAKALLOC(1)" in text and "SYNOPSIS" in text,
          "man -l %s: rc %d %r" % (ARGS.man, p.returncode, p.stderr))
    check("leakalloc " + header_version() in text, "the man page must carry the version %s" % header_version())
    for sub, opts in SUBCOMMAND_OPTIONS.items():
        at = text.find("COMMAND " + sub.upper())
        if not check(at >= 0, "man page has no section for %s:\n%s" % (sub, text)):
            continue
        end = text.find("\nCOMMAND ", at + 1)
        section = text[at:end if end > 0 else len(text)]
        for o in opts:
            check(re.search(r"^\s+%s\b" % re.escape(o), section, re.M) is not None,
                  "man page section %s lacks %s:\n%s" % (sub, o, section))
    # groff finds nothing to warn about either.
    g = run(["groff", "-man", "-Tutf8", "-ww", "-z", ARGS.man])
    check(g.returncode == 0 and g.stderr == "", "groff warnings: %r" % g.stderr)


class Serve:
    """`leakalloc serve` on a free loopback port (port 0: it prints the one it got)."""

    def __init__(self, *args, user=None, env=None):
        cmd = [ARGS.tool, "serve", "--listen", "127.0.0.1:0"] + list(args)
        if user:
            cmd = ["setpriv", "--reuid=" + user, "--regid=nogroup", "--clear-groups"] + cmd
        self.err_path = os.path.join(ARGS.work, "serve.%d.err" % len(cmd))
        self.err = open(self.err_path, "w+")
        self.p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.err, text=True,
                                  env=dict(os.environ, **(env or {})))
        self.port = None
        for _ in range(100):
            self.err.seek(0)
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)/debug/pprof/", self.err.read())
            if m:
                self.port = int(m.group(1))
                break
            if self.p.poll() is not None:
                break
            time.sleep(0.1)
        if not check(self.port is not None, "serve did not start: %s" % self.log()):
            self.stop()
            raise SystemExit(1)

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def get(self, path, out=None, headers=None):
        """(status, content type, body) through curl; the headers to the file `headers`."""
        cmd = ["curl", "-sS", "--max-time", "30", "-w", "\n%{http_code} %{content_type}", "-o", out or "-",
               self.url(path)]
        if headers:
            cmd[1:1] = ["-D", headers]
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        text = p.stdout.decode("utf-8", "replace")
        body, _, tail = text.rpartition("\n")
        code, _, ctype = tail.partition(" ")
        return int(code or 0), ctype, body

    def log(self):
        self.err.seek(0)
        return self.err.read()

    def stop(self):
        self.p.terminate()
        try:
            rc = self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = self.p.wait()
        return rc


def case_serve():
    """`leakalloc serve`: a live process's heap fetched by curl and by go tool pprof from
    the URL, the index page, and each error status."""
    d = os.path.realpath(fresh_dir("serve"))
    fx = start_fixture(d, preload_env("sample:0"), "--busy-ms", "60000")
    plain = start_fixture(os.path.realpath(fresh_dir("serve_plain")), {}, "--idle-ms", "60000")
    srv = Serve("--timeout", "2s")
    try:
        # curl: a gzipped profile, the fixture's exact leaks, and no file left behind.
        out = os.path.join(ARGS.work, "serve_heap.pb.gz")
        code, ctype, _ = srv.get("/debug/pprof/heap?pid=%d&age=0" % fx.pid, out=out)
        check(code == 200 and ctype == "application/octet-stream", "heap: %d %s\n%s" % (code, ctype, srv.log()))
        if code == 200:
            check(open(out, "rb").read(2) == b"\x1f\x8b", "heap: the body must be gzip")
            check_report_against_pprof(report("--top", "20", out), out, "serve curl")
            # Symbolized: go tool pprof names every frame without the program's files.
            rows = pprof_top(out, extra=("-symbolize=none", "-unit=B", "-sample_index=inuse_space"))
            for func, (blocks, nbytes, line) in expected_sites().items():
                check(rows.get(func) == nbytes, "symbolized body, -symbolize=none: %s has %s bytes, wanted %d: %s" %
                      (func, rows.get(func), nbytes, rows))
        check(os.listdir(d) == ["fixture.ready"], "serve must remove the dump it sent: %s" % os.listdir(d))
        # go tool pprof fetches the URL itself.
        rows = pprof_top(srv.url("/debug/pprof/heap?pid=%d&age=0" % fx.pid), extra=("-unit=B", "-sample_index=inuse_space"))
        for func, (blocks, nbytes, line) in expected_sites().items():
            check(rows.get(func) == nbytes, "go tool pprof URL: %s has %s bytes, wanted %d: %s" % (func, rows.get(func), nbytes, rows))
        # lost=1: the reachability check's dump. The fixture keeps every leak in a global
        # array, so none of its leak sites is lost.
        lost = os.path.join(ARGS.work, "serve_lost.pb.gz")
        code, _, _ = srv.get("/debug/pprof/heap?pid=%d&age=0&lost=1" % fx.pid, out=lost)
        check(code == 200, "heap lost=1: %d\n%s" % (code, srv.log()))
        if code == 200:
            p = run(["go", "tool", "pprof", "-top", "-symbolize=none", lost], timeout=120)
            check(p.returncode == 0 and "lost blocks only (reachability check)" in p.stdout,
                  "lost=1 must answer with the lost dump: %s %s" % (p.stdout, p.stderr))
            for func in expected_sites():
                check(func not in p.stdout, "lost=1: %s is reachable, not lost:\n%s" % (func, p.stdout))
        check(os.listdir(d) == ["fixture.ready"], "serve must remove the lost dump it sent: %s" % os.listdir(d))
        # Two at once for one process: one dump at a time, both answered, nothing left.
        outs = [os.path.join(ARGS.work, "serve_par%d.pb.gz" % i) for i in range(2)]
        curls = [subprocess.Popen(["curl", "-sS", "--max-time", "30", "-o", o, "-w", "%{http_code}",
                                   srv.url("/debug/pprof/heap?pid=%d" % fx.pid)], stdout=subprocess.PIPE)
                 for o in outs]
        codes = [c.communicate(timeout=60)[0].decode() for c in curls]
        check(codes == ["200", "200"], "two requests at once: %s\n%s" % (codes, srv.log()))
        check(os.listdir(d) == ["fixture.ready"], "both dumps removed: %s" % os.listdir(d))
        # The index lists the fixture (command, uptime, live bytes of the last dump) and
        # not the process without leakalloc.
        code, ctype, page = srv.get("/debug/pprof/")
        row = re.search(r"<tr><td class=pid>%d</td><td class=cmd>([^<]*)</td><td class=uptime>([^<]*)</td>"
                        r"<td class=live>([^<]*)</td>" % fx.pid, page)
        check(code == 200 and ctype.startswith("text/html") and row is not None,
              "index must list pid %d: %d %s\n%s" % (fx.pid, code, ctype, page))
        if row:
            check(ARGS.fixture in row.group(1) and "--busy-ms 60000" in row.group(1), "index command: %s" % row.group(1))
            check(re.match(r"^\d+(ms|s)$", row.group(2)) is not None, "index uptime: %s" % row.group(2))
            check(row.group(3).startswith("62.0 KiB at "), "index live bytes: %s" % row.group(3))
        check("class=pid>%d<" % plain.pid not in page, "index must leave out pid %d (no leakalloc)" % plain.pid)
        # Errors: a status and one line of reason each.
        for query, want, why in (("pid=%d" % plain.pid, 404, "does not run leakalloc"),
                                 ("pid=1073741808", 404, "no process 1073741808"),
                                 ("pid=abc", 400, 'bad pid "abc"'),
                                 ("pid=0", 400, 'bad pid "0"'),
                                 ("", 400, "pid= is required"),
                                 ("pid=%d&age=soon" % fx.pid, 400, 'age: bad duration "soon"'),
                                 ("pid=%d&lost=maybe" % fx.pid, 400, 'lost: expected 1 or 0, got "maybe"')):
            code, ctype, body = srv.get("/debug/pprof/heap?" + query)
            check(code == want and why in body and body.count("\n") == 1 and ctype.startswith("text/plain"),
                  "heap?%s: %d %s %r, wanted %d with %r" % (query, code, ctype, body, want, why))
        # A stopped process cannot answer: 504 after --timeout, and the server goes on.
        os.kill(fx.pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            code, _, body = srv.get("/debug/pprof/heap?pid=%d" % fx.pid)
            took = time.monotonic() - t0
            check(code == 504 and "has not answered within 2000 ms" in body and 1.5 < took < 10,
                  "stopped process: %d %r after %.1f s" % (code, body, took))
        finally:
            os.kill(fx.pid, signal.SIGCONT)
        code, _, _ = srv.get("/debug/pprof/heap?pid=%d&age=0" % fx.pid, out=out)
        check(code == 200, "after the 504 the process answers again: %d" % code)
    finally:
        rc = srv.stop()
    check(rc == 0, "serve must exit 0 on SIGTERM, got %d: %s" % (rc, srv.log()))
    check("-> 200" in srv.log() and "-> 504" in srv.log(), "serve logs each request:\n" + srv.log())
    # When symbolizing fails (here: no temporary directory), the raw dump, with a note.
    srv = Serve("--threads", "2", env={"TMPDIR": "/nonexistent/leakalloc"})
    try:
        raw = os.path.join(ARGS.work, "serve_raw.pb.gz")
        hdr = os.path.join(ARGS.work, "serve_raw.headers")
        # (A dump asked for by the 504 request above is written when the process resumes,
        # and nobody sends or removes it.)
        before = sorted(os.listdir(d))
        code, _, _ = srv.get("/debug/pprof/heap?pid=%d&age=0" % fx.pid, out=raw, headers=hdr)
        heads = open(hdr).read().lower() if os.path.exists(hdr) else ""
        check(code == 200 and "x-leakalloc-note: not symbolized: " in heads and "sending the raw dump" in srv.log(),
              "unsymbolized fallback: %d %r\n%s" % (code, heads, srv.log()))
        if code == 200:
            check_report_against_pprof(report("--top", "20", raw), raw, "serve raw")
            rows = pprof_top(raw, extra=("-symbolize=none",))
            check("leak_large_buffers" not in rows, "the raw dump carries no names: %s" % rows)
        check(sorted(os.listdir(d)) == before, "fallback: the dump removed: %s, before %s" % (os.listdir(d), before))
    finally:
        srv.stop()
    # Permission: nobody may not dump root's process: 403, and the index leaves it out.
    if os.geteuid() == 0 and shutil.which("setpriv"):
        srv = Serve(user="nobody")
        try:
            code, _, body = srv.get("/debug/pprof/heap?pid=%d" % fx.pid)
            check(code == 403 and "Permission denied" in body, "nobody against root's process: %d %r" % (code, body))
            code, _, page = srv.get("/debug/pprof/")
            check(code == 200 and "class=pid>%d<" % fx.pid not in page, "nobody's index must not list %d" % fx.pid)
        finally:
            srv.stop()
    else:
        print("skip: the 403 check needs root and setpriv")
    # Another address than loopback is named, and warned about.
    p = subprocess.Popen([ARGS.tool, "serve", "--listen", "0.0.0.0:0"], stderr=subprocess.PIPE, text=True)
    line = p.stderr.readline()
    p.terminate()
    p.wait(timeout=10)
    check("warning: listening on 0.0.0.0:0, not a loopback address" in line, "no warning for 0.0.0.0: %r" % line)
    r = run([ARGS.tool, "serve", "--listen", "nowhere"])
    check(r.returncode == 1 and "--listen: expected HOST:PORT" in r.stderr, "bad --listen: %d %r" % (r.returncode, r.stderr))
    stop_fixture(fx, "serve")
    stop_fixture(plain, "serve plain")


def case_report_selfdump():
    """Hand-made legacy .heap (the fixture describes itself) and pb files converted from
    it by `go tool pprof -proto`, with and without Go's symbols."""
    d = fresh_dir("selfdump")
    self_dumps(d)
    heap = os.path.join(d, "self.heap")
    out = report("--top", "20", heap)
    check("ages: not recorded in this format" in out, "a .heap report must say ages are not in it")
    check_report_against_pprof(out, heap, "selfdump heap", binary=ARGS.fixture)
    for mode in ("sym", "nosym"):
        pb = os.path.join(d, "self.%s.pb.gz" % mode)
        cmd = ["go", "tool", "pprof", "-proto"]
        if mode == "nosym":
            cmd.append("-symbolize=none")
        p = subprocess.run(cmd + [ARGS.fixture, heap], stdout=open(pb, "wb"), stderr=subprocess.PIPE,
                           env=dict(os.environ, HOME=ARGS.work), timeout=120)
        check(p.returncode == 0 and os.path.getsize(pb) > 0, "go tool pprof -proto failed")
        out = report("--top", "20", pb)
        check_report_against_pprof(out, pb, "selfdump pb " + mode, binary=ARGS.fixture)


def case_report_gperftools():
    """A foreign .heap: gperftools' own heap profiler (HEAPPROFILE under libtcmalloc),
    whose numbers are padded to a width. Exact, so equal to pprof's."""
    d = fresh_dir("gperftools")
    run([ARGS.fixture], env={"LD_PRELOAD": ARGS.tcmalloc, "HEAPPROFILE": os.path.join(d, "hp")}, check_rc=0)
    heap = find(d, ".heap")
    if not heap:
        return
    with open(heap) as f:
        check(re.match(r"heap profile: +\d+: +\d+ \[ +\d+: +\d+\] @ heapprofile", f.readline()),
              "expected gperftools' padded header")
    out = report("--top", "20", heap)
    check("ages: not recorded in this format." in out, "gperftools dump: ages line:\n" + out)
    check_report_against_pprof(out, heap, "gperftools heap", binary=ARGS.fixture)


def case_report_build_id():
    """A pprof dump names each object's build id: a file at the same path that is not that
    object (the program was rebuilt or redeployed since) must not lend its symbols to the
    dump's addresses, and the report must say why its frames are bare."""
    d = fresh_dir("build_id")
    app = os.path.join(d, "server")
    shutil.copy(ARGS.fixture, app)
    run([app], env=preload_env("sample:0,final:true,format:pb,prefix:%s/fx" % d), check_rc=0)
    pb = find(d, ".pb.gz")
    if not pb:
        return
    out = report("--top", "1", pb)
    check("leak_large_buffers (" in out and "build id" not in out, "the object the process ran:\n" + out)
    shutil.copy(ARGS.cpp_fixture, app)  # another program at the same path
    out = report("--top", "1", pb)
    check("leak_large_buffers" not in out and "(in %s+0x" % app in out and
          "note: %s is not the file the process ran (the build id differs" % app in out,
          "a replaced executable must not symbolize the dump:\n" + out)
    out = report("--top", "1", "--binary", ARGS.fixture, pb)
    check("leak_large_buffers (" in out and "build id" not in out, "--binary with the right file:\n" + out)

    # PPROF_BINARY_PATH, as go tool pprof reads it: each directory is searched for the
    # object by build id and by name; only a file with the dump's build id is taken.
    build_id = subprocess.run(["readelf", "-n", ARGS.fixture], stdout=subprocess.PIPE, text=True).stdout
    m = re.search(r"Build ID: ([0-9a-f]+)", build_id)
    if not check(m is not None, "the fixture has a GNU build id:\n" + build_id):
        return
    build_id = m.group(1)
    wrong, byname, byid, debug = (os.path.join(d, x) for x in ("wrong", "byname", "byid", "debug"))
    os.makedirs(wrong)
    shutil.copy(ARGS.cpp_fixture, os.path.join(wrong, "server"))  # the right name, another build
    os.makedirs(byname)
    shutil.copy(ARGS.fixture, os.path.join(byname, "server"))
    os.makedirs(os.path.join(byid, build_id))
    shutil.copy(ARGS.fixture, os.path.join(byid, build_id, "some-name"))
    os.makedirs(os.path.join(debug, build_id[:2]))
    shutil.copy(ARGS.fixture, os.path.join(debug, build_id[:2], build_id[2:] + ".debug"))
    def report_on_path(*dirs):
        p = run([ARGS.tool, "report", "--top", "1", pb], env={"PPROF_BINARY_PATH": ":".join(dirs)})
        check(p.returncode == 0, "report with PPROF_BINARY_PATH exited %d: %s" % (p.returncode, p.stderr))
        return p.stdout
    out = report_on_path(wrong)
    check("leak_large_buffers" not in out and "(in %s+0x" % app in out and "PPROF_BINARY_PATH=DIR" in out,
          "PPROF_BINARY_PATH: a file of that name but another build id must not be used:\n" + out)
    for where, dirs in (("by name", [wrong, byname]), ("in a directory named by the build id", [byid]),
                        ("in the .build-id layout", [debug])):
        out = report_on_path(*dirs)
        check("leak_large_buffers (" in out and "build id" not in out and
              "note: symbols of %s -> %s" % (app, dirs[-1]) in out,
              "PPROF_BINARY_PATH: the right build %s must symbolize:\n%s" % (where, out))


def case_report_e2e():
    """Dumps written by the library itself: ages, threads, file:line, agreement with pprof
    with and without an age filter."""
    d = fresh_dir("e2e")
    conf = "sample:0,final:true,format:heap+pb,prefix:%s/fx" % d
    run([ARGS.fixture, "--age-gap-ms", "2500"], env=preload_env(conf), check_rc=0)
    pb = find(d, ".pb.gz")
    heap = find(d, ".heap")
    if not pb or not heap:
        return
    # Everything: the four old sites plus the young leak_recent_items.
    sites = dict(expected_sites())
    sites["leak_recent_items"] = (7, 3500, source_line("ALLOC(500)"))
    out = report("--top", "20", pb)
    check_report_against_pprof(out, pb, "e2e pb all ages", sites=sites)
    # The thread's name is its comm: the program name cut to 15 characters.
    check(re.search(r"threads: %s \(tid \d+\)" % re.escape(os.path.basename(ARGS.fixture)[:15]), out),
          "pb report must name the allocating thread:\n" + out)
    check("Live bytes by age" in out, "pb report must have the age histogram")
    # Older than 2 s (the young leak is 2.5 s younger than the rest; ages are whole
    # seconds): the young site is gone, and pprof with the same age focus agrees.
    out = report("--age", "2s", "--top", "20", pb)
    check_report_against_pprof(out, pb, "e2e pb age 2s", pprof_extra=("-tagfocus=age=2s:",))
    check("leak_recent_items" not in out, "--age 2s must leave out the young leak:\n" + out)
    check("older than 2s: 63512 bytes" in out, "total older than 2s must be 63512 bytes:\n" + out)
    check(re.search(r"ages: oldest [2-9]s, youngest [2-9]s", out), "ages line missing:\n" + out)
    # The .heap of the same dump: same numbers, no ages.
    out = report("--top", "20", heap)
    check("ages: not recorded" in out, "heap report must say ages are not in the format")
    check_report_against_pprof(out, heap, "e2e heap", binary=ARGS.fixture, sites=sites)
    # --binary: the executable named explicitly (here: a copy at another path).
    copy = os.path.join(d, "renamed_fixture")
    shutil.copy(ARGS.fixture, copy)
    out = report("--binary", copy, "--top", "1", pb)
    check("leak_large_buffers (%s:" % os.path.join(ARGS.source, "leak_fixture.c") in out,
          "--binary copy must still symbolise:\n" + out)
    # --binary pointing at nothing: hex offsets, a note, no crash.
    out = report("--binary", os.path.join(d, "missing"), "--top", "1", pb)
    check("could not open" in out and "+0x" in out, "a missing binary must be noted:\n" + out)


def case_report_sampled():
    """sample:N > 0: the .heap carries raw counts with heap_v2/P, the pb unsampled ones;
    both readers must agree with pprof's unsampling on the same file."""
    d = fresh_dir("sampled")
    conf = "sample:10,final:true,format:heap+pb,prefix:%s/fx" % d
    run([ARGS.fixture], env=preload_env(conf), check_rc=0)
    heap, pb = find(d, ".heap"), find(d, ".pb.gz")
    if not heap or not pb:
        return
    with open(heap) as f:
        check("@ heap_v2/1024" in f.readline(), "sample:10 heap dump must say heap_v2/1024")
    for dump in (heap, pb):
        out = report("--top", "20", dump)
        check("sampled (mean period 1024 bytes)" in out, "sampled report must say so:\n" + out)
        rep = parse_report(out)
        space = pprof_values(dump, ARGS.fixture, "space")
        objects = pprof_values(dump, ARGS.fixture, "objects")
        for r in rep:
            if r[3] not in space:
                continue
            # pprof rounds its own way; a byte or a block either side is the same estimate.
            check(abs(space[r[3]] - r[1]) <= 2, "sampled %s: %s: %d bytes vs pprof %s" % (dump, r[3], r[1], space[r[3]]))
            check(abs(objects.get(r[3], -99) - r[2]) <= 2,
                  "sampled %s: %s: %d blocks vs pprof %s" % (dump, r[3], r[2], objects.get(r[3])))
        check(any(r[3] == "leak_large_buffers" for r in rep), "sampled: the 40 KB leak must be seen")


def check_diff(out, label):
    check("#1: +3200 bytes" in out and "+50 blocks: 512 -> 3712 bytes, 8 -> 58 blocks" in out,
          "%s: diff must show leak_growing_cache +3200 bytes, +50 blocks:\n%s" % (label, out))
    rep = [l for l in out.splitlines() if l.startswith("#")]
    check(len(rep) == 1, "%s: only one stack grew:\n%s" % (label, out))
    first_frame = [l for l in out.splitlines() if l.strip().startswith("at ")]
    check(first_frame and "leak_growing_cache (" in first_frame[0] and
          ":%d)" % source_line("ALLOC(64)") in first_frame[0],
          "%s: the grown site is leak_growing_cache at its line:\n%s" % (label, out))
    for flat in ("leak_large_buffers", "leak_medium_records", "leak_small_strings"):
        check(flat not in out, "%s: %s stayed flat and must not be listed:\n%s" % (label, flat, out))
    check("1 grew, 0 shrank, 3 unchanged" in out, "%s: stack counts:\n%s" % (label, out))


def case_diff():
    d = fresh_dir("diff")
    self_dumps(d, "--diff", os.path.join(d, "sd"))
    check_diff(report_diff(os.path.join(d, "sd.1.heap"), os.path.join(d, "sd.2.heap")), "self-dump diff")
    # No growth the other way round.
    out = report_diff(os.path.join(d, "sd.2.heap"), os.path.join(d, "sd.1.heap"))
    check("No stack grew." in out and "0 grew, 1 shrank" in out, "reverse diff shows no growth:\n" + out)
    # Real dumps requested through leakalloc_mallctl("prof.dump") in one process.
    conf = "sample:0,format:heap+pb,prefix:%s/fx" % d
    run([ARGS.fixture, "--diff", os.path.join(d, "real")], env=preload_env(conf), check_rc=0)
    check_diff(report_diff(os.path.join(d, "real.1.heap"), os.path.join(d, "real.2.heap")), "real heap diff")
    pbs = sorted(f for f in os.listdir(d) if f.startswith("real.1") and f.endswith(".pb.gz"))
    pbs2 = sorted(f for f in os.listdir(d) if f.startswith("real.2") and f.endswith(".pb.gz"))
    if check(pbs and pbs2, "prof.dump with heap+pb must write a .pb.gz too: %s" % os.listdir(d)):
        check_diff(report_diff(os.path.join(d, pbs[0]), os.path.join(d, pbs2[0])), "real pb diff")


def report_diff(a, b):
    p = run([ARGS.tool, "diff", a, b])
    check(p.returncode == 0, "diff exited %d: %s" % (p.returncode, p.stderr))
    return p.stdout


def case_run_status():
    d = fresh_dir("run_status")
    env = {"LEAKALLOC_LIB": ARGS.lib}
    p = run([ARGS.tool, "run", "--sample", "0", "--out", d, "--", ARGS.fixture, "--exit", "7"], env=env)
    check(p.returncode == 7, "run must pass the exit status 7 through, got %d: %s" % (p.returncode, p.stderr))
    dumps = os.listdir(d)
    check(any(f.endswith(".pb.gz") for f in dumps) and any(f.endswith(".heap") for f in dumps),
          "run must leave .heap and .pb.gz dumps in --out: %s" % dumps)
    for f in dumps:
        check(os.path.join(d, f) in p.stderr, "run must list the dump %s:\n%s" % (f, p.stderr))
    check("leak_large_buffers (" in p.stderr and "Leak report for" in p.stderr,
          "run must print the top of the report:\n" + p.stderr)
    p = run([ARGS.tool, "run", "--out", d, "--quiet", "--", ARGS.fixture], env=env)
    check(p.returncode == 0 and p.stderr == "", "run --quiet of a clean exit: rc %d, stderr %r" % (p.returncode, p.stderr))
    # The options reach LEAKALLOC_CONF: --age 1s leaves out the young leak in the final report.
    d2 = fresh_dir("run_age")
    p = run([ARGS.tool, "run", "--age", "2s", "--sample", "0", "--top", "10", "--out", d2, "--",
             ARGS.fixture, "--age-gap-ms", "2500"], env=env)
    check(p.returncode == 0, "run --age exit status %d: %s" % (p.returncode, p.stderr))
    check("age:2000ms" in p.stderr and "sample:0" in p.stderr, "run must show the conf:\n" + p.stderr)
    check("older than 2s: 63512 bytes" in p.stderr and "leak_recent_items" not in p.stderr,
          "run --age 2s: report must hold only the old leaks:\n" + p.stderr)
    # Without LEAKALLOC_LIB the build tree's library is found (baked-in path).
    p = run([ARGS.tool, "run", "--quiet", "--out", d, "--", ARGS.fixture, "--exit", "3"],
            env={"LEAKALLOC_LIB": ""})
    check(p.returncode == 3, "run with the baked-in library: rc %d: %s" % (p.returncode, p.stderr))
    # A bad LEAKALLOC_LIB and an unknown program are clear errors.
    p = run([ARGS.tool, "run", "--", ARGS.fixture], env={"LEAKALLOC_LIB": "/nonexistent/lib.so"})
    check(p.returncode != 0 and "LEAKALLOC_LIB=/nonexistent/lib.so: no such file" in p.stderr,
          "bad LEAKALLOC_LIB: rc %d: %s" % (p.returncode, p.stderr))
    p = run([ARGS.tool, "run", "--", "no-such-program-xyz"], env=env)
    check(p.returncode != 0 and "no-such-program-xyz: command not found" in p.stderr,
          "unknown program: rc %d: %s" % (p.returncode, p.stderr))
    p = run([ARGS.tool, "run", "--age", "soon", "--", ARGS.fixture], env=env)
    check(p.returncode != 0 and "--age: bad duration" in p.stderr, "bad --age: " + p.stderr)


def case_run_lookup():
    """Library lookup order: LEAKALLOC_LIB, then <bindir>/<rel libdir> of an installed
    layout, then the build tree."""
    d = fresh_dir("lookup")
    bindir = os.path.join(d, "prefix", "bin")
    libdir = os.path.normpath(os.path.join(bindir, ARGS.rel_libdir))
    os.makedirs(bindir)
    os.makedirs(libdir, exist_ok=True)
    tool = os.path.join(bindir, "leakalloc")
    shutil.copy(ARGS.tool, tool)
    installed_lib = os.path.join(libdir, "libleakalloc.so")
    shutil.copy(ARGS.lib, installed_lib)
    out = os.path.join(d, "dumps")

    def lib_used(env):
        p = run([tool, "run", "--top", "0", "--out", out, "--", ARGS.fixture, "--exit", "4"], env=env)
        check(p.returncode == 4, "lookup run: rc %d %s" % (p.returncode, p.stderr))
        m = re.search(r"^leakalloc: running \S+ with (\S+), LEAKALLOC_CONF=", p.stderr, re.M)
        return m.group(1) if m else p.stderr

    got = lib_used({"LEAKALLOC_LIB": ""})
    check(got == os.path.realpath(installed_lib), "installed layout must win over the build tree: %s" % got)
    got = lib_used({"LEAKALLOC_LIB": ARGS.lib})
    check(got == ARGS.lib, "LEAKALLOC_LIB must win: %s" % got)
    os.unlink(installed_lib)
    got = lib_used({"LEAKALLOC_LIB": ""})
    check(os.path.realpath(got) == os.path.realpath(ARGS.lib), "the build tree is the last resort: %s" % got)


def cpp_fixture_marks(src):
    """{"LEAK:name" or "CALL:name": line} of the `// LEAK:` / `// CALL:` comments in src."""
    lines = {}
    with open(src) as f:
        for i, l in enumerate(f):
            m = re.search(r"// (LEAK|CALL):(\w+)", l)
            if m:
                lines[m.group(1) + ":" + m.group(2)] = i + 1
    return lines


def case_cpp_names():
    """Demangled, simplified C++ names and inline chains, from a -O2 build."""
    d = fresh_dir("cpp")
    src = os.path.join(ARGS.source, "cpp_fixture.cpp")
    lines = cpp_fixture_marks(src)
    conf = "sample:0,final:true,format:pb,prefix:%s/cpp" % d
    run([ARGS.cpp_fixture], env=preload_env(conf), check_rc=0)
    pb = find(d, ".pb.gz")
    if not pb:
        return
    out = report("--top", "20", "--depth", "6", pb)
    rep = parse_report(out)
    # 5 std::string objects (32 bytes each) from Cart::add, at the `new T(t)` line.
    add = [r for r in rep if r[3] == "shop::Cart<std::string>::add"]
    check(len(add) == 1 and add[0][2] == 5 and add[0][1] == 5 * 32 and
          add[0][4] == "%s:%d" % (src, lines["LEAK:cart_add"]),
          "Cart<std::string>::add must hold 5 x 32 bytes at its line:\n" + out)
    # make_counter is inlined into leak_inline: the leaf names it, marked inlined, and
    # the next frame is leak_inline at the call.
    inl = [r for r in rep if r[3] == "make_counter"]
    if check(len(inl) >= 1, "no inlined make_counter frame:\n" + out):
        check(inl[0][4] == "%s:%d" % (src, lines["LEAK:make_counter"]), "make_counter line: %s" % inl[0][4])
        text = out.split("make_counter (%s" % src, 1)[1]
        check(text.split("\n", 1)[0].endswith("[inlined]"), "make_counter must be marked [inlined]:\n" + out)
        nxt = text.split("\n")[1]
        check("shop::leak_inline (%s:%d)" % (src, lines["CALL:make_counter"]) in nxt,
              "the frame after the inlined one is leak_inline at the call: %r\n%s" % (nxt, out))
        check(sum(r[2] for r in inl) == 3 and sum(r[1] for r in inl) == 12,
              "3 ints leaked through make_counter:\n" + out)
    check("std::__cxx11" not in out and "basic_string<char" not in out, "names must be simplified:\n" + out)


def report_groups(text):
    """The report's stacks as [[(lookup address, [(name, "file:line" or None, inlined)])]]:
    one group per address, innermost frame first."""
    stacks = []
    for line in text.splitlines():
        if REPORT_HEAD.match(line):
            stacks.append([])
            continue
        m = re.match(r"^\s+(?:at|by) (?:0x([0-9a-f]+):|\s+) (.*)$", line)
        if not m or not stacks:
            continue
        body = m.group(2)
        inlined = body.endswith(" [inlined]")
        if inlined:
            body = body[:-len(" [inlined]")]
        where = None
        if body.endswith(")") and " (" in body:
            body, where = body[:body.rindex(" (")], body[body.rindex(" (") + 2:-1]
        if m.group(1):
            stacks[-1].append((int(m.group(1), 16) - 1, []))
        if stacks[-1]:
            stacks[-1][-1][1].append((body, where, inlined))
    return stacks


def pb_mapping(dump, path):
    """(start, limit, file offset) of `path`'s executable mapping, as go tool pprof -raw reads the dump."""
    p = run(["go", "tool", "pprof", "-raw", dump], timeout=120)
    for line in p.stdout.split("Mappings", 1)[-1].splitlines():
        m = re.match(r"^\d+: 0x([0-9a-f]+)/0x([0-9a-f]+)/0x([0-9a-f]+) (\S+)", line)
        if m and os.path.realpath(m.group(4)) == os.path.realpath(path):
            return int(m.group(1), 16), int(m.group(2), 16), int(m.group(3), 16)
    return None


def file_offset_to_vaddr(binary, off):
    """The link-time address of file offset `off` (what addr2line takes)."""
    out = run(["readelf", "-lW", binary], check_rc=0).stdout
    for m in re.finditer(r"LOAD\s+0x([0-9a-f]+) 0x([0-9a-f]+) 0x[0-9a-f]+ 0x([0-9a-f]+)", out):
        o, v, sz = (int(m.group(i), 16) for i in (1, 2, 3))
        if o <= off < o + sz:
            return off - o + v
    return None


def addr2line_frames(binary, vaddrs):
    """addr -> [(demangled name, "file:line")] innermost first, from binutils addr2line -i."""
    p = run(["addr2line", "-i", "-f", "-C", "-a", "-e", binary] + ["0x%x" % a for a in vaddrs], check_rc=0)
    out, cur, lines = {}, None, p.stdout.splitlines()
    i = 0
    while i < len(lines):
        if re.match(r"^0x[0-9a-f]+$", lines[i]):
            cur = int(lines[i], 16)
            out[cur] = []
            i += 1
            continue
        where = re.sub(r" \(discriminator \d+\)$", "", lines[i + 1])
        # addr2line joins a relative name to the unit's directory as it is; the report
        # takes "." and ".." out.
        if where.startswith("/"):
            f, _, n = where.rpartition(":")
            where = os.path.normpath(f) + ":" + n
        out[cur].append((lines[i], where))
        i += 2
    return out


def llvm_symbolizer_frames(binary, vaddrs):
    """addr -> [demangled name] innermost first, from llvm-symbolizer --inlining."""
    exe = shutil.which("llvm-symbolizer") or shutil.which("llvm-symbolizer-14")
    if not exe:
        return None
    p = run([exe, "--inlining", "--demangle", "-e", binary] + ["0x%x" % a for a in vaddrs],
            check_rc=0)
    out = {}
    for a, block in zip(vaddrs, p.stdout.strip().split("\n\n")):
        out[a] = block.splitlines()[0::2]
    return out


def same_function(ours, theirs):
    """Our simplified name (no parameters, std::string for basic_string, clone suffixes
    kept) names the function a reference symbolizer prints in full."""
    norm = lambda n: (re.sub(r" (\[clone [^\]]*\]|\(\.[a-z]+\.\d+\))", "", n)
                      .replace("std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >", "std::string")
                      .replace("std::__cxx11::", "std::").replace("std::string >", "std::string>"))
    a, b = norm(ours), norm(theirs)
    if b == a or (b.startswith(a) and b[len(a)] == "("):
        return True
    # A template function's return type comes first in the full name.
    return (" " + a + "(") in b


def case_cpp_inline():
    """Every frame `leakalloc report` prints for a -O2 C++ program, inlined STL frames
    and a GCC clone included, is the frame binutils' addr2line -i prints for that
    address: same function, same file:line, same count and order."""
    d = fresh_dir("cpp_inline")
    src = os.path.join(ARGS.source, "cpp_fixture.cpp")
    lines = cpp_fixture_marks(src)
    run([ARGS.cpp_fixture], env=preload_env("sample:0,final:true,format:pb,prefix:%s/cpp" % d), check_rc=0)
    pb = find(d, ".pb.gz")
    if not pb:
        return
    out = report("--top", "100", "--depth", "1000", pb)
    mapping = pb_mapping(pb, ARGS.cpp_fixture)
    if not check(mapping is not None, "no mapping of %s in the dump" % ARGS.cpp_fixture):
        return
    start, limit, offset = mapping
    groups = [g for st in report_groups(out) for g in st if start <= g[0] < limit]
    vaddr = {g[0]: file_offset_to_vaddr(ARGS.cpp_fixture, g[0] - start + offset) for g in groups}
    addrs = sorted(set(vaddr.values()))
    ref = addr2line_frames(ARGS.cpp_fixture, addrs)
    # binutils 2.40's addr2line names some inlined frames after the function they were
    # inlined into (make_counter's frame comes out as shop::leak_inline) and prints a
    # clone's bare DW_AT_name (handle_request): llvm-symbolizer is the reference for the
    # names, addr2line for the frames and their file:line.
    names = llvm_symbolizer_frames(ARGS.cpp_fixture, addrs)
    compared = 0
    for pc, frames in groups:
        want = ref.get(vaddr[pc], [])
        # No line: the report gives the object and offset, addr2line "??:?".
        got = [(n, "??:?" if w is None or w.startswith("in ") else w) for n, w, _ in frames]
        want_names = names[vaddr[pc]] if names else [w[0] for w in want]
        ok = (len(got) == len(want) == len(want_names) and all(g[1] == w[1] for g, w in zip(got, want)) and
              all(same_function(g[0], n) for g, n in zip(got, want_names)))
        check(ok, "frames at 0x%x (0x%x in the binary):\n  report:    %s\n  addr2line: %s\n  llvm-symbolizer: %s" %
              (pc, vaddr[pc], got, want, want_names))
        check([i for _, _, i in frames] == [True] * (len(frames) - 1) + [False],
              "every frame but the last of one address is marked [inlined]: %s" % frames)
        compared += len(got)
    print("compared %d frames at %d addresses with addr2line and llvm-symbolizer" % (compared, len(groups)))
    check(compared >= 20, "only %d frames of the fixture compared with addr2line:\n%s" % (compared, out))
    # The frame that names the bug, at its own line, inlined into the clone at the call.
    remember = [(g, i) for g in groups for i, f in enumerate(g[1]) if f[0] == "shop::SessionCache::remember"]
    if check(len(remember) == 1, "one address with SessionCache::remember:\n" + out):
        (pc, frames), i = remember[0]
        check(frames[i][1] == "%s:%d" % (src, lines["LEAK:remember"]), "remember's line: %s" % (frames[i],))
        check(i >= 6 and frames[0][1].startswith("/usr/include/"), "the STL frames inlined into remember: %s" % frames)
        check(i + 2 == len(frames) and frames[i + 1][:2] == ("shop::handle_request [clone .isra.0]",
                                                             "%s:%d" % (src, lines["CALL:remember"])),
              "remember is inlined into handle_request's clone at the call: %s" % frames)
        # The suffix as c++filt prints it for the ELF symbol that holds the code.
        syms = run(["nm", ARGS.cpp_fixture], check_rc=0).stdout
        mangled = [l.split()[2] for l in syms.splitlines() if "handle_request" in l]
        filt = run(["c++filt"] + mangled, check_rc=0).stdout.strip()
        check(len(mangled) == 1 and filt.endswith(") [clone .isra.0]"), "c++filt: %s" % filt)


def pprof_raw_sections(dump):
    """go tool pprof -raw of `dump` (no binary): {"Samples": text, "Mappings": [lines]}."""
    p = run(["go", "tool", "pprof", "-raw", dump], timeout=120)
    check(p.returncode == 0, "pprof -raw %s: %s" % (dump, p.stderr))
    text = p.stdout
    samples = text.split("Samples:\n", 1)[-1].split("Locations\n", 1)[0]
    mappings = text.split("Mappings\n", 1)[-1].strip().splitlines()
    return {"Samples": samples, "Mappings": mappings}


def sample_values(samples_text, columns):
    """The last `columns` values of each sample line of -raw, sorted (location ids dropped)."""
    rows = []
    for line in samples_text.splitlines():
        m = re.match(r"^\s+([-\d ]+): [\d ]+$", line)
        if m:
            rows.append(tuple(int(v) for v in m.group(1).split()[-columns:]))
    return sorted(rows)


def case_symbolize():
    """`leakalloc symbolize` and the copies `run` writes: go tool pprof names every frame,
    inlined ones included, with the program deleted; values, labels, mappings and build
    ids are those of the input."""
    d = fresh_dir("symbolize")
    appdir = os.path.join(d, "app")
    os.makedirs(appdir)
    app = os.path.join(appdir, "server")
    shutil.copy(ARGS.cpp_fixture, app)
    out = os.path.join(d, "dumps")
    p = run([ARGS.tool, "run", "--sample", "0", "--top", "0", "--out", out, "--", app],
            env={"LEAKALLOC_LIB": ARGS.lib})
    check(p.returncode == 0, "run: %d %s" % (p.returncode, p.stderr))
    pb, heap = find(out, "0.f0.pb.gz"), find(out, ".heap")
    if not pb or not heap:
        return
    auto = pb[:-len(".pb.gz")] + ".sym.pb.gz"
    check(os.path.exists(auto) and ("  %s (symbolized" % auto) in p.stderr,
          "run must write and list %s:\n%s" % (auto, p.stderr))
    from_heap = os.path.join(d, "from_heap.pb.gz")
    p = run([ARGS.tool, "symbolize", heap, "-o", from_heap])
    check(p.returncode == 0 and p.stdout.split() == [from_heap], "symbolize .heap: %s %s" % (p.stdout, p.stderr))
    p = run([ARGS.tool, "symbolize", pb, heap])
    check(p.returncode != 0 and "would both be written to" in p.stderr,
          "two dumps for one output must be refused: %s" % p.stderr)
    shutil.rmtree(appdir)  # the program is gone, as on a profiling back end
    # Symbolizing again now would name nothing: the copy made while the program was
    # there is kept (the checks below read it), and a glob's earlier copies are skipped.
    p = run([ARGS.tool, "symbolize", pb, auto])
    check(p.returncode == 0 and "%s exists and some of the dump's objects cannot be read now; kept it" % auto in p.stderr
          and "%s is a symbolized copy already; skipped" % auto in p.stderr and p.stdout == "",
          "symbolize again without the program: %s %s" % (p.stdout, p.stderr))

    # Without names, go tool pprof has nothing to go on: the control.
    raw_top = pprof_top(pb, extra=("-unit=B",))
    check("shop::Cart<std::string>::add" not in raw_top and not any("remember" in f for f in raw_top),
          "the raw dump must not name frames once the program is gone: %s" % sorted(raw_top))
    for label, sym in (("run's copy", auto), ("from .heap", from_heap)):
        top = pprof_top(sym, extra=("-unit=B",))
        for want in ("shop::SessionCache::remember (inline)", "shop::handle_request [clone .isra.0]",
                     "shop::Cart<std::string>::add", "make_counter (inline)", "shop::leak_inline",
                     "std::map<int, std::vector<char, std::allocator<char> >, std::less<int>, "
                     "std::allocator<std::pair<int const, std::vector<char, std::allocator<char> > > > >::operator[] (inline)"):
            check(want in top, "%s: pprof -top must show %s: %s" % (label, want, sorted(top)))
        check(not any(f.startswith("[") for f in top), "%s: unnamed frames in pprof -top: %s" % (label, sorted(top)))
        # The inline chain in order, innermost first: -traces prints each stack leaf first.
        p = run(["go", "tool", "pprof", "-traces", sym], timeout=120)
        chain = ["shop::SessionCache::remember (inline)", "shop::handle_request [clone .isra.0]", "main"]
        got = []
        for t in p.stdout.split("-----------+")[1:]:
            # Frame lines: "      256B   leaf" then "             caller"; labels have a ':'.
            names = [l[13:].strip() for l in t.splitlines()[1:] if len(l) > 13 and not re.match(r"^\s*\w+:  ", l)]
            if chain[0] in names:
                got = names[:names.index("main") + 1] if "main" in names else names
        check(got[-3:] == chain and len(got) == 10 and all(n.startswith("std::") for n in got[:7]),
              "%s: -traces must show the STL frames, then %s: %s" % (label, chain, got))
    # The web UI's flame graph, as a user opens it: the page names the leaking function.
    port = free_port()
    ui = subprocess.Popen(["go", "tool", "pprof", "-http=127.0.0.1:%d" % port, "-no_browser", auto],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, HOME=ARGS.work))
    try:
        import urllib.request
        page = ""
        deadline = time.time() + 60
        while time.time() < deadline and ui.poll() is None and not page:
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/ui/flamegraph" % port, timeout=5) as r:
                    page = r.read().decode("utf-8", "replace")
            except Exception:
                time.sleep(0.3)
        check("shop::SessionCache::remember" in page and "shop::handle_request [clone .isra.0]" in page,
              "go tool pprof -http's flame graph must name the leak (%d bytes of page)" % len(page))
    finally:
        ui.terminate()
        try:
            ui.wait(timeout=10)
        except subprocess.TimeoutExpired:
            ui.kill()
            ui.wait()
    # The rewrite keeps every sample with its values and labels, and the mappings with
    # their build ids, now flagged as symbolized.
    raw, sym = pprof_raw_sections(pb), pprof_raw_sections(auto)
    check(raw["Samples"] == sym["Samples"] and "age:[" in raw["Samples"] and "thread:[" in raw["Samples"],
          "samples, values and labels must be kept:\n%s\n---\n%s" % (raw["Samples"], sym["Samples"]))
    check(len(raw["Mappings"]) == len(sym["Mappings"]) and
          all(s.startswith(r.rstrip()) for r, s in zip(raw["Mappings"], sym["Mappings"])),
          "mappings must be kept: %s / %s" % (raw["Mappings"], sym["Mappings"]))
    check(sym["Mappings"][0].startswith("1: ") and app in sym["Mappings"][0] and
          sym["Mappings"][0].endswith("[FN][FL][LN][IN]") and re.search(r" [0-9a-f]{40} ", sym["Mappings"][0]),
          "the program's mapping keeps its build id and is flagged: %s" % sym["Mappings"])
    # The .heap's numbers: Go's own reading of the .heap has the same in-use values.
    heap_raw, heap_sym = pprof_raw_sections(heap), pprof_raw_sections(from_heap)
    check(sample_values(heap_raw["Samples"], 2) == sample_values(heap_sym["Samples"], 2) and
          len(sample_values(heap_sym["Samples"], 2)) >= 5,
          "the .heap's in-use values must be kept:\n%s\n---\n%s" % (heap_raw["Samples"], heap_sym["Samples"]))


def free_port():
    import socket
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        return so.getsockname()[1]


def case_stripped():
    """A stripped program, as it runs in production: its names, lines and inlined frames
    come from a separate debug file found by build id in a .build-id tree, by
    .gnu_debuglink, from Debian's debuginfod server on loopback, and from a
    PPROF_BINARY_PATH that must win over the stripped file at the dump's path."""
    d = fresh_dir("stripped")
    src = os.path.join(ARGS.source, "cpp_fixture.cpp")
    with open(src) as f:
        line = [i + 1 for i, l in enumerate(f) if "// LEAK:remember" in l][0]
    named = "shop::SessionCache::remember (%s:%d) [inlined]" % (src, line)
    appdir = os.path.join(d, "app")
    os.makedirs(appdir)
    app = os.path.join(appdir, "server")
    shutil.copy(ARGS.cpp_fixture, app)
    debug = os.path.join(d, "server.debug")
    run(["objcopy", "--only-keep-debug", app, debug], check_rc=0)
    run(["objcopy", "--strip-debug", app], check_rc=0)
    m = re.search(r"Build ID: ([0-9a-f]+)", run(["readelf", "-n", app], check_rc=0).stdout)
    if not check(m is not None, "the fixture has a GNU build id"):
        return
    build_id = m.group(1)
    run([app], env=preload_env("sample:0,final:true,format:pb,prefix:%s/cpp" % d), check_rc=0)
    pb = find(d, ".pb.gz")
    if not pb:
        return
    nowhere = os.path.join(d, "no-debug-dirs")

    def rep(env):
        full = {"LEAKALLOC_DEBUG_DIRS": nowhere, "PPROF_BINARY_PATH": ""}
        full.update(env)
        p = run([ARGS.tool, "report", "--top", "100", "--depth", "100", pb], env=full)
        check(p.returncode == 0, "report exited %d: %s" % (p.returncode, p.stderr))
        return p.stdout

    # The control: stripped and nothing to find, so no line and no inlined frame.
    out = rep({})
    check("shop::handle_request [clone .isra.0] (in %s+0x" % app in out and "remember" not in out,
          "a stripped program alone has names but no lines:\n" + out)

    # (a) a .build-id tree, as Debian's -dbgsym packages install under /usr/lib/debug.
    tree = os.path.join(d, "debug-root")
    os.makedirs(os.path.join(tree, ".build-id", build_id[:2]))
    shutil.copy(debug, os.path.join(tree, ".build-id", build_id[:2], build_id[2:] + ".debug"))
    out = rep({"LEAKALLOC_DEBUG_DIRS": nowhere + ":" + tree})
    check(named in out and "note: debug info of %s -> %s/.build-id/%s/%s.debug (.build-id)" %
          (app, tree, build_id[:2], build_id[2:]) in out, ".build-id tree:\n" + out)
    shutil.rmtree(tree)

    # .gnu_debuglink: beside the program, in its .debug/, under a debug directory.
    # (objcopy keeps the build id: the dump still names this file.)
    run(["objcopy", "--add-gnu-debuglink=" + debug, app], check_rc=0)
    for where in (appdir, os.path.join(appdir, ".debug"), os.path.join(tree + appdir)):
        os.makedirs(where, exist_ok=True)
        shutil.copy(debug, os.path.join(where, "server.debug"))
        p = run([ARGS.tool, "report", "--top", "100", "--depth", "100", pb],
                env={"LEAKALLOC_DEBUG_DIRS": tree, "PPROF_BINARY_PATH": ""})
        check(named in p.stdout and "-> %s/server.debug (.gnu_debuglink)" % where in p.stdout,
              ".gnu_debuglink in %s:\n%s" % (where, p.stdout))
        os.unlink(os.path.join(where, "server.debug"))
    shutil.rmtree(tree, ignore_errors=True)

    # (b) debuginfod: Debian's own server, indexing a directory, on a free port (0.188 has
    # no option to bind loopback only; the test reaches it through 127.0.0.1).
    served = os.path.join(d, "served")
    os.makedirs(served)
    shutil.copy(debug, served)
    shutil.copy(app, os.path.join(served, "server"))  # the stripped executable, too
    port = free_port()
    url = "http://127.0.0.1:%d" % port
    log = open(os.path.join(d, "debuginfod.log"), "w")
    server = subprocess.Popen(["debuginfod", "-F", "-p", str(port), "-d", os.path.join(d, "debuginfod.sqlite"),
                               "-t", "0", "-g", "0", served], stdout=log, stderr=subprocess.STDOUT)
    try:
        import urllib.request
        ready = False
        deadline = time.time() + 30
        while time.time() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen("%s/buildid/%s/debuginfo" % (url, build_id), timeout=2) as r:
                    ready = r.status == 200
            except Exception:
                pass
            if ready:
                break
            time.sleep(0.2)
        if check(ready, "debuginfod did not serve %s within 30 s" % build_id):
            cache = os.path.join(d, "debuginfod-cache")
            env = {"DEBUGINFOD_URLS": url, "DEBUGINFOD_CACHE_PATH": cache, "DEBUGINFOD_TIMEOUT": "10"}
            out = rep(env)
            check(named in out and "note: debug info of %s -> %s/%s/debuginfo (debuginfod)" % (app, cache, build_id) in out,
                  "debuginfod:\n" + out)
            # The symbolized profile names the frames too, with the program gone later.
            sym = os.path.join(d, "from-debuginfod.pb.gz")
            full = {"LEAKALLOC_DEBUG_DIRS": nowhere, "PPROF_BINARY_PATH": ""}
            full.update(env)
            p = run([ARGS.tool, "symbolize", pb, "-o", sym], env=full)
            check(p.returncode == 0, "symbolize through debuginfod: %s" % p.stderr)
            top = pprof_top(sym, extra=("-unit=B",))
            check("shop::SessionCache::remember (inline)" in top, "symbolized through debuginfod: %s" % sorted(top))
            # The program gone from its path: the executable comes from debuginfod too.
            os.rename(app, app + ".away")
            try:
                out = rep(env)
                check(named in out and "note: debug info of %s -> %s/%s/executable (the executable, from debuginfod)" %
                      (app, cache, build_id) in out, "debuginfod, the program deleted:\n" + out)
            finally:
                os.rename(app + ".away", app)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()

    # (c) PPROF_BINARY_PATH with the unstripped build: it must win over the stripped file
    # with the same build id that is still at the dump's path.
    bins = os.path.join(d, "bins")
    os.makedirs(bins)
    shutil.copy(ARGS.cpp_fixture, os.path.join(bins, "server"))
    out = rep({"PPROF_BINARY_PATH": bins})
    check(named in out and "note: symbols of %s -> %s/server (from PPROF_BINARY_PATH)" % (app, bins) in out,
          "PPROF_BINARY_PATH must win over the stripped program:\n" + out)


def case_demo():
    """examples/demo.sh, the README's leak hunt: the report's first stack ends in the
    leaking line of leaky_server.c, and the diff's first stack is the same one."""
    src = os.path.join(ARGS.examples, "leaky_server.c")
    with open(src) as f:
        line = [i + 1 for i, l in enumerate(f) if "malloc(sizeof *e)" in l][0]
    p = run(["sh", os.path.join(ARGS.examples, "demo.sh"), ARGS.build], timeout=100)
    check(p.returncode == 0, "demo.sh exited %d: %s" % (p.returncode, p.stderr))
    leak = "record_login_audit_entry (%s:%d)" % (src, line)
    firsts = [l for l in p.stdout.splitlines() if l.strip().startswith("at 0x")]
    check(len(firsts) >= 2 and leak in firsts[0], "demo report #1 must be %s:\n%s" % (leak, p.stdout))
    diff_part, _, oncall_part = p.stdout.partition("== on call:")
    firsts = [l for l in diff_part.splitlines() if l.strip().startswith("at 0x")]
    check(leak in firsts[-1], "demo diff #1 must be %s:\n%s" % (leak, p.stdout))
    # `leakalloc dump` on the running server: one .heap and one .pb.gz, whose report's
    # first stack is the same leak.
    dumped = re.findall(r"^/\S+/oncall\.\d+\.0\.m0\.(heap|pb\.gz)$", oncall_part, re.M)
    check(dumped == ["heap", "pb.gz"], "demo: leakalloc dump must list its two files:\n" + oncall_part)
    firsts = [l for l in oncall_part.splitlines() if l.strip().startswith("at 0x")]
    check(len(firsts) == 1 and leak in firsts[0], "demo: leakalloc dump's report #1 must be %s:\n%s" % (leak, oncall_part))
    check(re.search(r"threads: worker-\d \(tid \d+\), worker-\d \(tid \d+\)", p.stdout),
          "demo report must name both worker threads:\n" + p.stdout)
    check("render_page" not in p.stdout and "handle_search" not in p.stdout,
          "freed and young memory must not show as leaks:\n" + p.stdout)
    m = re.search(r"dumps kept in (\S+)\)", p.stdout)
    if m and m.group(1).startswith("/tmp/leakalloc-demo."):
        shutil.rmtree(m.group(1), ignore_errors=True)


def wait_for(path, seconds):
    end = time.time() + seconds
    while time.time() < end:
        if os.path.exists(path) and os.path.getsize(path) > 0:
            return True
        time.sleep(0.02)
    return False


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def case_run_signals():
    env = dict(os.environ, LEAKALLOC_LIB=ARGS.lib, HOME=ARGS.work)
    for sig, handled in ((signal.SIGTERM, True), (signal.SIGINT, False), (signal.SIGTERM, False)):
        d = fresh_dir("run_sig")
        marker = os.path.join(d, "term.marker")
        cmd = [ARGS.tool, "run", "--quiet", "--out", d, "--", ARGS.fixture, "--sleep-ms", "20000"]
        if handled:
            cmd += ["--term-marker", marker]
        p = subprocess.Popen(cmd, cwd=d, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        pidfile = os.path.join(d, "fixture.pid")
        if not check(wait_for(pidfile, 20), "child never started"):
            p.kill()
            continue
        child = int(open(pidfile).read())
        os.kill(p.pid, sig)  # to leakalloc only: it must forward
        try:
            _, err = p.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            check(False, "leakalloc did not end after %s" % sig.name)
            continue
        label = "%s %s" % (sig.name, "handled" if handled else "default")
        if handled:
            check(p.returncode == 42, "%s: the child's exit status 42 must pass through, got %d %s" % (label, p.returncode, err))
            check(os.path.exists(marker) and open(marker).read().strip() == str(int(sig)),
                  "%s: the child must have received the signal" % label)
        else:
            check(p.returncode == -int(sig), "%s: leakalloc must die of the child's signal, got %d %s" % (label, p.returncode, err))
        time.sleep(0.05)
        check(not alive(child), "%s: child %d still running" % (label, child))


def case_run_refuse():
    d = fresh_dir("refuse")
    env = {"LEAKALLOC_LIB": ARGS.lib}
    if ARGS.static_fixture and os.path.exists(ARGS.static_fixture):
        p = run([ARGS.tool, "run", "--out", d, "--", ARGS.static_fixture], env=env)
        check(p.returncode != 0 and "is statically linked" in p.stderr and "running" not in p.stderr,
              "static binary must be refused: rc %d %s" % (p.returncode, p.stderr))
    else:
        print("note: no static libc: static-binary refusal not tested")
    suid = os.path.join(d, "suid_fixture")
    shutil.copy(ARGS.fixture, suid)
    os.chmod(suid, 0o755 | stat.S_ISUID)
    p = run([ARGS.tool, "run", "--out", d, "--", suid, "--exit", "5"], env=env)
    check(p.returncode not in (0, 5) and "set-user-ID or set-group-ID" in p.stderr,
          "setuid program must be refused: rc %d %s" % (p.returncode, p.stderr))
    os.chmod(suid, 0o755 | stat.S_ISGID)
    p = run([ARGS.tool, "run", "--out", d, "--", suid, "--exit", "5"], env=env)
    check(p.returncode not in (0, 5) and "set-user-ID or set-group-ID" in p.stderr,
          "setgid program must be refused: rc %d %s" % (p.returncode, p.stderr))
    # A script is checked through its interpreter and then runs.
    script = os.path.join(d, "wrapper.sh")
    with open(script, "w") as f:
        f.write("#!/bin/sh\nexec %s --exit 9\n" % ARGS.fixture)
    os.chmod(script, 0o755)
    p = run([ARGS.tool, "run", "--quiet", "--out", d, "--", script], env=env)
    check(p.returncode == 9, "script run: rc %d %s" % (p.returncode, p.stderr))


def case_run_follow():
    """run traces the process it started, through a script's exec, and not the children
    it forks (fork alone, or fork+exec) unless --follow: counted by dump files (before,
    every child wrote its own: a pyenv shim left 80 extra dumps)."""
    d = fresh_dir("run_follow")
    script = os.path.join(d, "spawner.sh")
    with open(script, "w") as f:
        f.write("#!/bin/sh\nexec %s 2 /bin/true\n" % ARGS.spawn_fixture)
    os.chmod(script, 0o755)
    name = re.compile(r"^spawner\.sh\.(\d+)\.\d+\.f0\.heap$")
    for follow, want in ((False, 1), (True, 5)):
        label = "run --follow" if follow else "run"
        out = os.path.join(d, "follow" if follow else "plain")
        cmd = [ARGS.tool, "run", "--sample", "0", "--format", "heap", "--no-symbolize", "--top", "0", "--out", out]
        if follow:
            cmd.append("--follow")
        p = run(cmd + ["--", script], env={"LEAKALLOC_CONF": "", "LEAKALLOC_RUN_PID": "1"})
        if not check(p.returncode == 0, "%s: rc %d\n%s" % (label, p.returncode, p.stderr)):
            continue
        m = re.search(r"spawner\.sh \(pid (\d+)\) exited with status 0", p.stderr)
        if not check(m is not None, "%s: no exit line:\n%s" % (label, p.stderr)):
            continue
        files = sorted(os.listdir(out))
        pids = [name.match(f).group(1) for f in files if name.match(f)]
        check(len(files) == want and len(pids) == want and len(set(pids)) == want,
              "%s: wanted %d final dumps of distinct processes, got %s" % (label, want, files))
        check(m.group(1) in pids, "%s: no dump of the traced pid %s: %s" % (label, m.group(1), files))
        traced = os.path.join(out, "spawner.sh.%s.0.f0.heap" % m.group(1))
        if check(os.path.exists(traced), "%s: no %s" % (label, traced)):
            with open(traced) as f:
                text = f.read()
            # Exact at sample:0: the 3 x 777 B that spawn_fixture_leak keeps.
            check(re.search(r"^\s*3:\s+2331 \[\s*3:\s+2331\] @", text, re.M) is not None,
                  "%s: the traced dump lacks spawn_fixture_leak's 3 x 777 B:\n%s" % (label, text[:2000]))
        others = re.search(r"and (\d+) from other processes it started", p.stderr)
        check((others is None and not follow) or (others is not None and int(others.group(1)) == want - 1),
              "%s: the count of other processes' dumps:\n%s" % (label, p.stderr))


def start_fixture(d, env, *args, binary=None):
    """Starts the fixture in `d` and waits until it has made all its leaks."""
    e = dict(os.environ, HOME=ARGS.work)
    e.update(env)
    p = subprocess.Popen([binary or ARGS.fixture] + list(args), cwd=d, env=e,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not check(wait_for(os.path.join(d, "fixture.ready"), 30), "fixture in %s never got ready" % d):
        p.kill()
        raise SystemExit(1)
    return p


def stop_fixture(p, label):
    p.terminate()
    _, err = p.communicate(timeout=30)
    check("leakalloc:" not in err, "%s: the process said on stderr:\n%s" % (label, err))


def remote_dump(pid, *args, timeout=60):
    return run([ARGS.tool, "dump"] + list(args) + [str(pid)], timeout=timeout)


def check_dump_files(r, want, label):
    """`leakalloc dump` answered and printed exactly the files `want`."""
    return check(r.returncode == 0 and r.stdout.split() == want,
                 "%s: rc %d, files %s, wanted %s; stderr:\n%s" % (label, r.returncode, r.stdout.split(), want, r.stderr))


def check_dump_top(r, label):
    """`leakalloc dump` printed the top of the fixture's report: its largest leak first."""
    return check("#1: 40000 bytes (39.1 KiB) in 10 blocks" in r.stderr and "leak_fixture.c" in r.stderr,
                 "%s: dump must print the top of the report:\n%s" % (label, r.stderr))


def case_remote_dump():
    """`leakalloc dump PID`: a dump from a running process that was started with no
    trigger at all, exact at sample:0, with an age given by the tool; the same from an
    idle process (pending until it allocates) and from one with a dump thread; the
    library linked instead of preloaded; and the refusals."""
    d = os.path.realpath(fresh_dir("remote"))
    recent = dict(expected_sites())
    recent["leak_recent_items"] = (7, 3500, source_line("ALLOC(500)"))
    fx = "leak_fixture.c"

    # No trigger configured (no interval, signal, final): only the remote request dumps.
    # The young leak comes 6 s after the others, just before the fixture is ready.
    p = start_fixture(d, preload_env("sample:0"), "--age-gap-ms", "6000", "--busy-ms", "60000")
    r = remote_dump(p.pid, "--age", "0", "--format", "heap+pb", "--top", "5")
    # The tool's age, at once (the reports below take seconds): the young leak, less than
    # 5 s old by then, is left out of the .heap; the others, 6 s older, are in.
    # --no-symbolize: no copy, so nothing at all on stderr.
    r_age = remote_dump(p.pid, "--age", "5s", "--format", "heap", "--top", "0", "--no-symbolize")
    want = [os.path.join(d, "leakalloc.%d.0.m0%s" % (p.pid, x)) for x in (".heap", ".pb.gz")]
    check_dump_files(r, want, "dump")
    check_dump_top(r, "dump")
    # The symbolized copy beside the .pb.gz, named on stderr (stdout lists the raw files).
    sym = os.path.join(d, "leakalloc.%d.0.m0.sym.pb.gz" % p.pid)
    check(("leakalloc: symbolized: %s " % sym) in r.stderr and os.path.exists(sym),
          "dump must write and name %s:\n%s" % (sym, r.stderr))
    if r.returncode == 0:
        check_report_against_pprof(report("--top", "20", want[1]), want[1], "remote pb", sites=recent)
        check_report_against_pprof(report("--top", "20", want[0]), want[0], "remote heap",
                                   binary=ARGS.fixture, sites=recent)
    r = r_age
    want = [os.path.join(d, "leakalloc.%d.1.m1.heap" % p.pid)]
    check_dump_files(r, want, "dump --age 5s")
    check(r.stderr == "", "dump --top 0 must print no report:\n" + r.stderr)
    if r.returncode == 0:
        out = report("--top", "20", want[0])
        check("leak_recent_items" not in out, "--age 5s must leave out the young leak:\n" + out)
        check_report_against_pprof(out, want[0], "remote heap age 5s", binary=ARGS.fixture)
    check(p.poll() is None, "the process must still run after two remote dumps")
    stop_fixture(p, "remote busy")
    check(sorted(os.listdir(d)) == sorted(["fixture.ready", "leakalloc.%d.0.m0.heap" % p.pid,
                                           "leakalloc.%d.0.m0.pb.gz" % p.pid, "leakalloc.%d.1.m1.heap" % p.pid,
                                           "leakalloc.%d.0.m0.sym.pb.gz" % p.pid]),
          "exactly the three requested files and the first one's symbolized copy: %s" % os.listdir(d))

    # A child forked after the parent's dump thread started (on demand) answers too:
    # it starts a dump thread of its own.
    d = os.path.realpath(fresh_dir("remote_fork"))
    p = start_fixture(d, preload_env("sample:0"), "--busy-ms", "60000", "--fork")
    r = remote_dump(p.pid, "--age", "0", "--format", "heap", "--top", "0")
    check(r.returncode == 0, "fork: parent's dump: rc %d %s" % (r.returncode, r.stderr))
    open(os.path.join(d, "fork.now"), "w").close()
    if check(wait_for(os.path.join(d, "child.ready"), 30), "the fixture never forked"):
        child = int(open(os.path.join(d, "child.ready")).read())
        r = remote_dump(child, "--age", "0", "--format", "heap", "--top", "0", "--timeout", "20s")
        want = [os.path.join(d, "leakalloc.%d.0.m0.heap" % child)]
        check_dump_files(r, want, "forked child")
        if r.returncode == 0:
            check_report_against_pprof(report("--top", "20", want[0]), want[0], "remote heap (forked child)",
                                       binary=ARGS.fixture)
        os.kill(child, signal.SIGKILL)
    stop_fixture(p, "remote fork")

    # Idle, no dump thread: the request waits for the next allocation, then is served.
    # Six idle seconds, so that a loaded machine does not end them before the tool's
    # one-second wait does (the tool and Python start first).
    d = os.path.realpath(fresh_dir("remote_idle"))
    p = start_fixture(d, preload_env("sample:0"), "--idle-ms", "6000", "--busy-ms", "60000")
    r = remote_dump(p.pid, "--age", "0", "--format", "heap", "--timeout", "1s")
    late = os.path.join(d, "leakalloc.%d.0.m0.heap" % p.pid)
    check(r.returncode == 1 and "has not answered within 1000 ms" in r.stderr and "stays pending" in r.stderr,
          "idle process: rc %d, stderr:\n%s" % (r.returncode, r.stderr))
    check(not os.path.exists(late), "an idle process without a dump thread cannot have answered yet")
    check(wait_for(late, 30), "the pending request must be served once the process allocates")
    time.sleep(0.5)  # the file is complete once it has its memory map at the end
    out = report("--top", "20", late)
    check_report_against_pprof(out, late, "remote heap served late", binary=ARGS.fixture)
    stop_fixture(p, "remote idle")

    # Lightly loaded at the default sample:19, no dump thread: one 16-byte malloc every
    # 100 ms is about an hour from the next sampled allocation, but the first malloc
    # after a tick of the coarse clock notices the request.
    d = os.path.realpath(fresh_dir("remote_trickle"))
    p = start_fixture(d, preload_env(""), "--trickle-ms", "60000")
    t0 = time.time()
    r = remote_dump(p.pid, "--age", "0", "--format", "heap", "--top", "0", "--timeout", "10s")
    took = time.time() - t0
    want = [os.path.join(d, "leakalloc.%d.0.m0.heap" % p.pid)]
    check_dump_files(r, want, "lightly loaded")
    check(took < 5, "lightly loaded: answered in %.1f s" % took)
    if r.returncode == 0:
        text = open(want[0]).read()
        check(text.startswith("heap profile:") and "\nMAPPED_LIBRARIES:\n" in text,
              "lightly loaded: not a whole .heap dump:\n" + text[:300])
    stop_fixture(p, "remote trickle")

    # Idle with a dump thread (a long interval): answered within kRemotePollMs.
    d = os.path.realpath(fresh_dir("remote_thread"))
    p = start_fixture(d, preload_env("sample:0,interval:1h"), "--idle-ms", "60000")
    t0 = time.time()
    r = remote_dump(p.pid, "--age", "0", "--format", "heap", "--top", "0")
    took = time.time() - t0
    want = [os.path.join(d, "leakalloc.%d.0.m0.heap" % p.pid)]
    check_dump_files(r, want, "dump thread")
    check(took < 10, "dump thread: answered in %.1f s" % took)
    if r.returncode == 0:
        check_report_against_pprof(report("--top", "20", want[0]), want[0], "remote heap (dump thread)",
                                   binary=ARGS.fixture)
    stop_fixture(p, "remote thread")

    # Linked with -lleakalloc instead of preloaded.
    if ARGS.linked_fixture:
        d = os.path.realpath(fresh_dir("remote_linked"))
        p = start_fixture(d, {"LEAKALLOC_CONF": "sample:0"}, "--busy-ms", "60000", binary=ARGS.linked_fixture)
        r = remote_dump(p.pid, "--age", "0", "--format", "heap", "--top", "0")
        want = [os.path.join(d, "leakalloc.%d.0.m0.heap" % p.pid)]
        check_dump_files(r, want, "linked")
        if r.returncode == 0:
            check_report_against_pprof(report("--top", "20", want[0]), want[0], "remote heap (linked)",
                                       binary=ARGS.linked_fixture)
        stop_fixture(p, "remote linked")

    # A process whose directory is a mount this tool does not see (a systemd service with
    # PrivateTmp=: the same root, other mounts on it): the files are named through
    # /proc/PID/cwd. Needs a private mount namespace, which not every machine allows.
    d = os.path.realpath(fresh_dir("remote_private_mount"))
    if run(["unshare", "--mount", "true"]).returncode != 0:
        print("remote dump from a private mount namespace: skipped (unshare --mount is not permitted here)")
    else:
        e = dict(os.environ, HOME=ARGS.work, **preload_env("sample:0"))
        p = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                              'mount -t tmpfs tmpfs "$0" && cd "$0" && exec "$1" --busy-ms 60000',
                              d, ARGS.fixture], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        inside = "/proc/%d/cwd" % p.pid
        if check(wait_for(os.path.join(inside, "fixture.ready"), 30), "fixture in a private mount never got ready"):
            check(os.listdir(d) == [], "the private mount must hide the fixture's files: %s" % os.listdir(d))
            r = remote_dump(p.pid, "--age", "0", "--format", "heap+pb", "--top", "3")
            want = [os.path.join(inside, "leakalloc.%d.0.m0%s" % (p.pid, x)) for x in (".heap", ".pb.gz")]
            check_dump_files(r, want, "private mount")
            check_dump_top(r, "private mount")
            if r.returncode == 0:
                check_report_against_pprof(report("--top", "20", want[1]), want[1], "remote pb (private mount)")
        stop_fixture(p, "remote private mount")

        # In a container of its own making: another root (a chroot into a bind of /), with
        # the executable on a tmpfs only the container sees. The library is found through
        # /proc/PID/map_files, the files through /proc/PID/cwd, and the report's symbols
        # through /proc/PID/root.
        d = os.path.realpath(fresh_dir("remote_container"))
        rootfs = os.path.join(d, "rootfs")
        app = os.path.join(d, "app")
        os.makedirs(rootfs)
        os.makedirs(app)
        script = ('mount --rbind / "$0" && mount -t tmpfs tmpfs "$0$1" && cp "$2" "$0$1/server" && '
                  'mkdir "$0$1/run" && exec chroot "$0" sh -c \'cd "$0/run" && exec "$0/server" --busy-ms 60000\' "$1"')
        p = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                              rootfs, app, ARGS.fixture], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        inside = "/proc/%d/cwd" % p.pid
        if check(wait_for(os.path.join(inside, "fixture.ready"), 30), "fixture in a container never got ready"):
            check(os.listdir(app) == [], "the container's tmpfs must hide its executable: %s" % os.listdir(app))
            r = remote_dump(p.pid, "--age", "0", "--format", "pb", "--top", "3")
            want = [os.path.join(inside, "leakalloc.%d.0.m0.pb.gz" % p.pid)]
            check_dump_files(r, want, "container")
            check("binary: %s/server" % app in r.stderr, "container: the report names the container's executable:\n" + r.stderr)
            check_dump_top(r, "container")
            check("leak_large_buffers (%s:%d)" % (os.path.join(ARGS.source, fx), expected_sites()["leak_large_buffers"][2])
                  in r.stderr, "container: the top of the report, symbolized:\n" + r.stderr)
            hint = "Full report: leakalloc report --root /proc/%d/root %s" % (p.pid, want[0])
            check(hint in r.stderr, "container: the hint must carry --root:\n" + r.stderr)
            if r.returncode == 0:
                out = report("--root", "/proc/%d/root/" % p.pid, "--top", "3", want[0])
                check("leak_large_buffers (" in out, "container: report --root must symbolize:\n" + out)
                out = report("--top", "3", want[0])
                check("leak_large_buffers (" not in out and "%s/server" % app in out,
                      "container: without --root the container's executable is not there:\n" + out)
        stop_fixture(p, "remote container")

    # Refusals: a process without leakalloc, no such process, bad arguments.
    d = os.path.realpath(fresh_dir("remote_refuse"))
    p = start_fixture(d, {}, "--idle-ms", "60000")
    r = remote_dump(p.pid)
    check(r.returncode == 1 and "does not run leakalloc" in r.stderr, "plain process: rc %d %s" % (r.returncode, r.stderr))
    stop_fixture(p, "plain process")
    # A process that ends while the tool waits (it never allocates again).
    p = start_fixture(os.path.realpath(fresh_dir("remote_exit")), preload_env("sample:0"), "--idle-ms", "1500")
    r = remote_dump(p.pid, "--timeout", "30s")
    check(r.returncode == 1 and "exited before it answered" in r.stderr, "exit while waiting: rc %d %s" % (r.returncode, r.stderr))
    stop_fixture(p, "exit while waiting")
    r = remote_dump(0x3ffffff0)
    check(r.returncode == 1 and "no process 1073741808" in r.stderr, "no such pid: rc %d %s" % (r.returncode, r.stderr))
    for args, msg in ((["--format", "svg"], "--format: expected heap"), (["--age", "soon"], "--age: bad duration"),
                      (["--top"], "--top needs a value")):
        r = run([ARGS.tool, "dump"] + args)
        check(r.returncode == 1 and msg in r.stderr, "dump %s: rc %d %s" % (args, r.returncode, r.stderr))
    r = run([ARGS.tool, "dump"])
    check(r.returncode == 1 and "which process?" in r.stderr, "dump without PID: rc %d %s" % (r.returncode, r.stderr))
    check(os.listdir(d) == ["fixture.ready"], "refusals must write nothing: %s" % os.listdir(d))


def bad_files(d):
    """name -> (path, substring the error must contain)"""
    rnd = random.Random(7)
    files = {}

    def put(name, data, expect):
        path = os.path.join(d, name)
        with open(path, "wb") as f:
            f.write(data)
        files[name] = (path, expect)

    put("empty.pb.gz", b"", "empty file")
    put("random.bin", bytes(rnd.getrandbits(8) for _ in range(4096)), "not a heap dump")
    put("garbage.pb.gz", gzip.compress(bytes(rnd.getrandbits(8) for _ in range(4096))),
        "not a valid pprof protobuf profile")
    put("text.pb.gz", gzip.compress(b"hello, this is not a profile\n" * 50), "not a valid pprof protobuf profile")
    put("jemalloc.heap", b"heap_v2/524288\n  t*: 16: 1433600 [0: 0]\n@ 0x556b3beed1a1 0x7f5f9fe4524a\n"
        b"  t*: 10: 1146880 [0: 0]\n  t0: 10: 1146880 [0: 0]\nMAPPED_LIBRARIES:\n", "jemalloc heap_v2")
    put("badheader.heap", b"heap profile: 1: 2 [1: 2] @ heap/0\n", "unsupported heap profile type")
    put("zeroperiod.heap", b"heap profile: 1: 2 [1: 2] @ heap_v2/0\n", "bad sampling period")
    put("zerocount.heap", b"heap profile: 1: 2 [1: 2] @ heapprofile\n0: 100 [0: 100] @ 0x1234\n",
        "zero blocks with nonzero bytes")
    put("hugecount.heap", b"heap profile: 1: 2 [1: 2] @ heapprofile\n1: 99999999999999999999999 [1: 1] @ 0x1\n",
        "malformed stack line")
    put("badmaps.heap", b"heap profile: 1: 2 [1: 2] @ heapprofile\n1: 2 [1: 2] @ 0x1234\nMAPPED_LIBRARIES:\n"
        b"zzzz-yyyy r-xp\n", "malformed MAPPED_LIBRARIES line")
    # Truncations of real dumps.
    src = fresh_dir("bad_src")
    conf = "sample:0,final:true,format:heap+pb,prefix:%s/fx" % src
    run([ARGS.fixture], env=preload_env(conf), check_rc=0)
    pb, heap = find(src, ".pb.gz"), find(src, ".heap")
    if pb and heap:
        data = open(pb, "rb").read()
        put("truncated.pb.gz", data[: len(data) // 2], "truncated gzip stream")
        put("truncated_inner.pb.gz", gzip.compress(gzip.decompress(data)[:-7]), "not a valid pprof protobuf profile")
        text = open(heap, "rb").read()
        second = text.index(b"\n", text.index(b"\n") + 1)  # cut inside the second stack line
        put("truncated.heap", text[: second + 12], "malformed")
    return files, pb, heap


def case_malformed():
    d = fresh_dir("malformed")
    files, pb, heap = bad_files(d)
    tools = [("release", ARGS.tool)]
    if ARGS.asan_tool and os.path.exists(ARGS.asan_tool):
        tools.append(("asan", ARGS.asan_tool))
    asan_env = {"ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0:exitcode=99",
                "UBSAN_OPTIONS": "halt_on_error=1:exitcode=99"}
    for kind, tool in tools:
        for name, (path, expect) in sorted(files.items()):
            out = os.path.join(d, "out.sym.pb.gz")
            for cmd in (["report", path], ["diff", path, path], ["symbolize", path, "-o", out]):
                p = run([tool] + cmd, env=asan_env)
                label = "%s %s %s" % (kind, cmd[0], name)
                check(p.returncode == 1, "%s: exit status %d, wanted 1; stderr %s" % (label, p.returncode, p.stderr))
                check(p.stderr.startswith("leakalloc: ") and path in p.stderr and expect in p.stderr,
                      "%s: error must name the file and say '%s', got %r" % (label, expect, p.stderr))
                check("internal error" not in p.stderr and "Sanitizer" not in p.stderr, "%s: %s" % (label, p.stderr))
        # A missing file; a directory without dumps (a directory is a series of dumps).
        p = run([tool, "report", os.path.join(d, "nope.heap")])
        check(p.returncode == 1 and "No such file" in p.stderr, "%s missing file: %s" % (kind, p.stderr))
        p = run([tool, "report", d])
        check(p.returncode == 1 and "no dumps found in " + d in p.stderr, "%s directory: %s" % (kind, p.stderr))
    # Mutations of good dumps through the ASan build: never a crash or sanitizer report.
    if len(tools) < 2 or not pb:
        return
    rnd = random.Random(11)
    raw_pb = gzip.decompress(open(pb, "rb").read())
    raw_heap = open(heap, "rb").read()
    cases = []
    for i in range(60):
        b = bytearray(raw_pb)
        for _ in range(rnd.randint(1, 8)):
            b[rnd.randrange(len(b))] = rnd.getrandbits(8)
        cases.append(("mut%d.pb.gz" % i, gzip.compress(bytes(b[: rnd.randint(1, len(b))] if i % 3 == 0 else b))))
    for i in range(30):
        b = bytearray(raw_heap)
        for _ in range(rnd.randint(1, 4)):
            b[rnd.randrange(len(b))] = rnd.choice(b"0123456789abcdefx :@[]\n#")
        cases.append(("mut%d.heap" % i, bytes(b)))
    for i, (name, data) in enumerate(cases):
        path = os.path.join(d, name)
        with open(path, "wb") as f:
            f.write(data)
        # symbolize reads with the same readers, then walks the pb again: every fifth case
        # (the suite's time; each run under ASan takes about 0.3 s, more under load).
        cmds = [["report", "--top", "3", path]]
        if i % 5 == 0:
            cmds.append(["symbolize", path, "-o", os.path.join(d, "mut.sym.pb.gz")])
        for cmd in cmds:
            p = run([ARGS.asan_tool] + cmd, env=asan_env)
            check(p.returncode in (0, 1) and "Sanitizer" not in p.stderr and "internal error" not in p.stderr,
                  "asan mutation %s %s: rc %d %s" % (cmd[0], name, p.returncode, p.stderr[-2000:]))
            if p.returncode == 1:
                check(p.stderr.startswith("leakalloc: " + path), "mutation %s %s: unclear error %r" % (cmd[0], name, p.stderr))
    # And the good files themselves under ASan, with symbolisation.
    for good in (pb, heap):
        p = run([ARGS.asan_tool, "report", good], env=asan_env)
        check(p.returncode == 0 and "leak_large_buffers (" in p.stdout, "asan good %s: %s" % (good, p.stderr))
        out = os.path.join(d, "good.sym.pb.gz")
        p = run([ARGS.asan_tool, "symbolize", good, "-o", out], env=asan_env)
        check(p.returncode == 0 and "leak_large_buffers (" in report("--top", "1", out),
              "asan symbolize good %s: %s" % (good, p.stderr))


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("case")
    for a in ("tool", "asan-tool", "lib", "fixture", "linked-fixture", "cpp-fixture", "static-fixture", "source", "work",
              "spawn-fixture",
              "rel-libdir",
              "tcmalloc",
              "build", "examples", "man"):
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
