// Kernels for run-time sizes (issue 15, docs/dynamic-shapes.md): a model with symbolic dims compiled ONCE, with
// ranges, to one artifact that runs at any size inside them, each size matching ONNX Runtime; inputs outside the
// ranges or disagreeing with each other are E_INPUT.
import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { compile, load, type Tensor } from '../src/index.js';
import { findLlvm } from '../src/codegen/native/toolchain.js';
import { nodeGpuDevice } from '../src/conformance/node-webgpu.js';
import { compileGraph, importAndOptimize } from '../src/compiler/compile.js';
import { buildModel, randomF32 } from '../src/frontend/onnx/model-builder.js';
import { printPrimFunc } from '../src/schedule/loop-ir.js';
import { compareTensors } from '../src/conformance/compare.js';
import { launchGrid } from '../src/runtime/run-sizes.js';
import { runOrt } from './helpers/ort.js';
import { shapeChains } from './helpers/shape-chain-model.js';
import { bertFeeds, gpt2PastFeeds, tokens } from './helpers/transformer-feeds.js';
import { kilnError } from './helpers/errors.js';

type Loaded = Awaited<ReturnType<typeof load>>;

/**
 * The targets that build kernels for run-time sizes here: WebAssembly, native where LLVM is installed, and WebGPU
 * on Dawn + SwiftShader (slow: every dispatch covers the bounds, so a few sizes only).
 */
const TARGETS: ('wasm' | 'native' | 'webgpu')[] = ['wasm', ...(findLlvm() ? (['native'] as const) : []), 'webgpu'];
const loadFor = async (target: (typeof TARGETS)[number], artifact: Uint8Array): Promise<Loaded> =>
  target === 'webgpu'
    ? load(artifact, { target, device: await nodeGpuDevice() })
    : load(artifact, { target, threads: 1 }).then((m) => {
        // (not the WebAssembly fallback)
        expect(m.runsOn ?? 'wasm').toBe(target);
        return m;
      });

/** Runs the one artifact at `feeds` and compares `outputs` (shapes and values) with ONNX Runtime. */
async function matchesOrt(m: Loaded, model: Uint8Array, feeds: Record<string, Tensor>, outputs: string[], at: string) {
  const got = await m.run(feeds);
  const want = await runOrt(model, feeds);
  for (const o of outputs) {
    expect(got[o].shape, `${o} at ${at}`).toEqual(want[o].shape);
    expect(compareTensors(got[o], want[o])?.message, `${o} at ${at}`).toBeUndefined();
  }
}

describe('one artifact for every size in range', () => {
  it('runs a shape-chain model (reshapes of batch*seq, a slice to seq, a range) at each size', async () => {
    const r = await compileGraph(importAndOptimize(shapeChains, { dims: { batch: [1, 4], seq: [1, 16] } }));
    expect(r.header.symbols).toEqual([
      { name: 'batch', min: 1, max: 4 },
      { name: 'seq', min: 1, max: 16 },
    ]);
    expect(r.header.inputs.map((i) => i.dims)).toEqual([
      ['batch', 'seq', 8],
      ['batch', 'seq', 4],
    ]);
    const m = await load(r.artifact);
    for (const [batch, seq] of [
      [1, 1],
      [3, 5],
      [4, 16],
      [2, 9],
    ]) {
      const feeds = { x: randomF32([batch, seq, 8], 5 + seq), y: randomF32([batch, seq, 4], 6 + batch) };
      await matchesOrt(m, shapeChains, feeds, ['z'], `batch ${batch}, seq ${seq}`);
    }
    const outside = await kilnError(() => m.runSync({ x: randomF32([1, 17, 8], 1), y: randomF32([1, 17, 4], 1) }));
    expect([outside.code, outside.message]).toEqual([
      'E_INPUT',
      expect.stringMatching(/input 'x' dim 1 \(seq\) is 17, outside the range 1\.\.16/),
    ]);
    const disagree = await kilnError(() => m.runSync({ x: randomF32([2, 3, 8], 1), y: randomF32([2, 4, 4], 1) }));
    expect([disagree.code, disagree.message]).toEqual([
      'E_INPUT',
      expect.stringMatching(/input 'y' dim 1 \(seq\) is 4, but input 'x' dim 1 \(seq\) is 3/),
    ]);
    m.dispose();
  });

  it('sees a symbol whose range is 1..2 (its one size below the bound is sampled), and an integer division over padding does not trap', async () => {
    const model = buildModel({
      inputs: [
        ['x', 'float32', ['n', 3]],
        ['a', 'int32', ['n', 3]],
        ['b', 'int32', ['n', 3]],
      ],
      outputs: [
        ['mean', 'float32', [1, 3]],
        ['q', 'int32', ['n', 3]],
      ],
      nodes: [
        { op: 'ReduceMean', inputs: ['x'], outputs: ['mean'], attrs: { axes: [0], keepdims: 1 } },
        { op: 'Div', inputs: ['a', 'b'], outputs: ['q'] },
      ],
      opset: 17,
    });
    const m = await load((await compile(model, { dims: { n: [1, 2] } })).artifact, { threads: 1 });
    for (const n of [1, 2]) {
      const ints = (seed: number) => ({
        dtype: 'int32' as const,
        shape: [n, 3],
        data: Int32Array.from({ length: n * 3 }, (_, i) => ((i * 7 + seed) % 9) + 1),
      });
      await matchesOrt(m, model, { x: randomF32([n, 3], n), a: ints(3), b: ints(5) }, ['mean', 'q'], `n ${n}`);
    }
    m.dispose();
  });

  it('asks for a range where a symbol has no upper bound', async () => {
    const e = await kilnError(() => compileGraph(importAndOptimize(shapeChains, { dims: { seq: [1, 16] } })));
    expect([e.code, e.message]).toEqual(['E_DYNAMIC', expect.stringMatching(/batch have no upper bound/)]);
    expect(e.hint).toMatch(/--dim batch=LO\.\.HI .*or fix them: --dim batch=N/);
  });
});

describe('work past the run-time sizes is skipped', () => {
  // attention over a run-time sequence: scores = x @ x^T and out = softmax(scores) @ x reduce over seq
  const attention = buildModel({
    inputs: [['x', 'float32', ['batch', 'seq', 8]]],
    outputs: [['out', 'float32', ['batch', 'seq', 8]]],
    nodes: [
      { op: 'Transpose', inputs: ['x'], outputs: ['xt'], attrs: { perm: [0, 2, 1] } },
      { op: 'MatMul', inputs: ['x', 'xt'], outputs: ['scores'] },
      { op: 'Softmax', inputs: ['scores'], outputs: ['p'], attrs: { axis: -1 } },
      { op: 'MatMul', inputs: ['p', 'x'], outputs: ['out'] },
    ],
  });

  it('guards every stage of a multi-stage kernel and takes the masks of reductions over seq out of the terms', async () => {
    const r = await compile(attention, { dims: { batch: [1, 4], seq: [1, 32] } });
    const loopIR = r.program.kernels.map((k) => printPrimFunc(k.prim));
    const softmax = loopIR.find((t) => t.includes('temps('))!;
    // each of its stages (max, exp, sum, divide) skips the batches and rows past the sizes
    const stages = softmax.split('\n').filter((l) => /^ {2}for /.test(l)).length;
    expect(stages).toBeGreaterThanOrEqual(3);
    expect(softmax.match(/^ {4}if \(\(i0_\d+ \* 1\) < in\d\[0\]\)/gm)?.length).toBe(stages);
    // the matmul over seq: one test per step of the reduction, no select per term
    const pv = loopIR.find((t) => /for k\d+ in 0\.\.32 \{\n\s+if \(k\d+ < in\d\[1\]\)/.test(t));
    expect(pv).toBeDefined();
    expect(pv).not.toMatch(/select\(\(k\d+ < /);
    const m = await load(r.artifact, { threads: 1 });
    for (const [batch, seq] of [
      [1, 1],
      [2, 5],
      [4, 32],
    ])
      await matchesOrt(m, attention, { x: randomF32([batch, seq, 8], batch + seq) }, ['out'], `${batch}x${seq}`);
    m.dispose();
  });
});

const resnet = '.cache/models/resnet18_dynamic/model.onnx';
describe.skipIf(!existsSync(resnet))('ResNet-18 with a dynamic batch axis', () => {
  it('compiles once for batch 1..8 and matches ONNX Runtime at batch 1, 3 and 8', async () => {
    const bytes = readFileSync(resnet);
    const r = await compileGraph(importAndOptimize(bytes, { dims: { batch: [1, 8] } }));
    expect(r.header.inputs[0].dims).toEqual(['batch', 3, 32, 32]);
    expect(r.header.outputs[0].dims).toEqual(['batch', 1000]);
    const m = await load(r.artifact);
    for (const batch of [1, 3, 8])
      await matchesOrt(m, bytes, { input: randomF32([batch, 3, 32, 32], batch) }, ['output'], `batch ${batch}`);
    m.dispose();
    // threads split a static loop, the batch loop (guarded) inside it: at batch 1 every thread has work
    const texts = r.program.kernels.map((k) => printPrimFunc(k.prim));
    const batchThreaded = texts.filter((t) => /for (\w+) in 0\.\.8 \(parallel\) \{\n\s*if \(\(\1 \* 1\) < in/.test(t));
    expect(batchThreaded).toEqual([]);
    expect(
      texts.filter((t) => /\(parallel\) \{\n\s*for (\w+) in 0\.\.8 \{\n\s*if \(\(\1 \* 1\) < in/.test(t)).length,
    ).toBeGreaterThan(10);
    const threaded = await load(r.artifact, { threads: 2 });
    for (const batch of [1, 3])
      await matchesOrt(
        threaded,
        bytes,
        { input: randomF32([batch, 3, 32, 32], batch) },
        ['output'],
        `batch ${batch}, 2 threads`,
      );
    threaded.dispose();
  });

  it('on WebGPU (Dawn + SwiftShader, slow: small sizes): one artifact for batch 1..4, at batch 1 and 3', async () => {
    const bytes = readFileSync(resnet);
    const r = await compile(bytes, { target: 'webgpu', dims: { batch: [1, 4] } });
    // each run dispatches the workgroups its batch needs (launchGrid, what the executor dispatches)
    const sec = r.header.webgpu!;
    const workgroups = (batch: number) =>
      sec.calls
        .flatMap((c) => sec.kernels[c.kernel].stages)
        .map((st) => launchGrid(st, new Map([['batch', batch]])))
        .reduce((n, g) => n + g[0] * g[1] * g[2], 0);
    expect(workgroups(4)).toBe(
      sec.calls
        .flatMap((c) => sec.kernels[c.kernel].stages)
        .reduce((n, st) => n + st.grid[0] * st.grid[1] * st.grid[2], 0),
    );
    expect(workgroups(1) * 3.5).toBeLessThan(workgroups(4));
    const m = await loadFor('webgpu', r.artifact);
    for (const batch of [1, 3])
      await matchesOrt(m, bytes, { input: randomF32([batch, 3, 32, 32], batch) }, ['output'], `batch ${batch}`);
    m.dispose?.();
  });
});

const bert = '.cache/models/bert_dynamic/model.onnx';
describe.skipIf(!existsSync(bert))('a BERT encoder with dynamic batch and sequence axes', () => {
  for (const target of TARGETS)
    it(`compiles once for batch 1..4, sequence 1..384, and matches ONNX Runtime at several sizes (${target})`, async () => {
      const bytes = readFileSync(bert);
      const r = await compile(bytes, { target, dims: { batch: [1, 4], sequence: [1, 384] } });
      const m = await loadFor(target, r.artifact);
      const sizes = [
        [1, 1],
        [1, 7],
        [2, 128],
        [4, 384],
        [3, 33],
      ];
      for (const [batch, sequence] of target === 'webgpu' ? sizes.slice(1, 3) : sizes) {
        await matchesOrt(m, bytes, bertFeeds(batch, sequence), ['last_hidden_state'], `${batch}x${sequence}`);
      }
      m.dispose();
    });
});

const gpt2 = '.cache/models/gpt2/model.onnx';
describe.skipIf(!existsSync(gpt2))('a GPT-2 decoder with dynamic batch and sequence, no cache', () => {
  it('compiles once for batch 1..2, sequence 1..64 (a causal mask over run-time lengths) and matches ONNX Runtime', async () => {
    const bytes = readFileSync(gpt2);
    const r = await compile(bytes, { dims: { batch: [1, 2], sequence: [1, 64] } });
    expect(r.header.outputs[0].dims).toEqual(['batch', 'sequence', 1000]);
    const m = await load(r.artifact);
    for (const [batch, sequence] of [
      [1, 1],
      [1, 7],
      [2, 64],
      [2, 23],
    ])
      await matchesOrt(m, bytes, { input_ids: tokens(batch, sequence) }, ['logits'], `${batch}x${sequence}`);
    m.dispose();
  });
});

const gpt2Past = '.cache/models/gpt2_past/model.onnx';
describe.skipIf(!existsSync(gpt2Past))('a GPT-2 decoder with its key/value cache as inputs and outputs', () => {
  for (const target of TARGETS)
    it(`decodes from one artifact at past lengths 0, 1 and 31 (present = past + sequence) like ONNX Runtime (${target})`, async () => {
      const bytes = readFileSync(gpt2Past);
      const r = await compile(bytes, {
        target,
        dims: { batch: [1, 4], sequence: [1, 64], past: [0, 64], total: [1, 128] },
      });
      expect(r.header.outputs[1].dims).toEqual(['batch', 4, 'past + sequence', 32]);
      const m = await loadFor(target, r.artifact);
      for (const [batch, past, sequence] of [
        [1, 0, 4],
        [2, 1, 1],
        [1, 31, 1],
        [4, 64, 64],
      ]) {
        const feeds = gpt2PastFeeds(batch, past, sequence);
        const outputs = ['logits', 'present_key_0', 'present_value_0', 'present_key_1', 'present_value_1'];
        await matchesOrt(m, bytes, feeds, outputs, `batch ${batch}, past ${past}, sequence ${sequence}`);
      }
      m.dispose();
    });

  it('compiles with ranges so small that symbols meet at the sample points (1..2, 0..2), and decodes at each size', async () => {
    // batch and sequence (1..2) would both be sampled at 3 and 4, past and sequence (0..4, 1..4) at 3 and 2
    const bytes = readFileSync(gpt2Past);
    for (const [dims, sizes] of [
      [
        { batch: [1, 2], sequence: [1, 2], past: [0, 2], total: [1, 4] },
        [
          [1, 0, 1],
          [2, 2, 2],
          [2, 1, 1],
        ],
      ],
      [
        { batch: [1, 2], sequence: [1, 4], past: [0, 4], total: [1, 8] },
        [
          [2, 3, 1],
          [1, 4, 4],
        ],
      ],
    ] as [Record<string, [number, number]>, number[][]][]) {
      const m = await load((await compile(bytes, { dims })).artifact, { threads: 1 });
      for (const [batch, past, sequence] of sizes) {
        const feeds = gpt2PastFeeds(batch, past, sequence);
        await matchesOrt(m, bytes, feeds, ['logits', 'present_key_1'], `batch ${batch}, past ${past}, seq ${sequence}`);
      }
      m.dispose();
    }
  });
});
