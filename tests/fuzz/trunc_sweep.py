#!/usr/bin/python3
"""trunc_sweep.py -- a development-time sweep (not run by the build or the
tests; minutes of `mha info` start-ups): cuts an ONNX model at every field
boundary of its protobuf wire -- each tag, length prefix and payload end,
into nested messages up to 6 deep, and one byte either side -- or at every
byte offset (--every-byte), runs `mha info` on each cut and reports every
cut that does not give the rule for bad input: a non-zero exit below 128,
exactly one stderr line, nothing on stdout.

    /usr/bin/python3 tests/fuzz/trunc_sweep.py build/bin/mha \\
        tests/fuzz/seeds/onnx_model/whole_bert_l2_d4.onnx
"""
import os
import subprocess
import sys
import tempfile


def varint(buf, i):
    value, shift = 0, 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def boundaries(buf, start, end, depth, out):
    """Offsets where a field starts or ends inside buf[start:end]; payloads
    that parse as messages are entered (a string that does not is left)."""
    i = start
    while i < end:
        out.add(i)
        key, j = varint(buf, i)
        wire = key & 7
        if wire == 0:
            _, j = varint(buf, j)
        elif wire == 1:
            j += 8
        elif wire == 5:
            j += 4
        elif wire == 2:
            length, k = varint(buf, j)
            out.update((j, k))
            if depth < 6:
                inner = set()
                try:
                    boundaries(buf, k, k + length, depth + 1, inner)
                    out |= inner
                except (IndexError, ValueError):
                    pass
            j = k + length
        else:
            raise ValueError("wire type %d" % wire)
        if j > end:
            raise ValueError("past the end")
        i = j
    out.add(end)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    mha, model = sys.argv[1], sys.argv[2]
    data = open(model, "rb").read()
    if "--every-byte" in sys.argv:
        cuts = set(range(len(data)))
    else:
        found = set()
        boundaries(data, 0, len(data), 0, found)
        cuts = {c + d for c in found for d in (-1, 0, 1) if 0 <= c + d < len(data)}
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "cut.onnx")
        for cut in sorted(cuts):
            with open(path, "wb") as f:
                f.write(data[:cut])
            r = subprocess.run([mha, "info", path], capture_output=True, timeout=120)
            lines = r.stderr.decode(errors="replace").splitlines()
            if not 0 < r.returncode < 128 or len(lines) != 1 or r.stdout:
                bad += 1
                print("cut %d: exit %d, %d stderr lines: %s" % (cut, r.returncode, len(lines), lines[:2]))
    print("%s: %d cuts, %d not refused in one line" % (model, len(cuts), bad))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
