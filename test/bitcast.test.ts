// BitCast (opset 26) between float and integer types of one width, beyond the node suite's cases: the special
// values (signed zeros, infinities, NaN, subnormals, the extremes), fused with arithmetic before and after it, and
// folded at compile time from an initializer; on WebAssembly, on WebGPU (32-bit types: WGSL has no 64-bit ones)
// and on the PTX simulator, against ONNX Runtime.
import { describe, expect, it } from 'vitest';
import { compile, load, type Tensor } from '../src/index.js';
import { type ModelSpec, buildModel } from '../src/frontend/onnx/model-builder.js';
import { compareTensors } from '../src/conformance/compare.js';
import { nodeGpuDevice } from '../src/conformance/node-webgpu.js';
import { runOrt } from './helpers/ort.js';
import { runCudaSim } from './support/cuda-sim-runtime.js';

const SPECIAL = [0, -0, 1, -1.5, Infinity, -Infinity, Number.NaN, 1e-40, -3e-39, 3.4e38, -1.17549435e-38, 0.1];
const f32: Tensor = { dtype: 'float32', shape: [SPECIAL.length], data: Float32Array.from(SPECIAL) };
const bits32 = new Int32Array(f32.data.buffer.slice(0));
// integers whose bits are every class of float: NaNs with payloads, subnormals, the largest finite values
const i32: Tensor = {
  dtype: 'int32',
  shape: [8],
  data: Int32Array.of(0x7fc00001, -1, 1, 0x7f7fffff, -0x80000000, 0x3f800000, 0x00000005, 123456789),
};
const f64: Tensor = { dtype: 'float64', shape: [SPECIAL.length], data: Float64Array.from(SPECIAL) };
const i64: Tensor = {
  dtype: 'int64',
  shape: [5],
  data: BigInt64Array.of(0x7ff8000000000001n, -1n, 1n, 0x3ff0000000000000n, -0x8000000000000000n),
};

const TO = { float32: 1, int32: 6, uint32: 12, float64: 11, int64: 7, uint64: 13 } as const;

/** 32-bit: f32 -> int32, (f32 + f32) -> uint32, int32 -> f32 then * 2, and an initializer's bits folded into an add. */
const spec32: ModelSpec = {
  opset: 26,
  inputs: [
    ['x', 'float32', f32.shape],
    ['i', 'int32', i32.shape],
  ],
  outputs: [
    ['a', 'int32', f32.shape],
    ['b', 'uint32', f32.shape],
    ['c', 'float32', i32.shape],
    ['d', 'int32', i32.shape],
  ],
  initializers: {
    two: { dtype: 'float32', shape: [], data: Float32Array.of(2) },
    k: { dtype: 'float32', shape: [8], data: Float32Array.of(1, -2, 0.5, -0, 7, 1e-39, 3, -4) },
  },
  nodes: [
    { op: 'BitCast', inputs: ['x'], outputs: ['a'], attrs: { to: TO.int32 } },
    { op: 'Add', inputs: ['x', 'x'], outputs: ['xx'] },
    { op: 'BitCast', inputs: ['xx'], outputs: ['b'], attrs: { to: TO.uint32 } },
    { op: 'BitCast', inputs: ['i'], outputs: ['fi'], attrs: { to: TO.float32 } },
    { op: 'Mul', inputs: ['fi', 'two'], outputs: ['c'] },
    { op: 'BitCast', inputs: ['k'], outputs: ['kb'], attrs: { to: TO.int32 } },
    { op: 'Add', inputs: ['kb', 'i'], outputs: ['d'] },
  ],
};
const feeds32 = { x: f32, i: i32 };

/** 64-bit: f64 -> int64 and uint64, int64 -> f64. */
const spec64: ModelSpec = {
  opset: 26,
  inputs: [
    ['x', 'float64', f64.shape],
    ['i', 'int64', i64.shape],
  ],
  outputs: [
    ['a', 'int64', f64.shape],
    ['b', 'uint64', f64.shape],
    ['c', 'float64', i64.shape],
  ],
  nodes: [
    { op: 'BitCast', inputs: ['x'], outputs: ['a'], attrs: { to: TO.int64 } },
    { op: 'BitCast', inputs: ['x'], outputs: ['b'], attrs: { to: TO.uint64 } },
    { op: 'BitCast', inputs: ['i'], outputs: ['c'], attrs: { to: TO.float64 } },
  ],
};
const feeds64 = { x: f64, i: i64 };

async function expectOrt(bytes: Uint8Array, feeds: Record<string, Tensor>, got: Record<string, Tensor>) {
  const want = await runOrt(bytes, feeds);
  for (const [name, w] of Object.entries(want)) {
    expect(got[name].dtype, name).toBe(w.dtype);
    expect(compareTensors(got[name], w, { rtol: 0, atol: 0 })?.message, name).toBeUndefined();
  }
  return want;
}

describe('BitCast matches ONNX Runtime', () => {
  it('on WebAssembly: 32-bit and 64-bit, fused and folded', async () => {
    for (const [spec, feeds] of [
      [spec32, feeds32],
      [spec64, feeds64],
    ] as const) {
      const bytes = buildModel(spec);
      const m = await load((await compile(bytes)).artifact);
      const got = m.runSync(feeds);
      m.dispose();
      const want = await expectOrt(bytes, feeds, got);
      if (spec === spec32) expect(Array.from(want.a.data as Int32Array)).toEqual(Array.from(bits32));
    }
  });

  it('on WebGPU: 32-bit, fused and folded', async () => {
    // WGSL lets arithmetic flush subnormals to zero (SwiftShader does): x + x and i's floats * 2 get normal values
    const x = {
      ...f32,
      data: (f32.data as Float32Array).map((v) => (v !== 0 && Math.abs(v) < 1.2e-38 ? v * 1e10 : v)),
    };
    const subnormal = (b: number) => (b & 0x7f800000) === 0 && (b & 0x7fffff) !== 0;
    const i = { ...i32, data: (i32.data as Int32Array).map((b) => (subnormal(b) ? b | 0x00800000 : b)) };
    const feeds = { x, i };
    const bytes = buildModel(spec32);
    const m = await load((await compile(bytes, { target: 'webgpu' })).artifact, {
      target: 'webgpu',
      device: await nodeGpuDevice(),
    });
    try {
      await expectOrt(bytes, feeds, await m.run(feeds));
    } finally {
      m.dispose?.();
    }
  });

  it('on the PTX simulator: 32-bit and 64-bit', async () => {
    for (const [spec, feeds] of [
      [spec32, feeds32],
      [spec64, feeds64],
    ] as const) {
      const bytes = buildModel(spec);
      const c = await compile(bytes, { target: 'cuda', sm: 86 });
      expect(c.header.cuda!.ptx).toMatch(/mov\.b(32|64) %(r|rd)\d+, %fd?\d+/);
      await expectOrt(bytes, feeds, (await runCudaSim(c.artifact, feeds)).outputs);
    }
  });
});
