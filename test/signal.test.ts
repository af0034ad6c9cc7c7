// ONNX signal operators against ONNX Runtime beyond the node suite's cases: an inverse one-sided DFT (irfft) with a
// dft_length, a complex DFT along a middle axis, STFTs of real and complex signals with a window built in the model.
import { describe, expect, it } from 'vitest';
import { compile, load, type Tensor } from '../src/index.js';
import { buildModel, randomF32, type NodeSpec } from '../src/frontend/onnx/model-builder.js';
import { compareTensors } from '../src/conformance/compare.js';
import { runOrt } from './helpers/ort.js';

const int64 = (values: number[]): Tensor => ({
  dtype: 'int64',
  shape: [],
  data: BigInt64Array.from(values.map(BigInt)),
});

/** `consts`: the compile-time scalars (lengths, steps, axes), as initializers. */
async function matchesOrt(
  nodes: NodeSpec[],
  inputs: [string, Tensor][],
  consts: Record<string, Tensor>,
  out: string,
  shape: number[],
) {
  const model = buildModel({
    opset: 20,
    inputs: inputs.map(([n, t]) => [n, t.dtype, t.shape]),
    outputs: [[out, 'float32', shape]],
    nodes,
    initializers: consts,
  });
  const feeds = Object.fromEntries(inputs);
  const m = await load((await compile(model)).artifact);
  const got = m.runSync(feeds)[out];
  m.dispose();
  const want = (await runOrt(model, feeds))[out];
  expect(got.shape).toEqual(shape);
  expect(compareTensors(got, want)?.message).toBeUndefined();
}

describe('signal operators match ONNX Runtime', () => {
  it('DFT: inverse one-sided (a real signal of dft_length), and complex along a middle axis', async () => {
    await matchesOrt(
      [{ op: 'DFT', inputs: ['x', 'len', 'axis'], outputs: ['y'], attrs: { inverse: 1, onesided: 1 } }],
      [['x', randomF32([2, 5, 2], 1)]],
      { len: int64([8]), axis: int64([1]) },
      'y',
      [2, 8, 1],
    );
    await matchesOrt(
      [{ op: 'DFT', inputs: ['x', '', 'axis'], outputs: ['y'] }],
      [['x', randomF32([2, 6, 3, 2], 2)]],
      { axis: int64([1]) },
      'y',
      [2, 6, 3, 2],
    );
  });

  it('STFT: a real signal with a Hann window (one-sided), and a complex one by frame_length', async () => {
    // (ORT 1.30 windows a complex signal wrongly: ONNX's reference evaluator and numpy's fft agree with Kiln there)
    await matchesOrt(
      [
        { op: 'HannWindow', inputs: ['n'], outputs: ['w'] },
        { op: 'STFT', inputs: ['x', 'step', 'w'], outputs: ['y'], attrs: { onesided: 1 } },
      ],
      [['x', randomF32([2, 20, 1], 3)]],
      { step: int64([3]), n: int64([8]) },
      'y',
      [2, 5, 5, 2],
    );
    await matchesOrt(
      [{ op: 'STFT', inputs: ['x', 'step', '', 'n'], outputs: ['y'], attrs: { onesided: 0 } }],
      [['x', randomF32([1, 20, 2], 4)]],
      { step: int64([3]), n: int64([8]) },
      'y',
      [1, 5, 8, 2],
    );
  });
});
