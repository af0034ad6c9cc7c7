// Parallel kernel phases on worker threads sharing one WebAssembly.Memory: identical results at 1, 2 and 4 threads.
import { describe, expect, it } from 'vitest';
import { compile, load, KilnError } from '../src/index.js';
import { buildModel, randomF32 } from '../src/frontend/onnx/model-builder.js';
import { runOrt } from './helpers/ort.js';
import { compareTensors } from '../src/conformance/compare.js';

const model = buildModel({
  inputs: [['x', 'float32', [1, 16, 20, 20]]],
  outputs: [['y', 'float32', [1, 10]]],
  initializers: { w: randomF32([16, 16, 3, 3], 2), b: randomF32([16], 3), fc: randomF32([16 * 10 * 10, 10], 4) },
  nodes: [
    { op: 'Conv', inputs: ['x', 'w', 'b'], outputs: ['c'], attrs: { pads: [1, 1, 1, 1] } },
    { op: 'Relu', inputs: ['c'], outputs: ['r'] },
    { op: 'MaxPool', inputs: ['r'], outputs: ['p'], attrs: { kernel_shape: [2, 2], strides: [2, 2] } },
    { op: 'Flatten', inputs: ['p'], outputs: ['f'] },
    { op: 'MatMul', inputs: ['f', 'fc'], outputs: ['m'] },
    { op: 'Softmax', inputs: ['m'], outputs: ['y'] },
  ],
});

describe('threads', () => {
  it('gives bit-identical results at 1, 2 and 4 threads, matching ONNX Runtime', async () => {
    const { artifact, header } = await compile(model);
    expect(header.kernels.some((k) => k.phases.some(Boolean))).toBe(true);
    // the 3x3 convolution runs as Winograd: its transforms and batched matmul are parallel phases too
    expect(header.kernels.flatMap((k) => k.ops)).toEqual(expect.arrayContaining(['winograd_input', 'winograd_output']));
    const x = randomF32([1, 16, 20, 20], 1);
    const outs: Float32Array[] = [];
    // minParallelWork 0: every parallel phase is split, however small (this model's kernels are below the default)
    for (const [threads, minParallelWork] of [[1, 0], [2, 0], [4, 0], [2, undefined]] as const) {
      const m = await load(artifact, { threads, minParallelWork });
      expect(m.threads).toBe(threads);
      for (let rep = 0; rep < 3; rep++) outs.push(m.runSync({ x }).y.data as Float32Array);
      m.dispose();
    }
    for (const o of outs) expect(Array.from(o)).toEqual(Array.from(outs[0]));
    const want = await runOrt(model, { x });
    expect(compareTensors({ dtype: 'float32', shape: [1, 10], data: outs[0] }, want.y)?.message).toBeUndefined();
  });

  it('rejects a bad thread count', async () => {
    const { artifact } = await compile(model);
    await expect(load(artifact, { threads: 0 })).rejects.toThrow(KilnError);
  });
});
