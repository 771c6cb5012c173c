#!/usr/bin/env node
// ort_bench.js -- times one ONNX model in ONNX Runtime (onnxruntime-node),
// for tools/ort_compare.sh. It feeds the inputs `mha bench --json` recorded
// (names, dtypes, shapes) so both engines run the same problem, then runs
// warm-up and timed repetitions the way mha bench does (>= 10 reps and
// >= --min-time seconds; median / p90 interpolated between order
// statistics) and prints one line:
//
//   threads=1 median_ms=0.1234 p90_ms=0.1400 min_ms=0.1100 mean_ms=0.1250 reps=812
//
// Usage: node ort_bench.js --model M.onnx --spec mha.json --threads N
//                          [--warmup N] [--min-time SEC]
// onnxruntime-node must be resolvable (ort_compare.sh sets NODE_PATH).
'use strict';

const fs = require('node:fs');

function die(msg) {
  process.stderr.write(`ort_bench.js: ${msg}\n`);
  process.exit(1);
}

function parseArgs(argv) {
  const o = { warmup: 3, minTime: 2.0, threads: 1 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (v === undefined) die(`option ${a} needs a value`);
    i++;
    if (a === '--model') o.model = v;
    else if (a === '--spec') o.spec = v;
    else if (a === '--threads') o.threads = Number(v);
    else if (a === '--warmup') o.warmup = Number(v);
    else if (a === '--min-time') o.minTime = Number(v);
    else die(`unknown option ${a}`);
  }
  if (!o.model || !o.spec) die('--model and --spec are required');
  if (!(Number.isInteger(o.threads) && o.threads >= 1)) die('--threads wants a count >= 1');
  return o;
}

// xorshift32: values only need to be ordinary numbers, not mha's exact ones
function makeRng(seed) {
  let x = (seed >>> 0) || 0x9e3779b9;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x / 4294967296;
  };
}

// One input tensor as mha bench fed it: random floats in [-1, 1), masks
// that attend everywhere, lengths that say every key is valid.
function makeInput(ort, d, spec, rng) {
  const n = d.shape.reduce((a, b) => a * b, 1);
  const skv = spec.shape.S_kv;
  switch (d.dtype) {
    case 'float32': {
      const a = new Float32Array(n);
      if (d.role !== 'attn_mask') for (let i = 0; i < n; i++) a[i] = 2 * rng() - 1;
      return new ort.Tensor('float32', a, d.shape);
    }
    case 'bool': {
      let attend = 1;
      if (d.role === 'key_padding_mask' && spec.layer.key_padding_true_means_ignore) attend = 0;
      return new ort.Tensor('bool', new Uint8Array(n).fill(attend), d.shape);
    }
    case 'int64':
      return new ort.Tensor('int64', new BigInt64Array(n).fill(BigInt(skv)), d.shape);
    case 'int32':
      return new ort.Tensor('int32', new Int32Array(n).fill(skv), d.shape);
    default:
      return die(`input '${d.name}' has dtype ${d.dtype}, which this script does not feed`);
  }
}

function percentile(sorted, p) {
  const pos = p * (sorted.length - 1);
  const lo = Math.floor(pos);
  if (lo + 1 >= sorted.length) return sorted[sorted.length - 1];
  return sorted[lo] + (sorted[lo + 1] - sorted[lo]) * (pos - lo);
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  let ort;
  try {
    ort = require('onnxruntime-node');
  } catch (e) {
    die(`cannot load onnxruntime-node (${e.message}); run tools/ort_compare.sh, which installs it`);
  }
  const spec = JSON.parse(fs.readFileSync(o.spec, 'utf8'));
  const session = await ort.InferenceSession.create(o.model, {
    intraOpNumThreads: o.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const rng = makeRng(spec.seed || 1);
  const feeds = {};
  for (const d of spec.inputs) feeds[d.name] = makeInput(ort, d, spec, rng);

  for (let i = 0; i < o.warmup; i++) await session.run(feeds);
  const ms = [];
  const start = process.hrtime.bigint();
  for (;;) {
    const t0 = process.hrtime.bigint();
    await session.run(feeds);
    const t1 = process.hrtime.bigint();
    ms.push(Number(t1 - t0) / 1e6);
    const elapsed = Number(t1 - start) / 1e9;
    if (ms.length >= 10 && elapsed >= o.minTime) break;
    if (ms.length >= 1000000) break;
  }
  ms.sort((a, b) => a - b);
  const mean = ms.reduce((a, b) => a + b, 0) / ms.length;
  const f = (v) => v.toPrecision(6);
  process.stdout.write(`threads=${o.threads} median_ms=${f(percentile(ms, 0.5))} ` +
    `p90_ms=${f(percentile(ms, 0.9))} min_ms=${f(ms[0])} mean_ms=${f(mean)} reps=${ms.length}\n`);
}

main().catch((e) => die(e && e.message ? e.message : String(e)));
