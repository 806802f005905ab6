#!/usr/bin/env python3
"""The floor plan, checked: a library folder includes only its own and lower layers.

Bottom to top (docs/DESIGN.md, "Floor plan"):

    base     sync, OS memory, clocks, formatting, /proc maps, scratch arena
    config   the option table and the LEAKALLOC_CONF parser
    profile  sampler, unwinding, stack table, live set, threads, snapshot, writers
    alloc    block header, thread cache, the malloc family (calls the profiler)
    ctl      the control tree and stats, the exported surface

include/leakalloc/ (the public API) may be included from anywhere. The check reads
every #include "..." of the library's sources and fails on one that points up, naming
file, line and both layers. KNOWN lists the upward includes that are still there, each
with what removes it; the check also fails when one of them is gone, so the list only
shrinks. Usage: check_layers.py SOURCE_DIR
"""
import os
import re
import sys

LAYERS = ["base", "config", "profile", "alloc", "ctl"]
PUBLIC = "leakalloc"

# (file, included header): upward includes not yet removed.
KNOWN = set()  # every upward include is gone; a new one fails

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    rank = {name: i for i, name in enumerate(LAYERS)}
    bad, seen = [], set()
    checked = 0
    for layer in LAYERS:
        folder = os.path.join(root, layer)
        if not os.path.isdir(folder):
            bad.append("missing layer folder %s/" % layer)
            continue
        for name in sorted(os.listdir(folder)):
            if not name.endswith((".h", ".cpp", ".c")):
                continue
            rel = "%s/%s" % (layer, name)
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                for lineno, line in enumerate(f, 1):
                    m = INCLUDE.match(line)
                    if not m:
                        continue
                    checked += 1
                    target = m.group(1)
                    top = target.split("/", 1)[0]
                    if top == PUBLIC or "/" not in target:
                        continue
                    if top not in rank:
                        bad.append("%s:%d includes %s, which is in no layer" % (rel, lineno, target))
                        continue
                    if rank[top] <= rank[layer]:
                        continue
                    if (rel, target) in KNOWN:
                        seen.add((rel, target))
                        continue
                    bad.append("%s:%d includes %s: %s is below %s" % (rel, lineno, target, layer, top))
    for gone in sorted(KNOWN - seen):
        bad.append("%s no longer includes %s: remove it from KNOWN" % gone)
    for b in bad:
        print("FAIL: " + b)
    print("%d includes checked, %d known upward includes left, %d failures"
          % (checked, len(seen), len(bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
