// Kernels for run-time sizes (issue 15, docs/dynamic-shapes.md): a model with symbolic dims compiled ONCE, with
// ranges, to one artifact that runs at any size inside them, each size matching ONNX Runtime; inputs outside the
// ranges or disagreeing with each other are E_INPUT.
import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { load, type Tensor } from '../src/index.js';
import { compileGraph, importAndOptimize } from '../src/compiler/compile.js';
import { randomF32 } from '../src/frontend/onnx/model-builder.js';
import { compareTensors } from '../src/conformance/compare.js';
import { runOrt } from './helpers/ort.js';
import { shapeChains } from './helpers/shape-chain-model.js';
import { kilnError } from './helpers/errors.js';

type Loaded = Awaited<ReturnType<typeof load>>;

/** Runs the one artifact at `feeds` and compares `outputs` (shapes and values) with ONNX Runtime. */
async function matchesOrt(m: Loaded, model: Uint8Array, feeds: Record<string, Tensor>, outputs: string[], at: string) {
  const got = m.runSync(feeds);
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

  it('asks for a range where a symbol has no upper bound', async () => {
    const e = await kilnError(() => compileGraph(importAndOptimize(shapeChains, { dims: { seq: [1, 16] } })));
    expect([e.code, e.message]).toEqual(['E_DYNAMIC', expect.stringMatching(/batch have no upper bound/)]);
    expect(e.hint).toMatch(/--dim batch=1\.\.MAX/);
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
  });
});
