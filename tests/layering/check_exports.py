#!/usr/bin/env python3
"""`nm -D --defined-only` of the library lists exactly the names of cmake/leakalloc.map.

A name exported by mistake is a symbol another library may bind to (and an ABI we would
have to keep); a name missing is a call that goes to glibc or mimalloc instead of us.
Usage: check_exports.py LIBRARY MAPFILE
"""
import re
import subprocess
import sys


def main():
    lib, mapfile = sys.argv[1], sys.argv[2]
    text = re.sub(r"/\*.*?\*/", "", open(mapfile, encoding="utf-8").read(), flags=re.S)
    glob = text.split("global:", 1)[1].split("local:", 1)[0]
    want = {n.strip() for n in glob.replace("\n", " ").split(";") if n.strip()}
    out = subprocess.run(["nm", "-D", "--defined-only", lib], check=True,
                         capture_output=True, text=True).stdout
    have = {line.split()[-1].split("@")[0] for line in out.splitlines() if line.strip()}
    extra, missing = sorted(have - want), sorted(want - have)
    for n in extra:
        print("FAIL: exported but not in %s: %s" % (mapfile, n))
    for n in missing:
        print("FAIL: listed in %s but not exported: %s" % (mapfile, n))
    print("%d names exported, %d listed, %d extra, %d missing" % (len(have), len(want), len(extra), len(missing)))
    return 1 if extra or missing else 0


if __name__ == "__main__":
    sys.exit(main())
