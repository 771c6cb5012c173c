"""onnx_edit.py FILE OP ARGS... -- edits a graph input's or output's
declaration in an ONNX file in place, with the Python standard library
alone (no onnx package): the tests of bad models make their contradictions
with it.

  input-type I ELEM       graph input I declares element type ELEM (6 int32)
  output-type O ELEM      graph output O declares element type ELEM
  output-twice O          graph output O declared a second time
  output-dim O AXIS N     axis AXIS of output O declared as the fixed size N
  output-drop-dim O AXIS  axis AXIS of output O left out of its declaration
  external NAME LOC D...  initializer NAME declared of dims D... and stored
                          in the file LOC beside the model (not written)
"""
import sys


def varint(b, i):
    r = s = 0
    while True:
        c = b[i]
        i += 1
        r |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return r, i


def enc(n):
    o = bytearray()
    while True:
        c, n = n & 0x7F, n >> 7
        o.append(c | 0x80 if n else c)
        if not n:
            return bytes(o)


def fields(b):
    """[field, wire type, payload] of each field of one message."""
    i, out = 0, []
    while i < len(b):
        k, i = varint(b, i)
        f, w = k >> 3, k & 7
        if w == 0:
            _, j = varint(b, i)
        elif w == 2:
            n, i = varint(b, i)
            j = i + n
        else:
            j = i + (8 if w == 1 else 4)
        out.append([f, w, b[i:j]])
        i = j
    return out


def build(fs):
    return b"".join(enc(f << 3 | w) + (enc(len(v)) if w == 2 else b"") + v for f, w, v in fs)


def edit(b, f, fn):
    """The message b with fn applied to the payload of its first field f."""
    fs = fields(b)
    for x in fs:
        if x[0] == f:
            x[2] = fn(x[2])
            return build(fs)
    raise SystemExit("onnx_edit: no field %d" % f)


def tensor_type(fn):
    """fn on a ValueInfoProto's type (2) . tensor_type (1)."""
    return lambda vi: edit(vi, 2, lambda ty: edit(ty, 1, fn))


def set_elem(elem):
    return lambda tt: build([[1, 0, enc(elem)] if x[0] == 1 else x for x in fields(tt)])


def on_dim(axis, fn):
    """fn on dim AXIS of a tensor type's shape (2): a payload, or None to drop it."""
    def shape(sh):
        out, k = [], 0
        for x in fields(sh):
            if x[0] == 1:
                if k == axis:
                    x[2] = fn(x[2])
                k += 1
            if x[2] is not None:
                out.append(x)
        return build(out)
    return lambda tt: edit(tt, 2, shape)


def main():
    path, op, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    if op == "external":
        name, loc, args = args[0].encode(), args[1].encode(), [int(a) for a in args[2:]]
    else:
        args = [int(a) for a in args]
    model = open(path, "rb").read()

    def graph(g):
        gf = fields(g)
        ins = [x for x in gf if x[0] == 11]
        outs = [x for x in gf if x[0] == 12]
        if op == "input-type":
            ins[args[0]][2] = tensor_type(set_elem(args[1]))(ins[args[0]][2])
        elif op == "output-type":
            outs[args[0]][2] = tensor_type(set_elem(args[1]))(outs[args[0]][2])
        elif op == "output-twice":
            gf.append([12, 2, outs[args[0]][2]])
        elif op == "output-dim":
            dim = build([[1, 0, enc(args[2])]])
            outs[args[0]][2] = tensor_type(on_dim(args[1], lambda d: dim))(outs[args[0]][2])
        elif op == "external":  # TensorProto: dims 1, name 8, raw_data 9, external_data 13
            for x in gf:
                if x[0] == 5 and [y for y in fields(x[2]) if y[0] == 8 and y[2] == name]:
                    kept = [y for y in fields(x[2]) if y[0] not in (1, 4, 9, 13, 14)]
                    entry = build([[1, 2, b"location"], [2, 2, loc]])
                    x[2] = build([[1, 0, enc(d)] for d in args] + kept +
                                 [[13, 2, entry], [14, 0, enc(1)]])
        elif op == "output-drop-dim":
            outs[args[0]][2] = tensor_type(on_dim(args[1], lambda d: None))(outs[args[0]][2])
        else:
            raise SystemExit("onnx_edit: unknown operation " + op)
        return build(gf)

    open(path, "wb").write(edit(model, 7, graph))


main()
