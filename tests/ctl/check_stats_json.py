#!/usr/bin/env python3
"""Checks that malloc_stats_print(..., "J") is valid JSON with every option, stats field
and leak total, typed as the control tree types them.

    check_stats_json.py CTL_TREE_TEST OPTIONS_H STATS_H
"""
import json
import os
import re
import subprocess
import sys
import tempfile

prog, options_h, stats_h = sys.argv[1:4]
env = dict(os.environ, LEAKALLOC_CONF="sample:0,prefix:we\"ird\\pre\tfix,age:90s")
# age implies a dump at exit: let it land in a scratch directory.
with tempfile.TemporaryDirectory() as cwd:
    out = subprocess.run([prog, "--print-stats", "J"], env=env, cwd=cwd, check=True,
                         capture_output=True, text=True).stdout
doc = json.loads(out)
la = doc["leakalloc"]
fail = []

keys = re.findall(r"^\s*X\((\w+),\s*OptType::(\w+)", open(options_h).read(), re.M)
if len(keys) < 10:
    fail.append("could not read the option keys from %s" % options_h)
for key, kind in keys:
    if key not in la["opt"]:
        fail.append("opt.%s missing" % key)
        continue
    v = la["opt"][key]
    want = {"kBool": bool, "kString": str, "kFormat": str, "kUnwind": str}.get(kind, int)
    if type(v) is not want:
        fail.append("opt.%s is %r, expected a %s" % (key, v, want.__name__))
if set(la["opt"]) != {k for k, _ in keys}:
    fail.append("opt has extra keys: %s" % sorted(set(la["opt"]) - {k for k, _ in keys}))

stats = re.findall(r"^\s*X\((\w+),\s*(size_t|uint64_t),", open(stats_h).read(), re.M)
if len(stats) < 10:
    fail.append("could not read the stats fields from %s" % stats_h)
for name, _ in stats:
    v = la["stats"].get(name)
    if type(v) is not int or v < 0:
        fail.append("stats.%s is %r" % (name, v))
if set(la["stats"]) != {n for n, _ in stats}:
    fail.append("stats keys differ: %s" % sorted(la["stats"]))

if la["opt"]["prefix"] != 'we"ird\\pre\tfix':
    fail.append("prefix not escaped faithfully: %r" % la["opt"]["prefix"])
if la["opt"]["age"] != 90000 or la["prof"]["age"] != 90000 or la["opt"]["interval"] != 90000:
    fail.append("age/interval: %r %r" % (la["opt"], la["prof"]))
if la["prof"]["lg_sample"] != 0 or la["prof"]["active"] is not True:
    fail.append("prof: %r" % la["prof"])
if not (isinstance(la["version"], str) and isinstance(la["epoch"], int) and la["epoch"] >= 1):
    fail.append("version/epoch: %r %r" % (la["version"], la["epoch"]))
for k in ("count", "bytes"):
    if type(la["leak"].get(k)) is not int:
        fail.append("leak.%s is %r" % (k, la["leak"].get(k)))
s = la["stats"]
if not (s["allocated"] > 0 and s["active"] == s["allocated"] + s["header_bytes"]
        and s["header_bytes"] == 16 * s["live_blocks"] and s["active"] <= s["mapped"]):
    fail.append("inconsistent stats: %r" % s)

if fail:
    print("\n".join(fail))
    print(out)
    sys.exit(1)
print("stats JSON ok: %d options, %d stats" % (len(la["opt"]), len(la["stats"])))
