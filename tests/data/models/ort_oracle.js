#!/usr/bin/env node
// ort_oracle.js -- runs one ONNX model in ONNX Runtime (onnxruntime-node, CPU,
// graph optimisation 'all') on inputs make_deploy7.py wrote, for the expected
// outputs of cases whose math ORT defines (quantized models, contrib ops):
//
//   node ort_oracle.js MODEL DIR
//
// DIR/spec.json: {"inputs": [{"name", "dtype", "shape"}...]}, each input's
// raw little-endian bytes in DIR/in_<i>.bin. Writes DIR/out_<i>.bin and
// DIR/out.json ({"outputs": [{"name", "dtype", "shape"}...]}) in the
// model's output order.
'use strict';
const fs = require('fs');
const path = require('path');
const ort = (() => {
  const home = process.env.MHA_PEER_HOME || path.join(require('os').homedir(), '.cache', 'mha-peer');
  try { return require(path.join(home, 'node_modules', 'onnxruntime-node')); } catch (e) { return require('onnxruntime-node'); }
})();

const ARRAYS = { float32: Float32Array, int64: BigInt64Array, int32: Int32Array, bool: Uint8Array,
  float16: Uint16Array, uint8: Uint8Array, int8: Int8Array };

async function main() {
  const [model, dir] = process.argv.slice(2);
  const spec = JSON.parse(fs.readFileSync(path.join(dir, 'spec.json')));
  const sess = await ort.InferenceSession.create(model, { graphOptimizationLevel: 'all', intraOpNumThreads: 1 });
  const feeds = {};
  spec.inputs.forEach((s, i) => {
    const buf = fs.readFileSync(path.join(dir, `in_${i}.bin`));
    const A = ARRAYS[s.dtype];
    const copy = new Uint8Array(buf.length); copy.set(buf);
    feeds[s.name] = new ort.Tensor(s.dtype, new A(copy.buffer), s.shape);
  });
  const res = await sess.run(feeds);
  const outs = [];
  sess.outputNames.forEach((n, i) => {
    const t = res[n];
    const d = t.data;
    fs.writeFileSync(path.join(dir, `out_${i}.bin`), Buffer.from(d.buffer, d.byteOffset, d.byteLength));
    outs.push({ name: n, dtype: t.type, shape: t.dims.map(Number) });
  });
  fs.writeFileSync(path.join(dir, 'out.json'), JSON.stringify({ outputs: outs }));
}
main().catch(e => { console.error(`ort_oracle: ${e.message}`); process.exit(1); });
