// Parallel kernel phases on worker threads sharing one WebAssembly.Memory: identical results at 1, 2 and 4 threads.
import { describe, expect, it } from 'vitest';
import { compile, load, KilnError } from '../src/index.js';
import { buildModel, randomF32 } from '../src/frontend/onnx/model-builder.js';
import { runOrt } from './helpers/ort.js';
import { compareTensors } from '../src/conformance/compare.js';
import { printPrimFunc } from '../src/schedule/loop-ir.js';

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
    for (const [threads, minParallelWork] of [
      [1, 0],
      [2, 0],
      [4, 0],
      [2, undefined],
    ] as const) {
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
    await expect(load(artifact, { threads: 65 })).rejects.toThrow(/from 1 to 64/);
  });

  it('gives each thread its own copy of a cacheRead buffer (a schedule staging MatMul weight panels)', async () => {
    const mm = buildModel({
      inputs: [['x', 'float32', [192, 256]]],
      outputs: [['y', 'float32', [192, 160]]],
      initializers: { w: randomF32([256, 160], 5) },
      nodes: [{ op: 'MatMul', inputs: ['x', 'w'], outputs: ['y'] }],
    });
    // the default register tile, its reduction cut into blocks of 16, the (packed) weight panel of each block staged
    const staged = await compile(mm, {
      traceFor: (_fn, k) => [
        ...k.trace,
        { p: 'split', stage: 0, axis: 'r0', factor: 16 },
        { p: 'cacheRead', stage: 0, input: 1, at: 'r0.o' },
      ],
    });
    expect(printPrimFunc(staged.program.kernels[0].prim)).toContain('(shared)');
    const x = randomF32([192, 256], 6);
    const want = (await runOrt(mm, { x })).y;
    const outs: Float32Array[] = [];
    for (const threads of [1, 2, 4]) {
      const m = await load(staged.artifact, { threads, minParallelWork: 0 });
      // threads racing on one buffer would show as differing results: repeat
      for (let rep = 0; rep < 8; rep++) outs.push(m.runSync({ x }).y.data as Float32Array);
      m.dispose();
    }
    for (const o of outs) expect(Array.from(o)).toEqual(Array.from(outs[0]));
    expect(compareTensors({ dtype: 'float32', shape: [192, 160], data: outs[0] }, want)?.message).toBeUndefined();
  });
});
