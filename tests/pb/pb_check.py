"""An independent reader for leakalloc's .pb.gz dumps: decodes the protobuf wire format
by hand (no protobuf package needed) and checks the invariants of profile.proto that
Go's reader does not all enforce. Used by run_pb_test.py."""
import gzip
import re


def _varint(buf, i):
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long at %d" % i)


def fields(buf):
    """Yields (field number, wire type, value) of one message."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        f, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i)
        elif wt == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise ValueError("field %d runs past the message end" % f)
            v, i = buf[i:i + n], i + n
        elif wt == 1:
            v, i = int.from_bytes(buf[i:i + 8], "little"), i + 8
        elif wt == 5:
            v, i = int.from_bytes(buf[i:i + 4], "little"), i + 4
        else:
            raise ValueError("wire type %d" % wt)
        yield f, wt, v


def _ints(wt, v):
    if wt == 0:
        return [v]
    out, i = [], 0
    while i < len(v):
        x, i = _varint(v, i)
        out.append(x)
    return out


def _msg(buf, repeated=()):
    m = {}
    for f, wt, v in fields(buf):
        if f in repeated:
            m.setdefault(f, []).extend(_ints(wt, v))
        else:
            m[f] = v
    return m


def decode(path):
    with open(path, "rb") as fh:
        raw = gzip.decompress(fh.read())
    p = {"sample_type": [], "sample": [], "mapping": [], "location": [], "strings": [], "comment": []}
    for f, wt, v in fields(raw):
        if f == 1:
            p["sample_type"].append(_msg(v))
        elif f == 2:
            s = {"location_id": [], "value": [], "label": []}
            for sf, swt, sv in fields(v):
                if sf == 1:
                    s["location_id"] += _ints(swt, sv)
                elif sf == 2:
                    s["value"] += [x - (1 << 64) if x >= 1 << 63 else x for x in _ints(swt, sv)]
                elif sf == 3:
                    s["label"].append(_msg(sv))
            p["sample"].append(s)
        elif f == 3:
            p["mapping"].append(_msg(v))
        elif f == 4:
            p["location"].append(_msg(v))
        elif f == 6:
            p["strings"].append(v.decode("utf-8"))
        elif f == 7:
            p["drop_frames"] = v
        elif f == 9:
            p["time_nanos"] = v
        elif f == 11:
            p["period_type"] = _msg(v)
        elif f == 12:
            p["period"] = v
        elif f == 13:
            p["comment"].append(v)
        elif f == 14:
            p["default_sample_type"] = v
    return p


def check(path, period=None):
    """Returns (profile, list of problems)."""
    bad = []
    p = decode(path)
    st = p["strings"]

    def s(i):
        if i >= len(st):
            bad.append("string index %d out of range (%d strings)" % (i, len(st)))
            return None
        return st[i]

    if not st or st[0] != "":
        bad.append("string_table[0] is not empty")
    if len(set(st)) != len(st):
        bad.append("duplicate strings in the table")
    types = [(s(t.get(1, 0)), s(t.get(2, 0))) for t in p["sample_type"]]
    if types != [("alloc_objects", "count"), ("alloc_space", "bytes"), ("inuse_objects", "count"),
                 ("inuse_space", "bytes"), ("freed_objects", "count")]:
        bad.append("sample types %s" % types)
    if s(p.get("default_sample_type", 0)) != "inuse_space":
        bad.append("default_sample_type is not inuse_space")
    pt = p.get("period_type", {})
    if (s(pt.get(1, 0)), s(pt.get(2, 0))) != ("space", "bytes"):
        bad.append("period_type is not space/bytes")
    if period is not None and p.get("period", 0) != period:
        bad.append("period %s != %d" % (p.get("period"), period))
    if not p.get("time_nanos"):
        bad.append("no time_nanos")
    try:
        re.compile("^(" + s(p.get("drop_frames", 0)) + ")$")
    except (re.error, TypeError) as e:
        bad.append("drop_frames is not a regex: %s" % e)
    for c in p["comment"]:
        s(c)

    mids = [m.get(1, 0) for m in p["mapping"]]
    if not mids or mids[0] != 1:
        bad.append("the first mapping is not id 1")
    if 0 in mids or len(set(mids)) != len(mids):
        bad.append("mapping ids not unique and nonzero: %s" % mids)
    for m in p["mapping"]:
        s(m.get(5, 0))
        s(m.get(6, 0))
        if m.get(3, 0) <= m.get(2, 0):
            bad.append("mapping %d has limit <= start" % m.get(1, 0))
    locs = {}
    for l in p["location"]:
        lid = l.get(1, 0)
        if lid == 0 or lid in locs:
            bad.append("location id %d zero or repeated" % lid)
        locs[lid] = l
        if l.get(2, 0) not in set(mids) | {0}:
            bad.append("location %d names unknown mapping %d" % (lid, l.get(2, 0)))
        m = next((m for m in p["mapping"] if m.get(1) == l.get(2)), None)
        if m is not None and not (m.get(2, 0) <= l.get(3, 0) < m.get(3, 0)):
            bad.append("location %d address outside its mapping" % lid)
    addrs = [l.get(3, 0) for l in p["location"]]
    if len(set(addrs)) != len(addrs):
        bad.append("two locations share an address")
    for n, smp in enumerate(p["sample"]):
        if len(smp["value"]) != len(types):
            bad.append("sample %d has %d values" % (n, len(smp["value"])))
        if any(v < 0 for v in smp["value"]):
            bad.append("sample %d has a negative value" % n)
        for lid in smp["location_id"]:
            if lid not in locs:
                bad.append("sample %d names unknown location %d" % (n, lid))
        for lab in smp["label"]:
            key = s(lab.get(1, 0))
            if key in ("age", "bytes", "thread_id", "lifetime"):
                if 2 in lab:
                    bad.append("numeric label %s has a string value" % key)
                if key == "lifetime" and (s(lab.get(4, 0)) != "ms" or smp["value"][:4] != [0, 0, 0, 0] or
                                          len(smp["value"]) < 5 or smp["value"][4] <= 0):
                    bad.append("sample %d: a lifetime sample has unit ms and only freed_objects" % n)
            elif key == "thread":
                if not s(lab.get(2, 0)):
                    bad.append("empty thread label")
            else:
                bad.append("unexpected label key %r" % key)
        if len(bad) > 20:
            break
    return p, bad


def label(p, smp, key):
    for lab in smp["label"]:
        if p["strings"][lab.get(1, 0)] == key:
            return p["strings"][lab[2]] if 2 in lab else lab.get(3, 0)
    return None
