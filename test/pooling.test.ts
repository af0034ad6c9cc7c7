// Max pooling with a window of 3 or more in both dims runs separably (max over rows, then along each row): the
// same results as ONNX Runtime with padding, ceil mode, strides and dilations.
import { describe, expect, it } from 'vitest';
import { compile } from '../src/compiler/compile.js';
import { load } from '../src/runtime/index.js';
import { buildModel, randomF32 } from '../src/frontend/onnx/model-builder.js';
import { compareTensors } from '../src/conformance/compare.js';
import { runOrt } from './helpers/ort.js';

interface Case {
  c: number;
  h: number;
  w: number;
  k: [number, number];
  s: [number, number];
  pads?: number[];
  ceil?: number;
  d?: [number, number];
}

describe('separable max pooling', () => {
  it.each<Case>([
    { c: 8, h: 111, w: 111, k: [3, 3], s: [2, 2], ceil: 1 }, // SqueezeNet's first pool
    { c: 4, h: 112, w: 112, k: [3, 3], s: [2, 2], pads: [1, 1, 1, 1] }, // ResNet's
    { c: 3, h: 20, w: 17, k: [3, 5], s: [1, 3], pads: [1, 2, 0, 2], ceil: 1 }, // uneven window, pads, ceil
    { c: 2, h: 19, w: 23, k: [3, 3], s: [2, 1], d: [2, 2] }, // dilated
  ])('matches ONNX Runtime: $h x $w window $k stride $s', async ({ c, h, w, k, s, pads, ceil, d }) => {
    const attrs = {
      kernel_shape: k,
      strides: s,
      ...(pads ? { pads } : {}),
      ...(ceil ? { ceil_mode: ceil } : {}),
      ...(d ? { dilations: d } : {}),
    };
    const probe = buildModel({
      inputs: [['x', 'float32', [1, c, h, w]]],
      outputs: [['y', 'float32', ['a', 'b', 'c', 'd']]],
      nodes: [{ op: 'MaxPool', inputs: ['x'], outputs: ['y'], attrs }],
    });
    const x = randomF32([1, c, h, w], 4);
    const want = (await runOrt(probe, { x })).y;
    const model = buildModel({
      inputs: [['x', 'float32', [1, c, h, w]]],
      outputs: [['y', 'float32', want.shape]],
      nodes: [{ op: 'MaxPool', inputs: ['x'], outputs: ['y'], attrs }],
    });
    const compiled = await compile(model);
    // two stages: the max over rows for every input column, then the max along each row
    expect(compiled.program.kernels.some((kk) => kk.prim.temps.length === 1)).toBe(true);
    const m = await load(compiled.artifact, { threads: 1 });
    expect(compareTensors(m.runSync({ x }).y, want)?.message).toBeUndefined();
    m.dispose();
  });
});
