// FlexAttention (ai.onnx.preview 1) beyond the ONNX node suite's cases: grouped-query heads with more keys than
// queries, a score_mod graph that builds a bottom-right causal mask from the scores' shape (Shape, Gather, Range,
// Where) together with a prob_mod graph, an explicit scale, and float64 with a soft-capping score_mod that reads
// its cap from an initializer of its own. ONNX Runtime 1.30 has no FlexAttention, so ONNX's reference evaluator is
// the reference.
import { describe, expect, it } from 'vitest';
import { compile, load, type Tensor } from '../src/index.js';
import type { DType } from '../src/runtime/dtype.js';
import { type GraphSpec, type NodeSpec, buildModel, randomF32 } from '../src/frontend/onnx/model-builder.js';
import { compareTensors } from '../src/conformance/compare.js';
import { haveReference, runReference } from './helpers/onnx-reference.js';
import { kilnError } from './helpers/errors.js';

const i64 = (shape: number[], values: number[]): Tensor => ({
  dtype: 'int64',
  shape,
  data: BigInt64Array.from(values.map(BigInt)),
});
const scalar = (dtype: DType, v: number): Tensor =>
  dtype === 'float64'
    ? { dtype, shape: [], data: Float64Array.of(v) }
    : { dtype: 'float32', shape: [], data: Float32Array.of(v) };
const f64 = (t: Tensor): Tensor => ({ ...t, dtype: 'float64', data: Float64Array.from(t.data as Float32Array) });

/** A graph from the scores (or probabilities) [B, H, L, S] to one tensor of that shape. */
const modGraph = (dtype: DType, nodes: NodeSpec[], initializers: Record<string, Tensor>): GraphSpec => ({
  inputs: [['x', dtype, ['B', 'H', 'L', 'S']]],
  outputs: [['y', dtype, ['B', 'H', 'L', 'S']]],
  nodes,
  initializers,
});

/** Masks key j for query i unless j <= i + S - L (queries are the last L of S positions). */
const causal = (dtype: DType) =>
  modGraph(
    dtype,
    [
      { op: 'Shape', inputs: ['x'], outputs: ['shape'] },
      { op: 'Gather', inputs: ['shape', 'two'], outputs: ['L'], attrs: { axis: 0 } },
      { op: 'Gather', inputs: ['shape', 'three'], outputs: ['S'], attrs: { axis: 0 } },
      { op: 'Sub', inputs: ['S', 'L'], outputs: ['offset'] },
      { op: 'Range', inputs: ['zero', 'L', 'one'], outputs: ['qr'] },
      { op: 'Add', inputs: ['qr', 'offset'], outputs: ['qo'] },
      { op: 'Reshape', inputs: ['qo', 'col'], outputs: ['qi'] },
      { op: 'Range', inputs: ['zero', 'S', 'one'], outputs: ['kr'] },
      { op: 'Reshape', inputs: ['kr', 'row'], outputs: ['ki'] },
      { op: 'GreaterOrEqual', inputs: ['qi', 'ki'], outputs: ['mask'] },
      { op: 'Where', inputs: ['mask', 'x', 'ninf'], outputs: ['y'] },
    ],
    {
      two: i64([], [2]),
      three: i64([], [3]),
      zero: i64([], [0]),
      one: i64([], [1]),
      col: i64([2], [-1, 1]),
      row: i64([2], [1, -1]),
      ninf: scalar(dtype, Number.NEGATIVE_INFINITY),
    },
  );
const times = (dtype: DType, v: number) =>
  modGraph(dtype, [{ op: 'Mul', inputs: ['x', 'k'], outputs: ['y'] }], { k: scalar(dtype, v) });
const softCap = (dtype: DType, cap: number) =>
  modGraph(
    dtype,
    [
      { op: 'Div', inputs: ['x', 'cap'], outputs: ['s'] },
      { op: 'Tanh', inputs: ['s'], outputs: ['t'] },
      { op: 'Mul', inputs: ['t', 'cap'], outputs: ['y'] },
    ],
    { cap: scalar(dtype, cap) },
  );

function flexModel(q: Tensor, k: Tensor, v: Tensor, attrs: NodeSpec['attrs']): Uint8Array {
  const [B, H, L] = q.shape;
  return buildModel({
    opset: 26,
    domains: { 'ai.onnx.preview': 1 },
    inputs: [
      ['Q', q.dtype, q.shape],
      ['K', k.dtype, k.shape],
      ['V', v.dtype, v.shape],
    ],
    outputs: [['Y', q.dtype, [B, H, L, v.shape[3]]]],
    nodes: [{ op: 'FlexAttention', domain: 'ai.onnx.preview', inputs: ['Q', 'K', 'V'], outputs: ['Y'], attrs }],
  });
}

async function matchesReference(q: Tensor, k: Tensor, v: Tensor, attrs: NodeSpec['attrs']) {
  const model = flexModel(q, k, v, attrs);
  const feeds = { Q: q, K: k, V: v };
  const m = await load((await compile(model)).artifact);
  const got = m.runSync(feeds).Y;
  m.dispose();
  const want = runReference(model, feeds).Y;
  expect(got.shape).toEqual([q.shape[0], q.shape[1], q.shape[2], v.shape[3]]);
  expect(compareTensors(got, want)?.message).toBeUndefined();
}

describe.skipIf(!haveReference)('FlexAttention matches the ONNX reference', () => {
  it('grouped-query heads, 4 queries over 7 keys, a causal score_mod, a prob_mod and an explicit scale', async () => {
    await matchesReference(randomF32([2, 6, 4, 8], 1), randomF32([2, 2, 7, 8], 2), randomF32([2, 2, 7, 3], 3), {
      scale: { float: 0.2 },
      score_mod: { graph: causal('float32') },
      prob_mod: { graph: times('float32', 1.5) },
    });
  });

  it('float64 with a soft-capping score_mod', async () => {
    await matchesReference(
      f64(randomF32([1, 3, 5, 4], 4)),
      f64(randomF32([1, 3, 5, 4], 5)),
      f64(randomF32([1, 3, 5, 6], 6)),
      { score_mod: { graph: softCap('float64', 0.4) } },
    );
  });

  it('a score_mod graph with two outputs is a KilnError', async () => {
    const g = causal('float32');
    g.outputs.push(['mask', 'bool', [null, null]]);
    const model = flexModel(randomF32([1, 1, 2, 4]), randomF32([1, 1, 2, 4]), randomF32([1, 1, 2, 4]), {
      score_mod: { graph: g },
    });
    const e = await kilnError(() => compile(model));
    expect(e.code).toBe('E_MODEL_INVALID');
    expect(e.message).toMatch(/score_mod has 2 outputs/);
  });
});
