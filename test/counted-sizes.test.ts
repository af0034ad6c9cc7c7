// Sizes that depend on values (issue 15, item 4): NonZero, Compress, TopK with k from a tensor, NonMaxSuppression,
// Unique, Slice with run-time bounds and Range over run-time values (bounded by the user), compiled once with their outputs laid out at an upper bound and the size
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
import { int64 } from './helpers/shape-chain-model.js';
import { kilnError } from './helpers/errors.js';
import { assemble } from './helpers/artifact-surgery.js';
import { readArtifact } from '../src/runtime/artifact.js';

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
  return got;
}

/** x with about `density` of its elements nonzero (the rest exactly 0). */
function sparse(shape: number[], density: number, seed: number): Tensor {
  const t = randomF32(shape, seed);
  const keep = randomF32(shape, seed + 7).data as Float32Array;
  const data = (t.data as Float32Array).map((v, i) => ((keep[i] + 1) / 2 < density ? v : 0));
  return { ...t, data };
}

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

  // An SSD-style detector: a conv backbone, box and class heads over an 8x8 grid of anchors, boxes decoded from the
  // anchors, class scores by softmax, NonMaxSuppression per class, and the kept boxes, scores and classes gathered:
  // the post-processing torchvision's detection models export.
  const f32 = (shape: number[], data: number[]): Tensor => ({ dtype: 'float32', shape, data: Float32Array.from(data) });
  const anchors = f32(
    [1, 64, 4],
    Array.from({ length: 64 }, (_, i) => [(Math.floor(i / 8) + 0.5) / 8, ((i % 8) + 0.5) / 8, 0.25, 0.25]).flat(),
  );
  const detector = buildModel({
    inputs: [['image', 'float32', [1, 3, 32, 32]]],
    outputs: [
      ['det_boxes', 'float32', ['n', 4]],
      ['det_scores', 'float32', ['n']],
      ['det_classes', 'int64', ['n']],
    ],
    nodes: [
      { op: 'Conv', inputs: ['image', 'w1', 'b1'], outputs: ['c1'], attrs: { strides: [2, 2], pads: [1, 1, 1, 1] } },
      { op: 'Relu', inputs: ['c1'], outputs: ['r1'] },
      { op: 'Conv', inputs: ['r1', 'w2', 'b2'], outputs: ['c2'], attrs: { strides: [2, 2], pads: [1, 1, 1, 1] } },
      { op: 'Relu', inputs: ['c2'], outputs: ['feat'] },
      // box head: (dy, dx, dh, dw) per anchor, decoded to corners [y1, x1, y2, x2]
      { op: 'Conv', inputs: ['feat', 'wb', 'bb'], outputs: ['box_map'] },
      { op: 'Reshape', inputs: ['box_map', 'shape_b'], outputs: ['box_flat'] },
      { op: 'Transpose', inputs: ['box_flat'], outputs: ['deltas'], attrs: { perm: [0, 2, 1] } },
      { op: 'Split', inputs: ['deltas', 'two_two'], outputs: ['d_center', 'd_size'], attrs: { axis: 2 } },
      { op: 'Split', inputs: ['anchors', 'two_two'], outputs: ['a_center', 'a_size'], attrs: { axis: 2 } },
      { op: 'Mul', inputs: ['d_center', 'a_size'], outputs: ['shift'] },
      { op: 'Add', inputs: ['a_center', 'shift'], outputs: ['center'] },
      { op: 'Exp', inputs: ['d_size'], outputs: ['scale'] },
      { op: 'Mul', inputs: ['a_size', 'scale'], outputs: ['size'] },
      { op: 'Mul', inputs: ['size', 'half'], outputs: ['half_size'] },
      { op: 'Sub', inputs: ['center', 'half_size'], outputs: ['lo'] },
      { op: 'Add', inputs: ['center', 'half_size'], outputs: ['hi'] },
      { op: 'Concat', inputs: ['lo', 'hi'], outputs: ['boxes'], attrs: { axis: 2 } },
      // class head: softmax over 3 classes
      { op: 'Conv', inputs: ['feat', 'wc', 'bc'], outputs: ['cls_map'] },
      { op: 'Reshape', inputs: ['cls_map', 'shape_c'], outputs: ['logits'] },
      { op: 'Softmax', inputs: ['logits'], outputs: ['probs'], attrs: { axis: 1 } },
      {
        op: 'NonMaxSuppression',
        inputs: ['boxes', 'probs', 'max_out', 'iou', 'min_score'],
        outputs: ['selected'],
      },
      { op: 'Gather', inputs: ['selected', 'col2'], outputs: ['box_index'], attrs: { axis: 1 } },
      { op: 'Gather', inputs: ['selected', 'col1'], outputs: ['det_classes'], attrs: { axis: 1 } },
      { op: 'Squeeze', inputs: ['boxes', 'zero'], outputs: ['boxes0'] },
      { op: 'Gather', inputs: ['boxes0', 'box_index'], outputs: ['det_boxes'], attrs: { axis: 0 } },
      { op: 'GatherND', inputs: ['probs', 'selected'], outputs: ['det_scores'] },
    ],
    initializers: {
      w1: randomF32([8, 3, 3, 3], 11),
      b1: randomF32([8], 12),
      w2: randomF32([8, 8, 3, 3], 13),
      b2: randomF32([8], 14),
      wb: randomF32([4, 8, 1, 1], 15),
      bb: randomF32([4], 16),
      wc: {
        ...randomF32([3, 8, 1, 1], 17),
        data: (randomF32([3, 8, 1, 1], 17).data as Float32Array).map((v) => v / 4),
      },
      bc: randomF32([3], 18),
      anchors,
      half: f32([], [0.5]),
      two_two: int64([2], [2, 2]),
      shape_b: int64([3], [1, 4, 64]),
      shape_c: int64([3], [1, 3, 64]),
      max_out: int64([1], [6]),
      iou: f32([1], [0.3]),
      min_score: f32([1], [0.4]),
      col1: int64([], [1]),
      col2: int64([], [2]),
      zero: int64([1], [0]),
    },
    opset: 13,
  });

  for (const target of TARGETS.filter((t) => t !== 'webgpu'))
    it(`an SSD-style detector (convolutions, box decoding, NonMaxSuppression, gathers) on ${target}`, async () => {
      const m = await loadFor(target, (await compile(detector, { target })).artifact);
      const counts = new Set<number>(),
        classes = new Set<bigint>();
      for (const seed of [1, 2, 3, 4]) {
        const got = await matchesOrt(m, detector, { image: randomF32([1, 3, 32, 32], seed) }, `image ${seed}`);
        counts.add(got.det_classes.shape[0]);
        for (const c of got.det_classes.data as BigInt64Array) classes.add(c);
      }
      // (images that keep different numbers of boxes, of more than one class)
      expect(counts.size).toBeGreaterThan(1);
      expect(classes.size).toBeGreaterThan(1);
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

  // Range over run-time values: an integer one from 0 to a limit (positions for a length given as a tensor), and a
  // float one with every input at run time; their bounds come from the user (range_0, range_1 in node order)
  const rangeModel = buildModel({
    inputs: [
      ['limit', 'int64', []],
      ['start', 'float32', []],
      ['stop', 'float32', []],
      ['step', 'float32', []],
    ],
    outputs: [
      ['positions', 'float32', ['n']],
      ['values', 'float32', ['m']],
      ['total', 'float32', []],
    ],
    nodes: [
      { op: 'Range', inputs: ['zero', 'limit', 'one'], outputs: ['r'] },
      { op: 'Cast', inputs: ['r'], outputs: ['rf'], attrs: { to: 1 } },
      { op: 'Mul', inputs: ['rf', 'half'], outputs: ['positions'] },
      { op: 'Range', inputs: ['start', 'stop', 'step'], outputs: ['v'] },
      { op: 'Exp', inputs: ['v'], outputs: ['values'] },
      { op: 'ReduceSum', inputs: ['values'], outputs: ['total'], attrs: { keepdims: 0 } },
    ],
    initializers: {
      zero: int64([], [0]),
      one: int64([], [1]),
      half: { dtype: 'float32', shape: [], data: new Float32Array([0.5]) },
    },
  });
  const scalarF = (v: number): Tensor => ({ dtype: 'float32', shape: [], data: new Float32Array([v]) });
  const rangeFeeds = (limit: number, start: number, stop: number, step: number) => ({
    limit: int64([], [limit]),
    start: scalarF(start),
    stop: scalarF(stop),
    step: scalarF(step),
  });
  for (const target of TARGETS)
    it(`Range with start, limit and delta given at run time, bounded by --dim range_K on ${target}`, async () => {
      const r = await compile(rangeModel, { target, dims: { range_0: [0, 40], range_1: [0, 25] } });
      expect(r.header.outputs.map((o) => o.dims)).toEqual([['range_0'], ['range_1'], undefined]);
      expect(r.header.symbols?.map((s) => [s.name, s.max, s.declared])).toEqual([
        ['range_0', 41, [0, 40]],
        ['range_1', 26, [0, 25]],
      ]);
      const m = await loadFor(target, r.artifact);
      try {
        for (const [limit, start, stop, step] of [
          [7, 0, 1, 0.25],
          [0, 2, -3, -0.5],
          [40, 1, 1, 1],
          [-3, -2.5, 9.5, 0.5],
        ])
          await matchesOrt(m, rangeModel, rangeFeeds(limit, start, stop, step), `${limit} ${start}:${stop}:${step}`);
        // more than the bound: E_INPUT naming the symbol, its range and the flag, not a truncated range
        for (const feeds of [rangeFeeds(41, 0, 1, 1), rangeFeeds(1, 0, 1e9, 1), rangeFeeds(1, 0, 1, 0)]) {
          const e = await kilnError(() => m.run(feeds));
          expect([e.code, e.message, e.hint]).toEqual([
            'E_INPUT',
            expect.stringMatching(
              /Range that counts 'range_\d' longer than (40|25) elements, outside the range 0\.\.(40|25)/,
            ),
            expect.stringMatching(/--dim range_\d=0\.\.N/),
          ]);
        }
        await matchesOrt(m, rangeModel, rangeFeeds(3, 0, 2, 1), 'after the errors');
      } finally {
        m.dispose();
      }
    });

  it('Range over run-time values without a bound names the flag; a bound no Range claims is refused', async () => {
    const e = await kilnError(() => compile(rangeModel));
    expect([e.code, e.message, e.hint]).toEqual([
      'E_DYNAMIC',
      expect.stringMatching(/its length is counted from the data, and nothing bounds it/),
      expect.stringMatching(/--dim range_0=0\.\.N/),
    ]);
    const second = await kilnError(() => compile(rangeModel, { dims: { range_0: [0, 4] } }));
    expect(second.hint).toMatch(/--dim range_1=0\.\.N/);
    // a header whose declared bound does not end one below its layout's is damaged
    const r = await compile(rangeModel, { dims: { range_0: [0, 4], range_1: [0, 4] } });
    const { header, wasm, wasmRelaxed, weights } = await readArtifact(r.artifact);
    const bad = await assemble(header, { wasm, wasmRelaxed, weights }, (h) => {
      h.symbols![0].declared = [0, 9];
    });
    await expect(load(bad)).rejects.toMatchObject({
      code: 'E_ARTIFACT',
      message: expect.stringMatching(/symbols\[0\]\.declared 0\.\.9 does not end one below its max 5/),
    });
    const extra = await kilnError(() =>
      compile(rangeModel, { dims: { range_0: [0, 4], range_1: [0, 4], range_2: [0, 4] } }),
    );
    expect([extra.code, extra.message]).toEqual([
      'E_INPUT',
      expect.stringMatching(/'range_2'.*no Range of the model counts/),
    ]);
  });
});
