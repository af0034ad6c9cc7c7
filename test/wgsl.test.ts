// WGSL codegen on the device (Dawn + SwiftShader): emulated 64-bit integers, and shaders shared across shapes
// through uniforms. Outputs are compared with ONNX Runtime.
import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { compile, load, printWebGpuSection, type Tensor } from '../src/index.js';
import { nodeGpuDevice } from '../src/conformance/node-webgpu.js';
import { compareTensors } from '../src/conformance/compare.js';
import { buildModel, randomF32, type ModelSpec } from '../src/frontend/onnx/model-builder.js';
import type { GpuDevice } from '../src/runtime/webgpu.js';
import { printPrimFunc } from '../src/schedule/loop-ir.js';
import { runOrt } from './helpers/ort.js';

/** The device behind a fresh pipeline cache (the runtime caches per device object), counting pipelines made. */
function countingDevice(dev: GpuDevice): { device: GpuDevice; pipelines: () => number } {
  let n = 0;
  const device: GpuDevice = {
    get limits() {
      return dev.limits;
    },
    queue: dev.queue,
    createBuffer: (d) => dev.createBuffer(d),
    createShaderModule: (d) => dev.createShaderModule(d),
    createComputePipelineAsync: (d) => {
      n++;
      return dev.createComputePipelineAsync(d);
    },
    createBindGroup: (d) => dev.createBindGroup(d),
    createCommandEncoder: () => dev.createCommandEncoder(),
    pushErrorScope: (f) => dev.pushErrorScope(f),
    popErrorScope: () => dev.popErrorScope(),
  };
  return { device, pipelines: () => n };
}

async function runGpu(bytes: Uint8Array, feeds: Record<string, Tensor>, device?: GpuDevice) {
  const { artifact, header } = await compile(bytes, { target: 'webgpu' });
  const model = await load(artifact, { target: 'webgpu', device: device ?? (await nodeGpuDevice()) });
  try {
    return { got: await model.run(feeds), header };
  } finally {
    model.dispose?.();
  }
}

function expectMatch(got: Record<string, Tensor>, want: Record<string, Tensor>) {
  for (const [name, w] of Object.entries(want)) expect(compareTensors(got[name], w)?.message, name).toBeUndefined();
}

const i64 = (xs: bigint[]): Tensor => ({ dtype: 'int64', shape: [xs.length], data: BigInt64Array.from(xs) });

describe('WGSL: 64-bit integers as pairs of u32 words', () => {
  // beyond 32 bits, negative, and the int64 extremes where the ops below cannot overflow
  const A = [
    0n,
    1n,
    -1n,
    7n,
    -7n,
    2147483647n,
    -2147483648n,
    4294967296n,
    -4294967297n,
    3000000000n,
    -123456789012n,
    9007199254740993n,
    -9223372036854775808n,
    9223372036854775807n,
    65536n,
    -3n,
  ];
  const B = [3n, -2n, 5n, -3n, 2n, 4294967295n, 3n, -65536n, 7n, -2999999999n, 1000n, -4096n, 1n, -1n, 65536n, 10n];

  it('computes int64 arithmetic, comparisons, reductions and casts exactly (ONNX Runtime as reference)', async () => {
    const n = A.length;
    const bin = ['Add', 'Sub', 'Div', 'Min', 'Max'];
    const spec: ModelSpec = {
      inputs: [
        ['a', 'int64', [n]],
        ['b', 'int64', [n]],
        ['f', 'float32', [n]],
      ],
      outputs: [
        ...bin.map((op): [string, 'int64', number[]] => [op.toLowerCase(), 'int64', [n]]),
        ['mul', 'int64', [8]],
        ['mod', 'int64', [n]],
        ['gt', 'bool', [n]],
        ['eq', 'bool', [n]],
        ['neg', 'int64', [n]],
        ['abs', 'int64', [n]],
        ['tof', 'float32', [n]],
        ['fromf', 'int64', [n]],
        ['sum', 'int64', [1]],
        ['argmax', 'int64', [1]],
      ],
      nodes: [
        ...bin.map((op) => ({ op, inputs: ['a', 'b'], outputs: [op.toLowerCase()] })),
        // products of values within 2^31 of zero: no overflow, which ONNX leaves undefined
        { op: 'Slice', inputs: ['a', 's0', 's8'], outputs: ['a8'] },
        { op: 'Slice', inputs: ['b', 's0', 's8'], outputs: ['b8'] },
        { op: 'Mul', inputs: ['a8', 'b8'], outputs: ['mul'] },
        { op: 'Mod', inputs: ['a', 'b'], outputs: ['mod'] }, // fmod=0: the sign of the divisor
        { op: 'Greater', inputs: ['a', 'b'], outputs: ['gt'] },
        { op: 'Equal', inputs: ['a', 'b'], outputs: ['eq'] },
        { op: 'Neg', inputs: ['b'], outputs: ['neg'] },
        { op: 'Abs', inputs: ['b'], outputs: ['abs'] },
        { op: 'Cast', inputs: ['a'], outputs: ['tof'], attrs: { to: 1 } },
        { op: 'Cast', inputs: ['f'], outputs: ['fromf'], attrs: { to: 7 } },
        { op: 'ReduceSum', inputs: ['b'], outputs: ['sum'], attrs: { keepdims: 1 } },
        { op: 'ArgMax', inputs: ['b'], outputs: ['argmax'], attrs: { keepdims: 1 } },
      ],
      initializers: { s0: i64([0n]), s8: i64([8n]) },
    };
    const f: Tensor = {
      dtype: 'float32',
      shape: [n],
      data: Float32Array.from([
        0, -1.5, 2.7, 3e9, -3e9, 1e15, -1e15, 1.5e12, -0.5, 65536.75, 4294967296, -4294967296, 123, -123, 1e18, -7.9e18,
      ]),
    };
    const feeds = { a: i64(A), b: i64(B), f };
    const bytes = buildModel(spec);
    const { got, header } = await runGpu(bytes, feeds);
    const want = await runOrt(bytes, feeds);
    // onnxruntime-node's int64 Min/Max compare the low 32 bits (min(2^31-1, 2^32-1) = 2^32-1): BigInt instead
    want.min = i64(A.map((a, i) => (a < B[i] ? a : B[i])));
    want.max = i64(A.map((a, i) => (a > B[i] ? a : B[i])));
    expectMatch(got, want);
    expect(got.add.data).toBeInstanceOf(BigInt64Array);
    // emulated, not narrowed: the shaders hold 64-bit values as u32 words (common/int64-pairs.ts), no helpers;
    // division is a loop over the 64 bits in the shader
    const code = header.webgpu!.kernels.flatMap((k) => k.stages.map((s) => s.code)).join('\n');
    expect(code).not.toMatch(/vec2<u32>|kiln_\w*64/);
    expect(code).toMatch(/for \(var v_bit\w*: i32 = 0i; v_bit\w* < 64i;/);
  });

  it('computes uint64 shifts, division and comparisons', async () => {
    const n = 8;
    const u = (xs: bigint[]): Tensor => ({ dtype: 'uint64', shape: [xs.length], data: BigUint64Array.from(xs) });
    const x = u([
      0n,
      1n,
      0xffffffffffffffffn,
      0x8000000000000000n,
      0x123456789abcdefn,
      4294967296n,
      12345n,
      0xfedcba9876543210n,
    ]);
    const s = u([0n, 63n, 1n, 63n, 4n, 32n, 31n, 36n]);
    const d = u([1n, 3n, 0xfffffffffn, 7n, 0x100000000n, 4294967296n, 10n, 0x8000000000000001n]);
    const bytes = buildModel({
      inputs: [
        ['x', 'uint64', [n]],
        ['s', 'uint64', [n]],
        ['d', 'uint64', [n]],
      ],
      outputs: [
        ['l', 'uint64', [n]],
        ['r', 'uint64', [n]],
        ['q', 'uint64', [n]],
        ['m', 'uint64', [n]],
        ['lt', 'bool', [n]],
      ],
      nodes: [
        { op: 'BitShift', inputs: ['x', 's'], outputs: ['l'], attrs: { direction: 'LEFT' } },
        { op: 'BitShift', inputs: ['x', 's'], outputs: ['r'], attrs: { direction: 'RIGHT' } },
        { op: 'Div', inputs: ['x', 'd'], outputs: ['q'] },
        { op: 'Mod', inputs: ['x', 'd'], outputs: ['m'] },
        { op: 'Less', inputs: ['x', 'd'], outputs: ['lt'] },
      ],
    });
    const feeds = { x, s, d };
    const { got } = await runGpu(bytes, feeds);
    // reference: BigInt arithmetic (wrapping shifts within 64 bits)
    const X = [...(x.data as BigUint64Array)],
      S = [...(s.data as BigUint64Array)],
      D = [...(d.data as BigUint64Array)];
    expect([...(got.l.data as BigUint64Array)]).toEqual(X.map((v, i) => BigInt.asUintN(64, v << S[i])));
    expect([...(got.r.data as BigUint64Array)]).toEqual(X.map((v, i) => v >> S[i]));
    expect([...(got.q.data as BigUint64Array)]).toEqual(X.map((v, i) => v / D[i]));
    expect([...(got.m.data as BigUint64Array)]).toEqual(X.map((v, i) => v % D[i]));
    expect([...got.lt.data]).toEqual(X.map((v, i) => (v < D[i] ? 1 : 0)));
  });
});

describe('WGSL: float64 intermediates of float32 kernels', () => {
  it('computes them in f32 (Resize coordinates), matching ONNX Runtime', async () => {
    const bytes = buildModel({
      inputs: [['x', 'float32', [1, 2, 5, 6]]],
      outputs: [['y', 'float32', [1, 2, 9, 11]]],
      nodes: [{ op: 'Resize', inputs: ['x', '', '', 'sizes'], outputs: ['y'], attrs: { mode: 'linear' } }],
      initializers: { sizes: i64([1n, 2n, 9n, 11n]) },
    });
    const feeds = { x: randomF32([1, 2, 5, 6], 3) };
    const { got } = await runGpu(bytes, feeds);
    expectMatch(got, await runOrt(bytes, feeds));
    // the operator's definition does compute in float64 (the WebAssembly kernel keeps it)
    const { program } = await compile(bytes);
    expect(program.kernels.map((k) => printPrimFunc(k.prim)).join('')).toMatch(/float64/);
  });
});

describe('WGSL: nearest Resize indices', () => {
  it('are integer arithmetic, exact on GPUs (float32 division is not correctly rounded: ties flipped on an H100)', async () => {
    // 4 -> 7 rows: x = (y + 0.5) * 4/7 - 0.5 is a tie (1.5) at y = 3; 6 -> 9 columns, 3 ties; both nearest modes
    for (const nearest_mode of ['round_prefer_floor', 'round_prefer_ceil']) {
      const bytes = buildModel({
        inputs: [['x', 'float32', [1, 2, 4, 6]]],
        outputs: [['y', 'float32', [1, 2, 7, 9]]],
        nodes: [
          { op: 'Resize', inputs: ['x', '', '', 'sizes'], outputs: ['y'], attrs: { mode: 'nearest', nearest_mode } },
        ],
        initializers: { sizes: i64([1n, 2n, 7n, 9n]) },
      });
      const feeds = { x: randomF32([1, 2, 4, 6], 5) };
      const { got } = await runGpu(bytes, feeds);
      const want = await runOrt(bytes, feeds);
      expect(Array.from(got.y.data as Float32Array)).toEqual(Array.from(want.y.data as Float32Array)); // a copy: exact
      const { program } = await compile(bytes);
      expect(program.kernels.map((k) => printPrimFunc(k.prim)).join('')).not.toMatch(/float64|ceil|floor\(/);
    }
  });
});

describe('WGSL: float Mod', () => {
  it("gives C fmod's a for an infinite divisor (WGSL's % is a - b * trunc(a / b): NaN on an H100), both sign rules", async () => {
    const x = [-3, 3, -1, 1, 7.5, -7.5, 0, 5],
      y = [Infinity, Infinity, -Infinity, -Infinity, 2, 2, 3, -Infinity];
    // JS's % is C's fmod (fmod=1); fmod=0 is Python's %, the sign of the divisor (ONNX Runtime refuses it for floats)
    const cFmod = x.map((a, i) => a % y[i]);
    const pyMod = cFmod.map((r, i) => (r !== 0 && r < 0 !== y[i] < 0 ? r + y[i] : r));
    for (const fmod of [0, 1]) {
      const bytes = buildModel({
        inputs: [
          ['x', 'float32', [8]],
          ['y', 'float32', [8]],
        ],
        outputs: [['z', 'float32', [8]]],
        nodes: [{ op: 'Mod', inputs: ['x', 'y'], outputs: ['z'], attrs: { fmod } }],
      });
      const feeds: Record<string, Tensor> = {
        x: { dtype: 'float32', shape: [8], data: Float32Array.from(x) },
        y: { dtype: 'float32', shape: [8], data: Float32Array.from(y) },
      };
      expect(printWebGpuSection((await compile(bytes, { target: 'webgpu' })).header.webgpu!)).toMatch(/kiln_fmod\(/);
      const { got } = await runGpu(bytes, feeds);
      expect(Array.from(got.z.data as Float32Array)).toEqual(fmod ? cFmod : pyMod);
    }
  });
});

describe('WGSL: one shader for kernels that differ only in shapes and scalars (uniforms)', () => {
  it('shares one pipeline among Mul+Relu kernels of four shapes, the constants in one uniform buffer', async () => {
    // (rows of 512..2560: four floats per invocation, 128..640 invocations per row, all split the same way)
    const shapes = [
      [16, 512],
      [8, 1024],
      [4, 2048],
      [3, 2560],
    ];
    const spec: ModelSpec = {
      inputs: shapes.map((s, i): [string, 'float32', number[]] => [`x${i}`, 'float32', s]),
      outputs: shapes.map((s, i): [string, 'float32', number[]] => [`y${i}`, 'float32', s]),
      nodes: shapes.flatMap((_, i) => [
        { op: 'Mul', inputs: [`x${i}`, `k${i}`], outputs: [`m${i}`] },
        { op: 'Relu', inputs: [`m${i}`], outputs: [`y${i}`] },
      ]),
      initializers: Object.fromEntries(
        shapes.map((_, i) => [`k${i}`, { dtype: 'float32', shape: [], data: new Float32Array([i - 1.5]) }]),
      ),
    };
    const feeds = Object.fromEntries(shapes.map((s, i) => [`x${i}`, randomF32(s, i + 1)]));
    const bytes = buildModel(spec);
    const { device, pipelines } = countingDevice(await nodeGpuDevice());
    const { got, header } = await runGpu(bytes, feeds, device);
    expectMatch(got, await runOrt(bytes, feeds));
    const sec = header.webgpu!;
    const stages = sec.kernels.flatMap((k) => k.stages);
    expect(sec.kernels.length).toBe(4);
    expect(new Set(stages.map((s) => s.code)).size).toBe(1);
    expect(pipelines()).toBe(1);
    // extents, strides, bounds and the scalar differ per kernel: uniforms, not text
    expect(new Set(stages.map((s) => JSON.stringify(s.uniforms))).size).toBe(4);
    expect(stages[0].code).toMatch(/var<uniform> kiln_u/);
    expect(stages[0].code).toMatch(/let kiln_u\d+: f32 = bitcast<f32>/);
    expect(printWebGpuSection(sec, [0])).toMatch(/uniforms \[[\d,]+,-1\.5\]/);
  });

  it('keeps constants inline in a shader without a twin', async () => {
    const { header } = await compile(
      buildModel({
        inputs: [['x', 'float32', [5, 70]]],
        outputs: [['y', 'float32', [5, 70]]],
        nodes: [{ op: 'Sigmoid', inputs: ['x'], outputs: ['y'] }],
      }),
      { target: 'webgpu' },
    );
    const [st] = header.webgpu!.kernels[0].stages;
    expect(st.uniforms).toBeUndefined();
    expect(st.code).not.toMatch(/var<uniform>/);
  });

  const models = ['squeezenet1_1', 'mobilenet_v2'].filter((m) => existsSync(`.cache/models/${m}/model.onnx`));
  it.skipIf(!models.length)(
    'shares shaders in squeezenet and mobilenet (as far as their schedules agree)',
    async () => {
      for (const name of models) {
        const modelPath = `.cache/models/${name}/model.onnx`;
        const { header } = await compile(readFileSync(modelPath), { modelPath, target: 'webgpu' });
        const stages = header.webgpu!.kernels.flatMap((k) => k.stages);
        const shaders = new Set(stages.map((s) => s.code)).size;
        const dispatches = header.webgpu!.calls.reduce((n, c) => n + header.webgpu!.kernels[c.kernel].stages.length, 0);
        console.log(
          `${name}: ${dispatches} dispatches, ${stages.length} kernel stages, ${shaders} distinct shaders (pipelines)`,
        );
        expect(shaders).toBeLessThanOrEqual(stages.length);
        expect(shaders).toBeLessThan(dispatches);
      }
    },
  );
});

describe('WGSL: vec4 loads and stores where the loop IR proves alignment', () => {
  const f32 = (name: string, shape: number[]): [string, 'float32', number[]] => [name, 'float32', shape];
  const codeOf = (header: Awaited<ReturnType<typeof compile>>['header']) =>
    header.webgpu!.kernels.flatMap((k) => k.stages.map((s) => s.code)).join('\n');

  it('tiled MatMul (+ bias, Relu): vec4 global loads in the shared-memory fetch, a vec4 workgroup tile, vec4 preloads', async () => {
    const bytes = buildModel({
      inputs: [f32('a', [96, 72]), f32('b', [72, 128])],
      outputs: [f32('y', [96, 128])],
      nodes: [
        { op: 'MatMul', inputs: ['a', 'b'], outputs: ['m'] },
        { op: 'Add', inputs: ['m', 'bias'], outputs: ['s'] },
        { op: 'Relu', inputs: ['s'], outputs: ['y'] },
      ],
      initializers: { bias: randomF32([128], 9) },
    });
    const feeds = { a: randomF32([96, 72], 1), b: randomF32([72, 128], 2) };
    const { got, header } = await runGpu(bytes, feeds);
    expectMatch(got, await runOrt(bytes, feeds));
    const code = codeOf(header);
    expect(code).toMatch(/var<workgroup> /); // the tiled schedule
    // both operands only ever read four at a time: their bindings are arrays of vec4
    expect(code).toMatch(/@binding\(0\) var<storage, read> b_in0: array<vec4<f32>>;/);
    expect(code).toMatch(/@binding\(1\) var<storage, read> b_in1: array<vec4<f32>>;/);
    expect(code).toMatch(/let q\d+ = b_in0\[\(.*\) >> 2u\];/);
    expect(code).toMatch(/let q\d+ = b_in1\[\(.*\) >> 2u\];/);
    // B's tile is read in rows of four by the register tile: a vec4 workgroup array, stored and read as vec4
    expect(code).toMatch(/var<workgroup> l_\w+: array<vec4<f32>, \d+>;/);
    expect(code).toMatch(/l_\w+\[\(.*\) >> 2u\] = q\d+;/);
    expect(code).toMatch(/let q\d+ = l_\w+\[\(.*\) >> 2u\];/);
  });

  it('elementwise (broadcast Add, Sigmoid): four outputs per invocation, vec4 loads, one vec4 store', async () => {
    const bytes = buildModel({
      inputs: [f32('x', [3, 10, 64]), f32('z', [10, 1])],
      outputs: [f32('y', [3, 10, 64])],
      nodes: [
        { op: 'Add', inputs: ['x', 'z'], outputs: ['s'] },
        { op: 'Sigmoid', inputs: ['s'], outputs: ['y'] },
      ],
    });
    const feeds = { x: randomF32([3, 10, 64], 3), z: randomF32([10, 1], 4) };
    const { got, header } = await runGpu(bytes, feeds);
    expectMatch(got, await runOrt(bytes, feeds));
    const [st] = header.webgpu!.kernels[0].stages;
    expect(st.code).toMatch(/b_in0: array<vec4<f32>>;/);
    expect(st.code).toMatch(/b_in1: array<f32>;/); // the broadcast operand: one scalar load per invocation
    expect(st.code).toMatch(/b_out0: array<vec4<f32>>;/);
    expect(st.code).toMatch(/b_out0\[\(.*\) >> 2u\] = vec4<f32>\(/);
    // 3*10*64 outputs, four per invocation
    expect(st.workgroupSize * st.grid[0] * st.grid[1]).toBeGreaterThanOrEqual(480);
    expect(st.workgroupSize * st.grid[0] * st.grid[1]).toBeLessThan(1920);
  });

  it('a buffer read both four at a time and strided gets a second, read-only vec4 binding', async () => {
    const bytes = buildModel({
      inputs: [f32('x', [16, 16])],
      outputs: [f32('y', [16, 16])],
      nodes: [
        { op: 'Transpose', inputs: ['x'], outputs: ['t'], attrs: { perm: [1, 0] } },
        { op: 'Add', inputs: ['x', 't'], outputs: ['y'] },
      ],
    });
    const feeds = { x: randomF32([16, 16], 5) };
    const { got, header } = await runGpu(bytes, feeds);
    expectMatch(got, await runOrt(bytes, feeds));
    const [st] = header.webgpu!.kernels[0].stages;
    expect(st.code).toMatch(/@binding\(0\) var<storage, read> b_in0: array<f32>;/);
    expect(st.code).toMatch(/@binding\(2\) var<storage, read> b_in0_v4: array<vec4<f32>>;/);
    expect(st.bindings).toEqual([0, 1, 0]);
    expect(st.code).toMatch(/let q\d+ = b_in0_v4\[/);
  });

  it('keeps the scalar path where alignment or extents forbid vec4, and stays correct', async () => {
    // MatMul rows of 99 and 130 floats: no fetch starts on a 16-byte boundary; Sigmoid over rows of 70
    const bytes = buildModel({
      inputs: [f32('a', [130, 99]), f32('b', [99, 130]), f32('x', [5, 70])],
      outputs: [f32('m', [130, 130]), f32('y', [5, 70]), f32('s', [4, 64])],
      nodes: [
        { op: 'MatMul', inputs: ['a', 'b'], outputs: ['m'] },
        { op: 'Sigmoid', inputs: ['x'], outputs: ['y'] },
        // rows of 64 (vec4 stores) read from column 1 on: the loads are not aligned and stay scalar
        { op: 'Slice', inputs: ['x', 'st', 'en', 'ax'], outputs: ['sl'] },
        { op: 'Neg', inputs: ['sl'], outputs: ['s'] },
      ],
      initializers: { st: i64([0n, 1n]), en: i64([4n, 65n]), ax: i64([0n, 1n]) },
    });
    const feeds = { a: randomF32([130, 99], 6), b: randomF32([99, 130], 7), x: randomF32([5, 70], 8) };
    const { got, header } = await runGpu(bytes, feeds);
    expectMatch(got, await runOrt(bytes, feeds));
    const sec = header.webgpu!;
    const byOp = (op: string) =>
      sec.kernels
        .filter((k) => k.ops.includes(op))
        .flatMap((k) => k.stages.map((s) => s.code))
        .join('\n');
    expect(byOp('matmul')).toMatch(/var<workgroup> /);
    expect(byOp('matmul')).not.toMatch(/vec4/);
    expect(byOp('sigmoid')).not.toMatch(/vec4/);
    const slice = byOp('neg');
    expect(slice).toMatch(/b_in0: array<f32>;/);
    expect(slice).toMatch(/b_out0: array<vec4<f32>>;/);
    expect(slice).not.toMatch(/let q\d+/);
  });
});
