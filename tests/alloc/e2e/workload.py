# A dict- and JSON-heavy workload: many small objects born and freed, some big ones,
# everything deterministic (PYTHONHASHSEED is fixed by the driver) so the output can be
# compared byte for byte with and without leakalloc.
import hashlib
import json
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 40000

records = []
for i in range(n):
    records.append({
        "id": i,
        "name": "user-%06d" % (i * 7919 % n),
        "tags": ["t%d" % (i % k) for k in (3, 5, 7)],
        "score": (i * 2654435761) % 1000003 / 7.0,
        "nested": {"a": [i, i * i, str(i)], "b": {"x": i % 11, "y": None}},
    })

text = json.dumps(records, sort_keys=True)
back = json.loads(text)
assert back == records

index = {}
for r in back:
    index.setdefault(r["name"][-2:], []).append(r["id"])
counts = {k: len(v) for k, v in index.items()}

words = {}
for r in back:
    for t in r["tags"]:
        words[t] = words.get(t, 0) + 1
for i in range(0, n, 3):
    del back[i]["nested"]
big = [bytearray(100000 + i) for i in range(50)]

print("records", len(records))
print("json bytes", len(text))
print("json sha256", hashlib.sha256(text.encode()).hexdigest())
print("buckets", len(counts), "max", max(counts.values()), "min", min(counts.values()))
print("tags", sorted(words.items())[:10])
print("big", sum(len(b) for b in big))
print("pretty", hashlib.sha256(json.dumps(back[:500], indent=2).encode()).hexdigest())
