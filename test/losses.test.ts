// NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss against ONNX Runtime, on what the ONNX node suite leaves
// out: every target ignored under mean reduction (0/0), 4-D inputs with weights and a negative ignore_index,
// ignore_index outside [0, C), int32 targets, both SCE outputs, and 16-bit float inputs.
import { describe, expect, it } from 'vitest';
import { compile, load, type Tensor } from '../src/index.js';
import { buildModel, randomF32, type Attr } from '../src/frontend/onnx/model-builder.js';
import { compareTensors } from '../src/conformance/compare.js';
import type { DType } from '../src/runtime/dtype.js';
import { runOrt } from './helpers/ort.js';

const targets = (dtype: 'int64' | 'int32', shape: number[], values: number[]): Tensor =>
  dtype === 'int64'
    ? { dtype, shape, data: BigInt64Array.from(values.map(BigInt)) }
    : { dtype, shape, data: Int32Array.from(values) };

interface LossCase {
  op: 'NegativeLogLikelihoodLoss' | 'SoftmaxCrossEntropyLoss';
  x: number[];
  target: Tensor;
  weight?: number[];
  attrs: Record<string, Attr>;
  logProb?: boolean;
  opset?: number;
}

function lossModel(k: LossCase): Uint8Array {
  const dtype = 'float32';
  const reduced = (k.attrs.reduction ?? 'mean') !== 'none';
  const inputs: [string, DType, number[]][] = [
    ['x', dtype, k.x],
    ['t', k.target.dtype, k.target.shape],
  ];
  if (k.weight) inputs.push(['w', dtype, k.weight]);
  const outputs: [string, DType, number[]][] = [['loss', dtype, reduced ? [] : k.target.shape]];
  if (k.logProb) outputs.push(['log_prob', dtype, k.x]);
  return buildModel({
    inputs,
    outputs,
    nodes: [
      {
        op: k.op,
        inputs: inputs.map(([n]) => n),
        outputs: outputs.map(([n]) => n),
        attrs: k.attrs,
      },
    ],
    opset: k.opset ?? 13,
  });
}

/** Compiles and runs the loss on Kiln and on ONNX Runtime; every output must match. */
async function matchesOrt(k: LossCase): Promise<Record<string, Tensor>> {
  const model = lossModel(k);
  const feeds: Record<string, Tensor> = { x: randomF32(k.x, 7), t: k.target };
  // class weights are positive
  if (k.weight)
    feeds.w = { dtype: 'float32', shape: k.weight, data: (randomF32(k.weight, 11).data as Float32Array).map(Math.abs) };
  const m = await load((await compile(model)).artifact);
  const got = m.runSync(feeds);
  m.dispose();
  const want = await runOrt(model, feeds);
  for (const name of Object.keys(want)) expect(compareTensors(got[name], want[name])?.message, name).toBeUndefined();
  return got;
}

describe('NegativeLogLikelihoodLoss / SoftmaxCrossEntropyLoss', () => {
  for (const op of ['NegativeLogLikelihoodLoss', 'SoftmaxCrossEntropyLoss'] as const) {
    it(`${op}: mean over all-ignored targets is 0/0 = NaN, as in ONNX Runtime`, async () => {
      const target = targets('int64', [3], [2, 2, 2]);
      const withWeights = await matchesOrt({ op, x: [3, 4], target, weight: [4], attrs: { ignore_index: 2 } });
      expect(Number.isNaN(withWeights.loss.data[0] as number)).toBe(true);
      const noWeights = await matchesOrt({ op, x: [3, 4], target, attrs: { ignore_index: 2, reduction: 'mean' } });
      expect(Number.isNaN(noWeights.loss.data[0] as number)).toBe(true);
    });

    it(`${op}: 4-D input with weights and a negative ignore_index, every reduction`, async () => {
      const values = [0, 1, -1, 2, 2, -1, 1, 0, 1, 1, 0, -1, 2, 0, 0, -1];
      for (const reduction of ['none', 'sum', 'mean']) {
        await matchesOrt({
          op,
          x: [2, 3, 2, 4],
          target: targets('int64', [2, 2, 4], values),
          weight: [3],
          attrs: { reduction, ignore_index: -1 },
        });
      }
    });

    it(`${op}: int32 targets with an ignore_index outside [0, C)`, async () => {
      await matchesOrt({
        op,
        x: [4, 5, 3],
        target: targets('int32', [4, 3], [0, 4, 9, 3, 9, 1, 2, 2, 9, 4, 0, 1]),
        attrs: { reduction: 'mean', ignore_index: 9 },
      });
    });
  }

  it('NegativeLogLikelihoodLoss at opset 22 (the newest version: same semantics, more element types)', async () => {
    await matchesOrt({
      op: 'NegativeLogLikelihoodLoss',
      x: [3, 4],
      target: targets('int64', [3], [0, 3, 2]),
      weight: [4],
      attrs: { reduction: 'mean' },
      opset: 22,
    });
  });

  it('SoftmaxCrossEntropyLoss gives both outputs: the loss and log_prob', async () => {
    const got = await matchesOrt({
      op: 'SoftmaxCrossEntropyLoss',
      x: [3, 5, 2],
      target: targets('int64', [3, 2], [4, 0, 1, 3, 2, 2]),
      weight: [5],
      attrs: { reduction: 'none' },
      logProb: true,
    });
    expect(got.log_prob.shape).toEqual([3, 5, 2]);
    expect(got.loss.shape).toEqual([3, 2]);
  });

  // float16/bfloat16 inputs (issue 16): the loss in the 16-bit type, against ONNX Runtime's float32 loss of the
  // same inputs (ORT's CPU loss kernels take float and double only) within the 16-bit type's precision
  for (const [to, name, rtol] of [
    [10, 'float16', 2e-3],
    [16, 'bfloat16', 1.6e-2],
  ] as const) {
    it(`a ${name} input computes the loss in ${name}`, async () => {
      const model = (half: number) =>
        buildModel({
          inputs: [
            ['x', 'float32', [2, 3]],
            ['t', 'int64', [2]],
          ],
          outputs: [['loss', 'float32', []]],
          nodes: [
            { op: 'Cast', inputs: ['x'], outputs: ['h'], attrs: { to: half } },
            { op: 'SoftmaxCrossEntropyLoss', inputs: ['h', 't'], outputs: ['lh'] },
            { op: 'Cast', inputs: ['lh'], outputs: ['loss'], attrs: { to: 1 } },
          ],
          opset: 13,
        });
      const feeds = { x: randomF32([2, 3], 4), t: targets('int64', [2], [2, 0]) };
      const got = (await load((await compile(model(to))).artifact)).runSync(feeds).loss;
      const want = (await runOrt(model(1), feeds)).loss;
      expect(compareTensors(got, want, { rtol, atol: 0 })?.message).toBeUndefined();
    });
  }
});
