// Sizes that depend on values (issue 15, item 4): NonZero, Compress, TopK with k from a tensor, NonMaxSuppression,
// Unique and Slice with run-time bounds, compiled once with their outputs laid out at an upper bound and the size
// counted while the model runs; every run's shapes and values match ONNX Runtime, and what follows the counted size
// (a transpose, a gather, a reduction) runs at it. On WebAssembly, native and WebGPU (the CUDA simulator's case is in
// cuda-runtime.test.ts).
import { describe, expect, it } from 'vitest';
import { compile, load, type Tensor } from '../src/index.js';
import { findLlvm } from '../src/codegen/native/toolchain.js';
import { nodeGpuDevice } from '../src/conformance/node-webgpu.js';
import { buildModel, randomF32 } from '../src/frontend/onnx/model-builder.js';
import { compareTensors } from '../src/conformance/compare.js';
import { runOrt } from './helpers/ort.js';

/** WebAssembly, native where LLVM is installed, and WebGPU on Dawn + SwiftShader. */
const TARGETS: ('wasm' | 'native' | 'webgpu')[] = ['wasm', ...(findLlvm() ? (['native'] as const) : []), 'webgpu'];

type Loaded = Awaited<ReturnType<typeof load>>;
async function loadFor(target: (typeof TARGETS)[number], artifact: Uint8Array): Promise<Loaded> {
  if (target === 'webgpu') return load(artifact, { target, device: await nodeGpuDevice() });
  const m = await load(artifact, { target, threads: 1 });
  expect(m.runsOn ?? 'wasm').toBe(target); // (not the WebAssembly fallback)
  return m;
}
async function matchesOrt(m: Loaded, model: Uint8Array, feeds: Record<string, Tensor>, at: string) {
  const got = await m.run(feeds);
  const want = await runOrt(model, feeds);
  for (const o of Object.keys(want)) {
    expect(got[o].shape, `${o} at ${at}`).toEqual(want[o].shape);
    expect(compareTensors(got[o], want[o])?.message, `${o} at ${at}`).toBeUndefined();
  }
}

/** x with about `density` of its elements nonzero (the rest exactly 0). */
function sparse(shape: number[], density: number, seed: number): Tensor {
  const t = randomF32(shape, seed);
  const keep = randomF32(shape, seed + 7).data as Float32Array;
  const data = (t.data as Float32Array).map((v, i) => ((keep[i] + 1) / 2 < density ? v : 0));
  return { ...t, data };
}

const int64 = (shape: number[], values: number[]): Tensor => ({
  dtype: 'int64',
  shape,
  data: BigInt64Array.from(values, BigInt),
});

// NonZero, then what a detection head does with it: the indices transposed, the values gathered and summed
const nonzeroModel = (dims: (string | number)[]) =>
  buildModel({
    inputs: [['x', 'float32', dims]],
    outputs: [
      ['nz', 'int64', [dims.length, 'n']],
      ['vals', 'float32', ['n']],
      ['total', 'float32', []],
    ],
    nodes: [
      { op: 'NonZero', inputs: ['x'], outputs: ['nz'] },
      { op: 'Transpose', inputs: ['nz'], outputs: ['t'] },
      { op: 'GatherND', inputs: ['x', 't'], outputs: ['vals'] },
      { op: 'ReduceSum', inputs: ['vals'], outputs: ['total'], attrs: { keepdims: 0 } },
    ],
  });

describe('sizes counted from the data', () => {
  for (const target of TARGETS) {
    it(`NonZero on ${target}: every density from none to all, a tensor of 2000 elements (blocks of 64 and a tail)`, async () => {
      const model = nonzeroModel([8, 250]);
      const r = await compile(model, { target });
      expect(r.header.symbols).toEqual([{ name: 'nonzero_0', min: 0, max: 2000, counted: true }]);
      expect(r.header.outputs.map((o) => o.dims)).toEqual([[2, 'nonzero_0'], ['nonzero_0'], undefined]);
      const m = await loadFor(target, r.artifact);
      for (const [density, seed] of [
        [0, 1],
        [0.01, 2],
        [0.3, 3],
        [0.97, 4],
        [1, 5],
      ])
        await matchesOrt(m, model, { x: sparse([8, 250], density, seed) }, `density ${density}`);
      m.dispose?.();
    });
  }

  it('NonZero of a tensor with a symbolic batch: the bound is the largest batch', async () => {
    const model = nonzeroModel(['b', 3, 5]);
    const r = await compile(model, { dims: { b: [1, 6] } });
    expect(r.header.symbols).toEqual([
      { name: 'b', min: 1, max: 6 },
      { name: 'nonzero_0', min: 0, max: 90, counted: true },
    ]);
    const m = await load(r.artifact);
    for (const b of [1, 4, 6]) await matchesOrt(m, model, { x: sparse([b, 3, 5], 0.5, b) }, `b=${b}`);
  });

  it('Compress with a condition given at run time, along an axis and flattened', async () => {
    const model = buildModel({
      inputs: [
        ['x', 'float32', [3, 5]],
        ['c', 'bool', [4]],
        ['f', 'bool', [15]],
      ],
      outputs: [
        ['y', 'float32', [3, 'n']],
        ['z', 'float32', ['m']],
      ],
      nodes: [
        { op: 'Compress', inputs: ['x', 'c'], outputs: ['y0'], attrs: { axis: 1 } },
        { op: 'Relu', inputs: ['y0'], outputs: ['y'] },
        { op: 'Compress', inputs: ['x', 'f'], outputs: ['z'] },
      ],
    });
    const m = await load((await compile(model)).artifact);
    const bools = (bits: number[]): Tensor => ({ dtype: 'bool', shape: [bits.length], data: Uint8Array.from(bits) });
    for (const [c, f] of [
      [
        [1, 0, 1, 1],
        [1, 0, 0, 1, 1, 0, 1, 0, 0, 0, 1, 1, 0, 0, 1],
      ],
      [[0, 0, 0, 0], new Array(15).fill(0)],
      [[1, 1, 1, 1], new Array(15).fill(1)],
    ])
      await matchesOrt(m, model, { x: randomF32([3, 5], 9), c: bools(c), f: bools(f) }, `c=${c}`);
  });

  it('TopK with k given at run time, from 0 to the whole axis', async () => {
    const model = buildModel({
      inputs: [
        ['y', 'float32', [2, 10]],
        ['k', 'int64', [1]],
      ],
      outputs: [
        ['v', 'float32', [2, 'k']],
        ['i', 'int64', [2, 'k']],
      ],
      nodes: [{ op: 'TopK', inputs: ['y', 'k'], outputs: ['v', 'i'], attrs: { axis: 1 } }],
      opset: 11,
    });
    const r = await compile(model);
    expect(r.header.symbols).toEqual([{ name: 'topk_k_0', min: 0, max: 10, counted: true }]);
    const m = await load(r.artifact);
    for (const k of [0, 1, 3, 10])
      await matchesOrt(m, model, { y: randomF32([2, 10], k + 1), k: int64([1], [k]) }, `k=${k}`);
  });

  // boxes scattered over a 10x10 field, many overlapping, with scores that tie now and then
  function detections(b: number, n: number, classes: number, seed: number, centered: boolean): Record<string, Tensor> {
    const u = randomF32([b, n, 4], seed).data as Float32Array;
    const boxes = new Float32Array(b * n * 4);
    for (let i = 0; i < b * n; i++) {
      const [p, q, w, h] = [
        5 + 5 * u[4 * i],
        5 + 5 * u[4 * i + 1],
        1 + 1.5 * (u[4 * i + 2] + 1),
        1 + 1.5 * (u[4 * i + 3] + 1),
      ];
      // corners [y1, x1, y2, x2], some given in the other order; or [x_center, y_center, width, height]
      boxes.set(centered ? [p, q, w, h] : i % 5 ? [q, p, q + h, p + w] : [q + h, p + w, q, p], 4 * i);
    }
    const s = randomF32([b, classes, n], seed + 1).data as Float32Array;
    const scores = s.map((v, i) => (i % 7 === 3 ? 0.5 : Math.round((v + 1) * 50) / 100));
    return {
      boxes: { dtype: 'float32', shape: [b, n, 4], data: boxes },
      scores: { dtype: 'float32', shape: [b, classes, n], data: scores },
    };
  }

  for (const [centered, thresholded] of [
    [false, true],
    [true, false],
  ])
    it(`NonMaxSuppression (${centered ? 'center and size' : 'corners'}, ${thresholded ? 'a score threshold' : 'no score threshold'}) with its limits given at run time`, async () => {
      const model = buildModel({
        inputs: [
          ['boxes', 'float32', [2, 60, 4]],
          ['scores', 'float32', [2, 3, 60]],
          ['max', 'int64', [1]],
          ['iou', 'float32', [1]],
          ...(thresholded ? ([['score', 'float32', [1]]] as [string, 'float32', number[]][]) : []),
        ],
        outputs: [['selected', 'int64', ['n', 3]]],
        nodes: [
          {
            op: 'NonMaxSuppression',
            inputs: ['boxes', 'scores', 'max', 'iou', ...(thresholded ? ['score'] : [])],
            outputs: ['selected'],
            attrs: { center_point_box: centered ? 1 : 0 },
          },
        ],
        opset: 11,
      });
      for (const target of TARGETS) {
        const m = await loadFor(target, (await compile(model, { target })).artifact);
        const f32 = (v: number): Tensor => ({ dtype: 'float32', shape: [1], data: Float32Array.of(v) });
        for (const [max, iou, score, seed] of [
          [5, 0.5, 0.3, 1],
          [100, 0.2, 0.6, 2],
          [0, 0.5, 0, 3],
          [3, 0.9, 0.95, 4],
        ])
          await matchesOrt(
            m,
            model,
            {
              ...detections(2, 60, 3, seed, centered),
              max: int64([1], [max]),
              iou: f32(iou),
              ...(thresholded ? { score: f32(score) } : {}),
            },
            `${target}: max ${max}, iou ${iou}, score ${score}`,
          );
      }
    });

  it('Unique of a run-time tensor: values and rows, sorted and in order of first occurrence, all four outputs', async () => {
    const outs = (y: (string | number)[]): [string, 'float32' | 'int64', (string | number)[]][] => [
      ['y', 'float32', y],
      ['first', 'int64', ['u']],
      ['inverse', 'int64', ['n']],
      ['counts', 'int64', ['u']],
    ];
    const node = (attrs: Record<string, number>) => ({
      op: 'Unique',
      inputs: ['x'],
      outputs: ['y', 'first', 'inverse', 'counts'],
      attrs,
    });
    const models = [
      buildModel({ inputs: [['x', 'float32', [6, 3]]], outputs: outs(['u']), nodes: [node({ sorted: 1 })], opset: 11 }),
      buildModel({ inputs: [['x', 'float32', [6, 3]]], outputs: outs(['u']), nodes: [node({ sorted: 0 })], opset: 11 }),
      buildModel({
        inputs: [['x', 'float32', [6, 3]]],
        outputs: outs(['u', 3]),
        nodes: [node({ axis: 0 })],
        opset: 11,
      }),
      buildModel({
        inputs: [['x', 'float32', [6, 3]]],
        outputs: outs([6, 'u']),
        nodes: [node({ axis: -1 })],
        opset: 11,
      }),
    ];
    // few distinct values, so rows and columns repeat too
    const x = (seed: number, levels: number): Tensor => {
      const t = randomF32([6, 3], seed);
      const data = (t.data as Float32Array).map((v, i) => (i % 3 === 1 ? 0.5 : Math.round(v * levels) / levels));
      return { ...t, data };
    };
    for (const model of models) {
      const m = await load((await compile(model)).artifact);
      for (const [seed, levels] of [
        [1, 1],
        [2, 2],
        [3, 1000],
      ])
        await matchesOrt(m, model, { x: x(seed, levels) }, `seed ${seed}, ${levels} levels`);
    }
  });

  it('Slice with starts and ends given at run time: negative, past the end, backward steps', async () => {
    const model = buildModel({
      inputs: [
        ['x', 'float32', [6, 10]],
        ['starts', 'int64', [2]],
        ['ends', 'int64', [2]],
      ],
      outputs: [['y', 'float32', ['a', 'b']]],
      nodes: [
        { op: 'Slice', inputs: ['x', 'starts', 'ends', 'axes', 'steps'], outputs: ['s'] },
        { op: 'Sigmoid', inputs: ['s'], outputs: ['y'] },
      ],
      initializers: { axes: int64([2], [1, 0]), steps: int64([2], [2, -1]) },
    });
    const r = await compile(model);
    expect(r.header.outputs[0].dims).toEqual(['slice_1', 'slice_0']);
    const m = await load(r.artifact);
    const big = 2 ** 62;
    for (const [s, e] of [
      [
        [0, 5],
        [10, 0],
      ],
      [
        [-7, -1],
        [-2, -7],
      ],
      [
        [3, big],
        [big, -big],
      ],
      [
        [8, 2],
        [3, 4],
      ],
    ])
      await matchesOrt(m, model, { x: randomF32([6, 10], 4), starts: int64([2], s), ends: int64([2], e) }, `${s} ${e}`);
  });
});
