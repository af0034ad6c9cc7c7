// float16 and bfloat16 (src/runtime/half.ts on the host, src/codegen/common/half-float.ts in kernels): every
// float16 bit pattern converted to float32 exactly, and float32 values (edge cases, every binade's halfway points,
// pseudo-random bit patterns) rounded to nearest even, bit for bit against ONNX Runtime's Cast (bfloat16: the
// host's rounding, onnxruntime-node has no bfloat16 tensors) on WebAssembly,
// WebGPU (SwiftShader) and the PTX simulator; then a small float16 network against ONNX Runtime.
import { describe, expect, it } from 'vitest';
import { compile, load as loadArtifact, type Tensor } from '../src/index.js';
import { halfBits, halfBitsOf, halfValue, halfValues } from '../src/runtime/half.js';
import { nodeGpuDevice } from '../src/conformance/node-webgpu.js';
import { compareTensors } from '../src/conformance/compare.js';
import { buildModel } from '../src/frontend/onnx/model-builder.js';
import { add, constant, int, load, mul, visitExpr } from '../src/tensor-expr/expr.js';
import { type Stmt, buffer, printPrimFunc, visitStmt, visitStmtExprs } from '../src/schedule/loop-ir.js';
import { runLoopPasses } from '../src/schedule/loop-passes.js';
import { TARGET_CAPS } from '../src/codegen/common/target-caps.js';
import { halfFloatPass } from '../src/codegen/common/half-float.js';
import { func, loop, named, store } from './helpers/loop-ir-builders.js';
import { kilnError } from './helpers/errors.js';
import { runOrt } from './helpers/ort.js';
import { runCudaSim } from './support/cuda-sim-runtime.js';

const seqOf = (...body: Stmt[]): Stmt => ({ k: 'seq', body });
const F16 = 10,
  BF16 = 16,
  F32 = 1;

/** float32 values that probe the rounding: specials, the binade edges of both formats, ties, random bit patterns. */
function probeValues(): Float32Array {
  const bits: number[] = [0, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0x00000001, 0x007fffff, 0x7f7fffff];
  for (let e = 100; e < 145; e++)
    for (const m of [0, 1, 0xfff, 0x1000, 0x1fff, 0x2000, 0x3000, 0x7fff, 0x8000, 0x18000, 0x7fe000, 0x7ff000])
      for (const s of [0, 0x80000000]) bits.push((s | (e << 23) | m) >>> 0);
  let x = 12345;
  for (let i = 0; i < 4096; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    bits.push(x);
  }
  return new Float32Array(new Uint32Array(bits).buffer);
}

const castModel = (from: number, to: number, n: number) =>
  buildModel({
    inputs: [['x', from === F32 ? 'float32' : from === F16 ? 'float16' : 'bfloat16', [n]]],
    outputs: [['y', to === F32 ? 'float32' : to === F16 ? 'float16' : 'bfloat16', [n]]],
    nodes: [{ op: 'Cast', inputs: ['x'], outputs: ['y'], attrs: { to } }],
  });

/** Bits equal, NaN payloads aside (a NaN must stay a NaN). */
function expectSameBits(dtype: 'float16' | 'bfloat16', got: Tensor, want: Tensor) {
  const g = halfBitsOf(got.data),
    w = halfBitsOf(want.data);
  expect(g.length).toBe(w.length);
  let bad = 0,
    first = '';
  for (let i = 0; i < w.length; i++) {
    const gn = Number.isNaN(halfValue(dtype, g[i])),
      wn = Number.isNaN(halfValue(dtype, w[i]));
    if (gn && wn) continue;
    if (g[i] !== w[i]) {
      bad++;
      first ||= `element ${i}: got 0x${g[i].toString(16)}, expected 0x${w[i].toString(16)}`;
    }
  }
  expect(first, `${bad} differ`).toBe('');
}

type Runner = (
  artifactOf: (target: 'wasm' | 'webgpu' | 'cuda') => Promise<Uint8Array>,
  feeds: Record<string, Tensor>,
) => Promise<Record<string, Tensor>>;
const RUNNERS: [string, 'wasm' | 'webgpu' | 'cuda', Runner][] = [
  ['WebAssembly', 'wasm', async (a, feeds) => (await loadArtifact(await a('wasm'))).runSync(feeds)],
  [
    'WebGPU (SwiftShader)',
    'webgpu',
    async (a, feeds) => {
      const model = await loadArtifact(await a('webgpu'), { target: 'webgpu', device: await nodeGpuDevice() });
      try {
        return await model.run(feeds);
      } finally {
        model.dispose?.();
      }
    },
  ],
  ['PTX simulator', 'cuda', async (a, feeds) => (await runCudaSim(await a('cuda'), feeds)).outputs],
];
const artifacts = (bytes: Uint8Array) => async (target: 'wasm' | 'webgpu' | 'cuda') =>
  (await compile(bytes, target === 'cuda' ? { target, sm: 86, optimize: false } : { target })).artifact;

describe('half floats on the host', () => {
  it('every float16 and bfloat16 bit pattern decodes and encodes back to itself (NaNs stay NaN)', () => {
    for (const t of ['float16', 'bfloat16'] as const)
      for (let b = 0; b < 0x10000; b++) {
        const v = halfValue(t, b);
        if (Number.isNaN(v)) expect(Number.isNaN(halfValue(t, halfBits(t, v)))).toBe(true);
        else expect(halfBits(t, v)).toBe(b);
      }
  });

  it('rounds to nearest even at the edges of float16', () => {
    expect(halfBits('float16', 65504)).toBe(0x7bff);
    expect(halfBits('float16', 65519.99)).toBe(0x7bff);
    expect(halfBits('float16', 65520)).toBe(0x7c00); // the tie above the largest finite value: infinity
    expect(halfBits('float16', 2 ** -25)).toBe(0); // half the smallest subnormal: to even, zero
    expect(halfBits('float16', 3 * 2 ** -25)).toBe(2); // 1.5 subnormal quanta: to even, 2
    expect(halfBits('float16', -0)).toBe(0x8000);
    expect(halfBits('float16', 1 + 2 ** -11)).toBe(0x3c00); // a tie at 1: down to even
    expect(halfBits('float16', 1 + 3 * 2 ** -11)).toBe(0x3c02); // a tie at 1 + ulp: up to even
    expect(halfBits('bfloat16', 1 + 2 ** -8)).toBe(0x3f80);
    expect(halfBits('bfloat16', 3.4e38)).toBe(0x7f80); // beyond bfloat16's largest finite value after rounding
  });
});

describe('half floats in kernels: Cast against ONNX Runtime, bit for bit', () => {
  const probes = probeValues();
  const n16 = 0x10000;
  const allHalf = (dtype: 'float16' | 'bfloat16'): Tensor => {
    const data = new Uint16Array(n16);
    for (let i = 0; i < n16; i++) data[i] = i;
    return { dtype, shape: [n16], data };
  };
  for (const [name, target, run] of RUNNERS) {
    it(`${name}: float32 -> float16 / bfloat16 rounds as ORT does`, async () => {
      const x: Tensor = { dtype: 'float32', shape: [probes.length], data: probes };
      for (const [code, dtype] of [
        [F16, 'float16'],
        [BF16, 'bfloat16'],
      ] as const) {
        const bytes = castModel(F32, code, probes.length);
        const got = (await run(artifacts(bytes), { x })).y;
        // onnxruntime-node has no bfloat16 inputs or outputs: there the host's rounding from float64 is the reference
        const want =
          dtype === 'float16'
            ? halfBitsOf((await runOrt(bytes, { x })).y.data)
            : Uint16Array.from(probes, (v) => halfBits(dtype, v));
        expect(got.dtype).toBe(dtype);
        expectSameBits(dtype, got, { dtype, shape: [probes.length], data: want });
      }
    }, 60_000);

    it(`${name}: every float16 and bfloat16 value -> float32 exactly`, async () => {
      for (const [code, dtype] of [
        [F16, 'float16'],
        [BF16, 'bfloat16'],
      ] as const) {
        const x = allHalf(dtype);
        const got = (await run(artifacts(castModel(code, F32, n16)), { x })).y.data as Float32Array;
        const want = halfValues(dtype, x.data);
        let first = '';
        for (let i = 0; i < n16 && !first; i++)
          if (!Object.is(got[i], want[i]) && !(Number.isNaN(got[i]) && Number.isNaN(want[i])))
            first = `0x${i.toString(16)}: got ${got[i]}, expected ${want[i]}`;
        expect(first, `${dtype} on ${target}`).toBe('');
      }
    }, 60_000);
  }
});

// The float8 family (issue 16): stored as 8 bits, computed in float32; no ONNX Runtime reference in Node (its tensors
// have no float8), so the host's rounding from float64 (runtime/half.ts) is the reference, itself checked against
// ONNX's expected outputs by the node suite's Cast / CastLike / QuantizeLinear / DequantizeLinear cases.
const FLOAT8 = [
  ['float8e4m3fn', 17],
  ['float8e4m3fnuz', 18],
  ['float8e5m2', 19],
  ['float8e5m2fnuz', 20],
] as const;

describe('float8 on the host', () => {
  it('every float8 bit pattern decodes and encodes back to itself; NaN and overflow as each format spells them', () => {
    for (const [t] of FLOAT8)
      for (let b = 0; b < 256; b++) {
        const v = halfValue(t, b);
        if (Number.isNaN(v)) expect(Number.isNaN(halfValue(t, halfBits(t, v))), `${t} 0x${b.toString(16)}`).toBe(true);
        else if (!(t.endsWith('fnuz') && b === 0x80)) expect(halfBits(t, v), `${t} 0x${b.toString(16)}`).toBe(b);
      }
    expect(halfValue('float8e4m3fn', 0x7e)).toBe(448);
    expect(halfValue('float8e4m3fnuz', 0x7f)).toBe(240);
    expect(halfValue('float8e5m2', 0x7b)).toBe(57344);
    expect(halfValue('float8e5m2fnuz', 0x7f)).toBe(57344);
    expect(halfBits('float8e4m3fn', 1000)).toBe(0x7f); // no infinity: NaN
    expect(halfBits('float8e4m3fn', 1000, true)).toBe(0x7e); // saturated: the largest finite value
    expect(halfBits('float8e4m3fn', -Infinity, true)).toBe(0xfe);
    expect(halfBits('float8e5m2', 1e6)).toBe(0x7c); // infinity
    expect(halfBits('float8e4m3fnuz', -0)).toBe(0); // no negative zero
    expect(halfBits('float8e4m3fnuz', Number.NaN)).toBe(0x80);
    expect(halfBits('float8e4m3fn', 464)).toBe(0x7e); // a tie between 448 and 480 (NaN's pattern): to even
  });
});

describe('float8 in kernels: Cast, bit for bit', () => {
  const probes = probeValues();
  const model = (from: number, to: number, n: number, saturate?: number) =>
    buildModel({
      inputs: [['x', from === F32 ? 'float32' : FLOAT8.find((f) => f[1] === from)![0], [n]]],
      outputs: [['y', to === F32 ? 'float32' : FLOAT8.find((f) => f[1] === to)![0], [n]]],
      nodes: [
        { op: 'Cast', inputs: ['x'], outputs: ['y'], attrs: { to, ...(saturate === undefined ? {} : { saturate }) } },
      ],
      opset: 19,
    });
  for (const [name, target, run] of RUNNERS) {
    it(`${name}: float32 -> float8 rounds to nearest even, saturating or not; every float8 -> float32 exactly`, async () => {
      const x: Tensor = { dtype: 'float32', shape: [probes.length], data: probes };
      for (const [t, code] of FLOAT8) {
        for (const saturate of [1, 0]) {
          const got = (await run(artifacts(model(F32, code, probes.length, saturate)), { x })).y;
          expect(got.dtype).toBe(t);
          const g = got.data as Uint8Array;
          let first = '';
          for (let i = 0; i < probes.length && !first; i++) {
            const want = halfBits(t, probes[i], saturate === 1);
            const bothNaN = Number.isNaN(halfValue(t, g[i])) && Number.isNaN(halfValue(t, want));
            if (g[i] !== want && !bothNaN)
              first = `${probes[i]}: got 0x${g[i].toString(16)}, expected 0x${want.toString(16)}`;
          }
          expect(first, `${t} saturate=${saturate} on ${target}`).toBe('');
        }
        const all: Tensor = { dtype: t, shape: [256], data: Uint8Array.from({ length: 256 }, (_, i) => i) };
        const back = (await run(artifacts(model(code, F32, 256)), { x: all })).y.data as Float32Array;
        for (let b = 0; b < 256; b++) {
          const want = halfValue(t, b);
          if (!(Number.isNaN(back[b]) && Number.isNaN(want))) expect(back[b], `${t} 0x${b.toString(16)}`).toBe(want);
        }
      }
    }, 120_000);
  }
});

describe('half floats: a float16 network against ONNX Runtime', () => {
  // y = Relu(MatMul(x, w) + b) * x0 in float16 (Gemm-like: a reduction whose accumulator is float16 in the graph)
  const w = { dtype: 'float16', shape: [8, 4], data: halfData(32, 3) } as Tensor;
  const b = { dtype: 'float16', shape: [4], data: halfData(4, 5) } as Tensor;
  const bytes = buildModel({
    inputs: [['x', 'float16', [2, 8]]],
    outputs: [['y', 'float16', [2, 4]]],
    initializers: { w, b },
    nodes: [
      { op: 'MatMul', inputs: ['x', 'w'], outputs: ['m'] },
      { op: 'Add', inputs: ['m', 'b'], outputs: ['a'] },
      { op: 'Relu', inputs: ['a'], outputs: ['r'] },
      { op: 'Sigmoid', inputs: ['r'], outputs: ['y'] },
    ],
  });
  const x = { dtype: 'float16', shape: [2, 8], data: halfData(16, 7) } as Tensor;
  for (const [name, , run] of RUNNERS)
    it(name, async () => {
      const got = (await run(artifacts(bytes), { x })).y;
      const want = (await runOrt(bytes, { x })).y;
      expect(compareTensors(got, { ...want, data: halfBitsOf(want.data) })?.message).toBeUndefined();
    }, 60_000);

  it('the pass leaves no 16-bit float in the loop IR: float16 buffers become uint16 bits, locals float32', () => {
    const i = named('i');
    const a = buffer('a', 'float16', 4),
      y = buffer('y', 'float16', 4),
      acc = { ...buffer('acc', 'float16', 1), scope: 'local' as const };
    const body: Stmt = {
      k: 'alloc',
      buf: acc,
      body: loop(
        i,
        4,
        seqOf(
          store(acc, int(0), add(load(acc, [int(0)]), load(a, [i]))),
          store(y, i, mul(load(acc, [int(0)]), constant(0.1, 'float16'))),
        ),
      ),
    };
    for (const caps of [TARGET_CAPS.wasm, TARGET_CAPS.webgpu, TARGET_CAPS.cuda]) {
      const f = runLoopPasses(func(body, [a], [y]), [halfFloatPass(caps)], { input: 'before', check: {} });
      const dtypes = new Set<string>([...f.inputs, ...f.outputs].map((b) => b.dtype));
      visitStmt(f.body, (s) => {
        if (s.k === 'alloc' || s.k === 'store') dtypes.add(s.buf.dtype);
        if (s.k === 'decl') dtypes.add(s.v.dtype);
      });
      visitStmtExprs(f.body, (e) => visitExpr(e, (x) => dtypes.add(x.dtype)));
      expect([...dtypes].filter((t) => t === 'float16' || t === 'bfloat16')).toEqual([]);
      expect(f.inputs[0].dtype).toBe('uint16');
      const printed = printPrimFunc(f);
      expect(printed).toContain('acc: float32'); // the register accumulator computes in float32
      expect(printed).toContain('bitcast'); // the conversions are in the IR, printable
      expect(printed).toContain('0.0999755859375:float32'); // the constant rounded to float16 first
    }
  });

  it('a float16 feed of the wrong kind is E_INPUT', async () => {
    const model = await loadArtifact((await compile(bytes)).artifact);
    const e = await kilnError(() =>
      model.runSync({ x: { dtype: 'float16', shape: [2, 8], data: new Float32Array(16) } }),
    );
    expect(e.code).toBe('E_INPUT');
  });
});

/** Pseudo-random float16 data in [-1, 1) as bits. */
function halfData(n: number, seed: number): Uint16Array {
  let x = seed;
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out[i] = halfBits('float16', x / 2 ** 31 - 1);
  }
  return out;
}
