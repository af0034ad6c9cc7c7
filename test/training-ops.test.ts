// The optimizers of ai.onnx.preview.training beyond the node suite's cases: several tensors of different shapes at
// once, the first step (T = 0: no bias correction, the momentum's gradient coefficient 1) and a later one, every
// attribute. ONNX Runtime's inference build has no training operators, so ONNX's reference evaluator is the reference.
import { describe, expect, it } from 'vitest';
import { compile, load, type Tensor } from '../src/index.js';
import { type Attr, buildModel, randomF32 } from '../src/frontend/onnx/model-builder.js';
import { compareTensors } from '../src/conformance/compare.js';
import { haveReference, runReference } from './helpers/onnx-reference.js';

const SHAPES = [[3], [2, 4]];
const positive = (t: Tensor): Tensor => ({ ...t, data: (t.data as Float32Array).map((v) => Math.abs(v) + 0.1) });

/** `states` lists per X (X, G, then the states); outputs: new X, then each state. */
async function matchesReference(op: string, states: number, attrs: Record<string, Attr>, step: number) {
  const names = ['X', 'G', 'V', 'H'].slice(0, 2 + states);
  const inputs: [string, Tensor][] = [
    ['R', { dtype: 'float32', shape: [], data: Float32Array.of(0.1) }],
    ['T', { dtype: 'int64', shape: [], data: BigInt64Array.of(BigInt(step)) }],
  ];
  names.forEach((n, j) =>
    SHAPES.forEach((s, i) => {
      const t = randomF32(s, 40 + 10 * j + i);
      inputs.push([`${n}${i}`, n === 'H' || (op === 'Adagrad' && n === 'V') ? positive(t) : t]);
    }),
  );
  const outs = ['X', ...names.slice(2)].flatMap((n) => SHAPES.map((s, i) => [`${n}${i}_new`, s] as [string, number[]]));
  const model = buildModel({
    opset: 20,
    domains: { 'ai.onnx.preview.training': 1 },
    inputs: inputs.map(([n, t]) => [n, t.dtype, t.shape]),
    outputs: outs.map(([n, s]) => [n, 'float32', s]),
    nodes: [
      {
        op,
        domain: 'ai.onnx.preview.training',
        inputs: inputs.map(([n]) => n),
        outputs: outs.map(([n]) => n),
        attrs,
      },
    ],
  });
  const feeds = Object.fromEntries(inputs);
  const m = await load((await compile(model)).artifact);
  const got = m.runSync(feeds);
  m.dispose();
  const want = runReference(model, feeds);
  for (const [name] of outs)
    expect(
      compareTensors(got[name], {
        ...want[name],
        dtype: 'float32',
        data: Float32Array.from(want[name].data as Float64Array),
      })?.message,
      `${op} ${name}`,
    ).toBeUndefined();
}

describe.skipIf(!haveReference)('training optimizers match the ONNX reference', () => {
  it('Adagrad with decay, epsilon and norm_coefficient', async () => {
    for (const step of [0, 4])
      await matchesReference(
        'Adagrad',
        1,
        { decay_factor: { float: 0.1 }, epsilon: { float: 1e-3 }, norm_coefficient: { float: 0.01 } },
        step,
      );
  });

  it('Momentum, standard and nesterov', async () => {
    for (const mode of ['standard', 'nesterov'])
      for (const step of [0, 2])
        await matchesReference(
          'Momentum',
          1,
          { mode, alpha: { float: 0.9 }, beta: { float: 0.3 }, norm_coefficient: { float: 0.02 } },
          step,
        );
  });

  it('Adam with both norm coefficients', async () => {
    for (const step of [0, 3])
      await matchesReference(
        'Adam',
        2,
        {
          alpha: { float: 0.8 },
          beta: { float: 0.95 },
          epsilon: { float: 1e-2 },
          norm_coefficient: { float: 1e-2 },
          norm_coefficient_post: { float: 0.05 },
        },
        step,
      );
  });
});
