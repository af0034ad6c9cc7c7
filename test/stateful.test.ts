// LinearAttention and CausalConvWithState (opset 27) beyond the ONNX node suite's cases: longer sequences, grouped
// query heads with per-head decay and a past state, delta rules with per-head and shared beta and an explicit
// scale, convolutions with wider kernels, a decode step and an input shorter than the state. ONNX Runtime 1.30 has
// neither operator, so ONNX's reference evaluator is the reference. TensorScatter (opset 24), the KV-cache update,
// against ONNX Runtime: linear and circular writes, with and without write_indices.
import { describe, expect, it } from 'vitest';
import { compile, load, type Tensor } from '../src/index.js';
import { type Attr, buildModel, randomF32 } from '../src/frontend/onnx/model-builder.js';
import { compareTensors } from '../src/conformance/compare.js';
import { haveReference, runReference } from './helpers/onnx-reference.js';
import { kilnError } from './helpers/errors.js';
import { runOrt } from './helpers/ort.js';

const scaled = (t: Tensor, s: number, o = 0): Tensor => ({
  ...t,
  data: (t.data as Float32Array).map((v) => v * s + o),
});

/** One node with `inputs` (name -> tensor, '' for an absent one) and two outputs, against the reference. */
async function matchesReference(
  op: string,
  inputs: [string, Tensor | undefined][],
  outputs: [string, number[]][],
  attrs: Record<string, Attr>,
) {
  const given = inputs.filter((x): x is [string, Tensor] => !!x[1]);
  const model = buildModel({
    opset: 27,
    inputs: given.map(([n, t]) => [n, t.dtype, t.shape]),
    outputs: outputs.map(([n, s]) => [n, 'float32', s]),
    nodes: [{ op, inputs: inputs.map(([n, t]) => (t ? n : '')), outputs: outputs.map(([n]) => n), attrs }],
  });
  const feeds = Object.fromEntries(given);
  const m = await load((await compile(model)).artifact);
  const got = m.runSync(feeds);
  m.dispose();
  const want = runReference(model, feeds);
  for (const [name, shape] of outputs) {
    expect(got[name].shape).toEqual(shape);
    expect(compareTensors(got[name], want[name])?.message, name).toBeUndefined();
  }
}

describe.skipIf(!haveReference)('LinearAttention matches the ONNX reference', () => {
  const B = 2,
    T = 7;
  it('gated_delta with grouped query heads (4 per KV head), per-key-dim decay, per-head beta and a past state', async () => {
    const [Hq, Hkv, dk, dv] = [8, 2, 4, 3];
    await matchesReference(
      'LinearAttention',
      [
        ['q', randomF32([B, T, Hq * dk], 1)],
        ['k', scaled(randomF32([B, T, Hkv * dk], 2), 0.5)],
        ['v', randomF32([B, T, Hkv * dv], 3)],
        ['s', randomF32([B, Hkv, dk, dv], 4)],
        ['g', scaled(randomF32([B, T, Hkv * dk], 5), 0.2, -0.3)],
        ['beta', scaled(randomF32([B, T, Hkv], 6), 0.4, 0.5)],
      ],
      [
        ['y', [B, T, Hq * dv]],
        ['state', [B, Hkv, dk, dv]],
      ],
      { q_num_heads: Hq, kv_num_heads: Hkv },
    );
  });

  it('delta with one beta for all heads and an explicit scale, no past state', async () => {
    const [H, dk, dv] = [3, 5, 2];
    await matchesReference(
      'LinearAttention',
      [
        ['q', randomF32([B, T, H * dk], 7)],
        ['k', scaled(randomF32([B, T, H * dk], 8), 0.4)],
        ['v', randomF32([B, T, H * dv], 9)],
        ['s', undefined],
        ['g', undefined],
        ['beta', scaled(randomF32([B, T, 1], 10), 0.3, 0.6)],
      ],
      [
        ['y', [B, T, H * dv]],
        ['state', [B, H, dk, dv]],
      ],
      { q_num_heads: H, kv_num_heads: H, update_rule: 'delta', scale: { float: 0.3 } },
    );
  });

  it('gated with per-head decay and multi-query heads, and linear with a past state', async () => {
    const [Hq, dk, dv] = [4, 3, 5];
    await matchesReference(
      'LinearAttention',
      [
        ['q', randomF32([B, T, Hq * dk], 11)],
        ['k', randomF32([B, T, dk], 12)],
        ['v', randomF32([B, T, dv], 13)],
        ['s', randomF32([B, 1, dk, dv], 14)],
        ['g', scaled(randomF32([B, T, 1], 15), 0.1, -0.2)],
      ],
      [
        ['y', [B, T, Hq * dv]],
        ['state', [B, 1, dk, dv]],
      ],
      { q_num_heads: Hq, kv_num_heads: 1, update_rule: 'gated' },
    );
    await matchesReference(
      'LinearAttention',
      [
        ['q', randomF32([1, 3, 2 * dk], 16)],
        ['k', randomF32([1, 3, 2 * dk], 17)],
        ['v', randomF32([1, 3, 2 * dv], 18)],
        ['s', randomF32([1, 2, dk, dv], 19)],
      ],
      [
        ['y', [1, 3, 2 * dv]],
        ['state', [1, 2, dk, dv]],
      ],
      { q_num_heads: 2, kv_num_heads: 2, update_rule: 'linear' },
    );
  });

  it('a gated rule without its decay input is a KilnError', async () => {
    const model = buildModel({
      opset: 27,
      inputs: ['q', 'k', 'v'].map((n) => [n, 'float32', [1, 2, 4]]),
      outputs: [['y', 'float32', [1, 2, 4]]],
      nodes: [
        { op: 'LinearAttention', inputs: ['q', 'k', 'v'], outputs: ['y'], attrs: { q_num_heads: 1, kv_num_heads: 1 } },
      ],
    });
    const e = await kilnError(() => compile(model));
    expect(e.code).toBe('E_MODEL_INVALID');
    expect(e.message).toMatch(/decay/);
  });
});

describe.skipIf(!haveReference)('CausalConvWithState matches the ONNX reference', () => {
  it('a kernel of 5 with bias, past state and silu; a decode step; an input shorter than the state', async () => {
    const [B, C, k] = [2, 6, 5];
    for (const [L, withPast, activation] of [
      [9, true, 'silu'],
      [1, true, 'none'],
      [2, true, 'swish'],
      [3, false, 'silu'],
    ] as const) {
      await matchesReference(
        'CausalConvWithState',
        [
          ['x', randomF32([B, C, L], 20 + L)],
          ['w', randomF32([C, 1, k], 21)],
          ['b', randomF32([C], 22)],
          ['s', withPast ? randomF32([B, C, k - 1], 23) : undefined],
        ],
        [
          ['y', [B, C, L]],
          ['state', [B, C, k - 1]],
        ],
        { activation },
      );
    }
  });
});

describe('TensorScatter matches ONNX Runtime', () => {
  it('linear and circular writes of several steps into a 4-D cache; a 3-D cache without write_indices', async () => {
    const cache = randomF32([3, 2, 6, 4], 30),
      update = randomF32([3, 2, 3, 4], 31);
    const at: Tensor = { dtype: 'int64', shape: [3], data: BigInt64Array.of(0n, 2n, 5n) };
    for (const [mode, indices] of [
      ['linear', { ...at, data: BigInt64Array.of(0n, 2n, 3n) }],
      ['circular', at],
    ] as const) {
      const model = buildModel({
        opset: 24,
        inputs: [
          ['cache', 'float32', cache.shape],
          ['update', 'float32', update.shape],
          ['at', 'int64', [3]],
        ],
        outputs: [['y', 'float32', cache.shape]],
        nodes: [{ op: 'TensorScatter', inputs: ['cache', 'update', 'at'], outputs: ['y'], attrs: { mode, axis: 2 } }],
      });
      const feeds = { cache, update, at: indices };
      const m = await load((await compile(model)).artifact);
      const got = m.runSync(feeds).y;
      m.dispose();
      expect(compareTensors(got, (await runOrt(model, feeds)).y)?.message, mode).toBeUndefined();
    }
    const model = buildModel({
      opset: 24,
      inputs: [
        ['cache', 'float32', [2, 5, 3]],
        ['update', 'float32', [2, 2, 3]],
      ],
      outputs: [['y', 'float32', [2, 5, 3]]],
      nodes: [{ op: 'TensorScatter', inputs: ['cache', 'update'], outputs: ['y'], attrs: { axis: 1 } }],
    });
    const feeds = { cache: randomF32([2, 5, 3], 32), update: randomF32([2, 2, 3], 33) };
    const m = await load((await compile(model)).artifact);
    const got = m.runSync(feeds).y;
    m.dispose();
    expect(compareTensors(got, (await runOrt(model, feeds)).y)?.message).toBeUndefined();
  });
});
