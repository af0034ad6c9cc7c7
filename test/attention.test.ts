// ONNX Attention (opset 23) against ONNX Runtime on what a decoder does with it: 3-D inputs split into heads,
// grouped-query heads, a KV cache (past in, present out) with a causal frontier offset by the past, and 4-D inputs
// with a bool mask, softcap, scale and the probabilities as a second output. The node suite (test/conformance.test.ts)
// covers the attribute combinations one by one, a mask shorter than the keys (which ORT rejects) among them.
import { describe, expect, it } from 'vitest';
import { compile, KilnError, load, type Tensor } from '../src/index.js';
import { buildModel, randomF32, type NodeSpec } from '../src/frontend/onnx/model-builder.js';
import { compareTensors } from '../src/conformance/compare.js';
import { runOrt } from './helpers/ort.js';

type Spec = [string, Tensor];

/** Compiles one Attention node with `inputs` (names in order, '' for a left-out optional one), runs it on Kiln and ORT. */
async function matchesOrt(node: NodeSpec, inputs: Spec[], outputs: [string, number[]][]) {
  const model = buildModel({
    opset: 23,
    inputs: inputs.map(([n, t]) => [n, t.dtype, t.shape]),
    outputs: outputs.map(([n, s]) => [n, 'float32', s]),
    nodes: [node],
  });
  const feeds = Object.fromEntries(inputs);
  const m = await load((await compile(model)).artifact);
  const got = m.runSync(feeds);
  m.dispose();
  const want = await runOrt(model, feeds);
  for (const [name, shape] of outputs) {
    expect(got[name].shape, name).toEqual(shape);
    expect(compareTensors(got[name], want[name])?.message, name).toBeUndefined();
  }
}

describe('Attention and RotaryEmbedding (opset 23) match ONNX Runtime', () => {
  it('3-D inputs, grouped-query heads, a KV cache and a causal frontier offset by the past', async () => {
    await matchesOrt(
      {
        op: 'Attention',
        inputs: ['q', 'k', 'v', '', 'past_key', 'past_value'],
        outputs: ['y', 'present_key', 'present_value'],
        attrs: { q_num_heads: 4, kv_num_heads: 2, is_causal: 1 },
      },
      [
        ['q', randomF32([2, 3, 16], 1)],
        ['k', randomF32([2, 3, 8], 2)],
        ['v', randomF32([2, 3, 8], 3)],
        ['past_key', randomF32([2, 2, 4, 4], 4)],
        ['past_value', randomF32([2, 2, 4, 4], 5)],
      ],
      [
        ['y', [2, 3, 16]],
        ['present_key', [2, 2, 7, 4]],
        ['present_value', [2, 2, 7, 4]],
      ],
    );
  });

  it('4-D inputs, a bool mask, softcap and scale; the probabilities as an output', async () => {
    const mask: Tensor = {
      dtype: 'bool',
      shape: [5, 6],
      data: Uint8Array.from({ length: 30 }, (_, i) => Number(i % 3 !== 1)),
    };
    await matchesOrt(
      {
        op: 'Attention',
        inputs: ['q', 'k', 'v', 'mask'],
        outputs: ['y', '', '', 'probs'],
        attrs: { softcap: 2.5, scale: 0.4, qk_matmul_output_mode: 3 },
      },
      [
        ['q', randomF32([1, 2, 5, 8], 6)],
        ['k', randomF32([1, 2, 6, 8], 7)],
        ['v', randomF32([1, 2, 6, 3], 8)],
        ['mask', mask],
      ],
      [
        ['y', [1, 2, 5, 3]],
        ['probs', [1, 2, 5, 6]],
      ],
    );
  });

  it('RotaryEmbedding: 3-D input split into heads, position ids, interleaved pairs over part of each head', async () => {
    const positions: Tensor = { dtype: 'int64', shape: [2, 3], data: BigInt64Array.from([0n, 1n, 2n, 5n, 6n, 7n]) };
    await matchesOrt(
      {
        op: 'RotaryEmbedding',
        inputs: ['x', 'cos', 'sin', 'positions'],
        outputs: ['y'],
        attrs: { num_heads: 2, interleaved: 1, rotary_embedding_dim: 4 },
      },
      [
        ['x', randomF32([2, 3, 12], 9)],
        ['cos', randomF32([8, 2], 10)],
        ['sin', randomF32([8, 2], 11)],
        ['positions', positions],
      ],
      [['y', [2, 3, 12]]],
    );
  });

  it('rejects what it cannot do with a KilnError naming it', async () => {
    const model = buildModel({
      opset: 23,
      inputs: [
        ['q', 'float32', [1, 2, 3, 4]],
        ['k', 'float32', [1, 2, 3, 4]],
        ['v', 'float32', [1, 2, 3, 4]],
        ['past_key', 'float32', [1, 2, 1, 4]],
      ],
      outputs: [['y', 'float32', [1, 2, 3, 4]]],
      nodes: [{ op: 'Attention', inputs: ['q', 'k', 'v', '', 'past_key'], outputs: ['y'] }],
    });
    const e = await compile(model).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(KilnError);
    expect((e as KilnError).message).toMatch(/past_key without past_value/);
  });
});
