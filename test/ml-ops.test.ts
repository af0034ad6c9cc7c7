// ai.onnx.ml ArrayFeatureExtractor beyond the node suite's case, against ONNX Runtime: a vector input (one row out)
// with [1, k] indices, a 3-D input with repeated indices fed at run time.
import { describe, expect, it } from 'vitest';
import { compile, load, type Tensor } from '../src/index.js';
import { type ModelSpec, buildModel, randomF32 } from '../src/frontend/onnx/model-builder.js';
import { compareTensors } from '../src/conformance/compare.js';
import { runOrt } from './helpers/ort.js';

const i64 = (shape: number[], values: number[]): Tensor => ({
  dtype: 'int64',
  shape,
  data: BigInt64Array.from(values.map(BigInt)),
});

function spec(x: number[], ind: number[], out: number[]): ModelSpec {
  return {
    opset: 17,
    domains: { 'ai.onnx.ml': 3 },
    inputs: [
      ['x', 'float32', x],
      ['i', 'int64', ind],
    ],
    outputs: [['y', 'float32', out]],
    nodes: [{ op: 'ArrayFeatureExtractor', domain: 'ai.onnx.ml', inputs: ['x', 'i'], outputs: ['y'] }],
  };
}

describe('ArrayFeatureExtractor matches ONNX Runtime', () => {
  it('a vector and a 3-D input', async () => {
    for (const [s, feeds] of [
      [spec([7], [1, 3], [1, 3]), { x: randomF32([7], 50), i: i64([1, 3], [6, 0, 2]) }],
      [spec([2, 3, 5], [4], [2, 3, 4]), { x: randomF32([2, 3, 5], 51), i: i64([4], [4, 4, 1, 0]) }],
    ] as const) {
      const bytes = buildModel(s);
      const m = await load((await compile(bytes)).artifact);
      const got = m.runSync(feeds).y;
      m.dispose();
      const want = (await runOrt(bytes, feeds)).y;
      expect(got.shape).toEqual(want.shape);
      expect(compareTensors(got, want)?.message).toBeUndefined();
    }
  });
});
