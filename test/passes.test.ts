// Graph passes: fusion, constant folding of shape subgraphs, batch-norm folding, CSE, dead code; external data.
// Each result runs against ONNX Runtime; where the pass's output is small it is compared whole, as printed.
import { describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './helpers/temp.js';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { compile, load, tensor, type Tensor } from '../src/index.js';
import { printFunc } from '../src/relay-ir/printer.js';
import { compareTensors } from '../src/conformance/compare.js';
import {
  ModelProtoSchema,
  StringStringEntryProtoSchema,
  TensorProto_DataLocation,
} from '../src/frontend/onnx/proto/onnx_pb.js';
import { buildModel, randomF32 } from '../src/frontend/onnx/model-builder.js';
import { runOrt } from './helpers/ort.js';

async function checkAgainstOrt(bytes: Uint8Array, feeds: Record<string, Tensor>, modelPath?: string) {
  const r = await compile(bytes, { modelPath });
  const got = (await load(r.artifact)).runSync(feeds);
  const want = await runOrt(modelPath ?? bytes, feeds);
  for (const [k, v] of Object.entries(want)) expect(compareTensors(got[k], v)?.message, k).toBeUndefined();
  return r;
}

const f32 = (shape: number[], seed: number) => randomF32(shape, seed);

describe('operator fusion', () => {
  it('conv + bias + relu + residual add become one kernel; an elementwise chain becomes one kernel', async () => {
    const bytes = buildModel({
      inputs: [['x', 'float32', [1, 4, 8, 8]]],
      outputs: [['y', 'float32', [1, 4, 8, 8]]],
      initializers: { w: f32([4, 4, 3, 3], 3), b: f32([4], 4), w2: f32([4, 4, 3, 3], 5) },
      nodes: [
        { op: 'Conv', inputs: ['x', 'w', 'b'], outputs: ['c1'], attrs: { pads: [1, 1, 1, 1] } },
        { op: 'Relu', inputs: ['c1'], outputs: ['r1'] },
        { op: 'Conv', inputs: ['r1', 'w2'], outputs: ['c2'], attrs: { pads: [1, 1, 1, 1] } },
        { op: 'Add', inputs: ['c2', 'x'], outputs: ['a'] },
        { op: 'Relu', inputs: ['a'], outputs: ['r2'] },
        { op: 'Sigmoid', inputs: ['r2'], outputs: ['s'] },
        { op: 'Mul', inputs: ['s', 'r2'], outputs: ['y'] },
      ],
    });
    const r = await checkAgainstOrt(bytes, { x: f32([1, 4, 8, 8], 1) });
    // each padded 3x3 conv reads a zero-padded copy made by a pad kernel (explicit-conv-padding)
    const ops = r.header.calls.map((c) => r.header.kernels[c.kernel].ops.join('+')).filter((o) => o !== 'pad');
    expect(ops.length).toBe(2);
    expect(ops[0]).toMatch(/^conv\+relu(\+pad)?$/); // the next conv's zero padding may fuse in as an epilogue
    expect(ops.find((o) => o.startsWith('conv+add'))).toBe('conv+add+relu+sigmoid+mul');
  });
});

describe('weight pre-packing', () => {
  it('packs filters in fours for channel lanes; a pointwise conv over few channels keeps them and runs lanes along its rows and columns', async () => {
    const bytes = buildModel({
      inputs: [['x', 'float32', [1, 16, 6, 24]]],
      outputs: [['y', 'float32', [1, 12, 6, 24]]],
      initializers: { w1: f32([40, 16, 1, 1], 3), b1: f32([40], 4), w2: f32([12, 40, 1, 1], 5) },
      nodes: [
        { op: 'Conv', inputs: ['x', 'w1', 'b1'], outputs: ['c1'] },
        { op: 'Relu', inputs: ['c1'], outputs: ['r1'] },
        { op: 'Conv', inputs: ['r1', 'w2'], outputs: ['y'] },
      ],
    });
    const r = await checkAgainstOrt(bytes, { x: f32([1, 16, 6, 24], 1) });
    const [small, wide] = r.program.kernels;
    // 16 input channels: unpacked weights [40, 16], lanes along the output's rows and columns as one axis (i2*i3:
    // 6 x 24), rows over filters
    expect(small.inputs.map((t) => t.shape)).toContainEqual([40, 16, 1, 1]);
    expect(small.trace).toContainEqual({ p: 'fuse', stage: 0, outer: 'i2', inner: 'i3' });
    expect(small.trace).toContainEqual({ p: 'split', stage: 0, axis: 'i2*i3', factor: 8 });
    expect(small.trace).toContainEqual({ p: 'split', stage: 0, axis: 'i1', factor: 4 });
    // 40 input channels: filters packed in blocks of 4 ([3, 40, 1, 1, 4]), lanes over filters
    expect(wide.inputs.map((t) => t.shape)).toContainEqual([3, 40, 1, 1, 4]);
    expect(wide.trace).toContainEqual({ p: 'split', stage: 0, axis: 'i1.i', factor: 4 });
  });
});

describe('concatenation by placement', () => {
  it('producers write into their slice of a channel concat, and the copy kernel is dropped', async () => {
    const spec = (axis: number, alsoOut: boolean) =>
      buildModel({
        inputs: [['x', 'float32', [1, 4, 6, 8]]],
        outputs: [
          ['y', 'float32', axis === 1 ? [1, 11, 6, 8] : [1, 4, 6, 16]],
          ...(alsoOut ? [['a', 'float32', [1, 4, 6, 8]] as [string, 'float32', number[]]] : []),
        ],
        initializers: { w1: f32([4, 4, 3, 3], 3), w2: f32([axis === 1 ? 7 : 4, 4, 1, 1], 4) },
        nodes: [
          { op: 'Conv', inputs: ['x', 'w1'], outputs: ['a'], attrs: { pads: [1, 1, 1, 1] } },
          { op: 'Conv', inputs: ['x', 'w2'], outputs: ['b'] },
          { op: 'Concat', inputs: ['a', 'b'], outputs: ['y'], attrs: { axis } },
        ],
      });
    const feeds = { x: f32([1, 4, 6, 8], 1) };
    const kernelOps = (r: Awaited<ReturnType<typeof compile>>) =>
      r.header.calls.map((c) => r.header.kernels[c.kernel].ops.join('+'));
    const placed = await checkAgainstOrt(spec(1, false), feeds);
    expect(kernelOps(placed)).not.toContain('concat');
    expect(kernelOps(placed).filter((o) => o.startsWith('conv'))).toHaveLength(2);
    // along the last axis the inputs are interleaved rows, and a graph output keeps its own buffer: copies stay
    expect(kernelOps(await checkAgainstOrt(spec(3, false), feeds))).toContain('concat');
    expect(kernelOps(await checkAgainstOrt(spec(1, true), feeds))).toContain('concat');
  });
});

describe('constant folding', () => {
  it('folds Shape -> Gather -> Concat -> Reshape into a constant shape', async () => {
    const bytes = buildModel({
      inputs: [['x', 'float32', [2, 3, 4]]],
      outputs: [['y', 'float32', [2, 12]]],
      initializers: { zero: tensor('int64', [1], [0]), minus1: tensor('int64', [1], [-1]) },
      nodes: [
        { op: 'Shape', inputs: ['x'], outputs: ['s'] },
        { op: 'Gather', inputs: ['s', 'zero'], outputs: ['n'], attrs: { axis: 0 } },
        { op: 'Concat', inputs: ['n', 'minus1'], outputs: ['shape'], attrs: { axis: 0 } },
        { op: 'Reshape', inputs: ['x', 'shape'], outputs: ['y'] },
      ],
    });
    const r = await checkAgainstOrt(bytes, { x: f32([2, 3, 4], 2) });
    expect(printFunc(r.graph)).toBe(`fn main(%x: float32[2,3,4]) -> float32[2,12] {
  %0 = reshape(%x, shape=[2,12]) : float32[2,12]  # Reshape_3
  %0
}
`);
    expect(r.header.calls.length).toBe(1); // only the reshape (a copy) remains
  });
});

describe('bitwise operators with a constant operand', () => {
  it('x & 3 and x | 4 on int32 match ONNX Runtime (the simplifier once folded them as logical and/or)', async () => {
    const bytes = buildModel({
      opset: 18,
      inputs: [['x', 'int32', [8]]],
      outputs: [['y', 'int32', [8]]],
      initializers: { three: tensor('int32', [1], [3]), four: tensor('int32', [1], [4]) },
      nodes: [
        { op: 'BitwiseAnd', inputs: ['x', 'three'], outputs: ['a'] },
        { op: 'BitwiseOr', inputs: ['a', 'four'], outputs: ['y'] },
      ],
    });
    await checkAgainstOrt(bytes, { x: tensor('int32', [8], [0, 1, 2, 5, 7, 12, -1, -8]) });
  });
});

describe('batch-norm folding', () => {
  it('folds BatchNormalization into the preceding Conv', async () => {
    const c = 3;
    const pos = (seed: number) => {
      const t = f32([c], seed);
      (t.data as Float32Array).forEach((v, i, a) => {
        a[i] = Math.abs(v) + 0.5;
      });
      return t;
    };
    const bytes = buildModel({
      inputs: [['x', 'float32', [1, 2, 6, 6]]],
      outputs: [['y', 'float32', [1, c, 6, 6]]],
      initializers: { w: f32([c, 2, 3, 3], 7), gamma: pos(8), beta: f32([c], 9), mean: f32([c], 10), var: pos(11) },
      nodes: [
        { op: 'Conv', inputs: ['x', 'w'], outputs: ['conv'], attrs: { pads: [1, 1, 1, 1] } },
        {
          op: 'BatchNormalization',
          inputs: ['conv', 'gamma', 'beta', 'mean', 'var'],
          outputs: ['y'],
          attrs: { epsilon: { float: 1e-3 } },
        },
      ],
    });
    const r = await checkAgainstOrt(bytes, { x: f32([1, 2, 6, 6], 12) });
    expect(printFunc(r.graph)).not.toMatch(/batch_norm/);
    expect(r.header.kernels.map((k) => k.ops.join('+')).filter((o) => o !== 'pad')).toEqual(['conv']);
  });
});

describe('GELU fusion', () => {
  const scalar = (v: number): Tensor => ({ dtype: 'float32', shape: [], data: Float32Array.of(v) });
  it('replaces 0.5 * x * (1 + erf(x / sqrt 2)), in the orders exporters write it, with one gelu', async () => {
    const shape = [2, 16];
    const feeds = { x: f32(shape, 21) };
    (feeds.x.data as Float32Array).forEach((v, i, a) => {
      a[i] = v * 4;
    }); // erf's whole range
    const initializers = { sqrt2: scalar(Math.SQRT2), inv: scalar(Math.SQRT1_2), one: scalar(1), half: scalar(0.5) };
    // Hugging Face BERT: Div -> Erf -> Add -> Mul(x, .) -> Mul(., 0.5)
    const hf = [
      { op: 'Div', inputs: ['x', 'sqrt2'], outputs: ['d'] },
      { op: 'Erf', inputs: ['d'], outputs: ['e'] },
      { op: 'Add', inputs: ['e', 'one'], outputs: ['a'] },
      { op: 'Mul', inputs: ['x', 'a'], outputs: ['m'] },
      { op: 'Mul', inputs: ['m', 'half'], outputs: ['y'] },
    ];
    // torch.nn.functional.gelu written out: Mul(x, 0.5) * (1 + erf(x * 1/sqrt 2))
    const torch = [
      { op: 'Mul', inputs: ['x', 'inv'], outputs: ['d'] },
      { op: 'Erf', inputs: ['d'], outputs: ['e'] },
      { op: 'Add', inputs: ['one', 'e'], outputs: ['a'] },
      { op: 'Mul', inputs: ['x', 'half'], outputs: ['h'] },
      { op: 'Mul', inputs: ['h', 'a'], outputs: ['y'] },
    ];
    for (const nodes of [hf, torch]) {
      const bytes = buildModel({
        inputs: [['x', 'float32', shape]],
        outputs: [['y', 'float32', shape]],
        initializers,
        nodes,
      });
      const r = await checkAgainstOrt(bytes, feeds);
      const text = printFunc(r.graph);
      expect(text).toMatch(/gelu\(%x, approximate="none"\)/);
      expect(text).not.toMatch(/erf|div\(/);
    }
    // not when an inner value is used elsewhere (the erf is also an output)
    const shared = buildModel({
      inputs: [['x', 'float32', shape]],
      outputs: [
        ['y', 'float32', shape],
        ['e', 'float32', shape],
      ],
      initializers,
      nodes: hf,
    });
    const r = await checkAgainstOrt(shared, feeds);
    expect(printFunc(r.graph)).not.toMatch(/gelu/);
  });
});

describe('CSE and dead code', () => {
  it('merges repeated computations and drops no-ops and unused nodes', async () => {
    const bytes = buildModel({
      inputs: [['x', 'float32', [4, 4]]],
      outputs: [['y', 'float32', [4, 4]]],
      nodes: [
        { op: 'Exp', inputs: ['x'], outputs: ['e1'] },
        { op: 'Exp', inputs: ['x'], outputs: ['e2'] },
        { op: 'Identity', inputs: ['e2'], outputs: ['i2'] },
        { op: 'Log', inputs: ['x'], outputs: ['unused'] },
        { op: 'Add', inputs: ['e1', 'i2'], outputs: ['y'] },
      ],
    });
    const r = await checkAgainstOrt(bytes, { x: f32([4, 4], 3) });
    expect(printFunc(r.graph)).toBe(`fn main(%x: float32[4,4]) -> float32[4,4] {
  %0 = exp(%x) : float32[4,4]  # Exp_0
  %1 = add(%0, %0) : float32[4,4]  # Add_4
  %1
}
`);
  });
});

describe('external data', () => {
  it('reads initializers stored next to the model', async () => {
    const dir = tempDir('kiln-ext-');
    const w = f32([3, 5], 4);
    const bytes = buildModel({
      inputs: [['x', 'float32', [2, 3]]],
      outputs: [['y', 'float32', [2, 5]]],
      initializers: { w },
      nodes: [{ op: 'MatMul', inputs: ['x', 'w'], outputs: ['y'] }],
    });
    const model = fromBinary(ModelProtoSchema, bytes);
    const init = model.graph!.initializer[0];
    writeFileSync(join(dir, 'weights.bin'), Buffer.concat([Buffer.alloc(64), Buffer.from(init.rawData)]));
    init.rawData = new Uint8Array(0);
    init.dataLocation = TensorProto_DataLocation.EXTERNAL;
    init.externalData = [
      ['location', 'weights.bin'],
      ['offset', '64'],
      ['length', String(w.data.byteLength)],
    ].map(([key, value]) => create(StringStringEntryProtoSchema, { key, value }));
    const path = join(dir, 'model.onnx');
    const ext = toBinary(ModelProtoSchema, model);
    writeFileSync(path, ext);
    await checkAgainstOrt(ext, { x: f32([2, 3], 5) }, path);
    await expect(compile(ext)).rejects.toThrow(/external/);
  });
});
