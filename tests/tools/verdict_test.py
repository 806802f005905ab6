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
    """True when this build's `leakalloc run` knows --reach (issue 26)."""
    p = run([ARGS.tool, "run", "--reach", "--quiet", "--", "/bin/true"])
    return "unknown option" not in p.stderr


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

    # A schema that is not checked is no schema: a document missing a field must fail.
    import jsonschema
    broken = json.loads(json.dumps(doc))
    del broken["stacks"][0]["verdict"]
    try:
        jsonschema.validate(broken, rs)
        check(False, "the schema accepted a stack without a verdict")
    except jsonschema.ValidationError:
        pass


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("case")
    for a in ("tool", "lib", "verdict-fixture", "source", "docs", "work"):
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
