// Winograd F(2x2, 3x3) and F(4x4, 3x3) convolution: the graph rewrite and its choice of tile, the compile-time
// filter transform, the lane layouts its transforms schedule with, and its results against ONNX Runtime over the
// shapes it must handle (even and odd outputs, padding or none, a batch, bias, fused activation and residual add).
import { describe, expect, it } from 'vitest';
import { compile } from '../src/compiler/compile.js';
import { load } from '../src/runtime/index.js';
import { buildModel, randomF32, type NodeSpec } from '../src/frontend/onnx/model-builder.js';
import { compareTensors } from '../src/conformance/compare.js';
import { printFunc } from '../src/relay-ir/printer.js';
import { type WinogradTile, winogradWeights } from '../src/tensor-expr/ops/winograd.js';
import { winogradTile } from '../src/relay-ir/passes/winograd-conv.js';
import { partitionLoops } from '../src/schedule/passes/partition.js';
import { printStmt } from '../src/schedule/loop-ir.js';
import { runOrt } from './helpers/ort.js';
import { gcall, gvar } from '../src/relay-ir/expr.js';
import { getOp } from '../src/relay-ir/op.js';
import { tensorType } from '../src/relay-ir/types.js';

interface Case {
  c: number;
  k: number;
  h: number;
  w: number;
  pad: number;
  n?: number;
  bias?: boolean;
  residual?: boolean;
}

function convModel({ c, k, h, w, pad, n = 1, bias = true, residual = false }: Case): Uint8Array {
  const oh = h + 2 * pad - 2,
    ow = w + 2 * pad - 2;
  const nodes: NodeSpec[] = [
    {
      op: 'Conv',
      inputs: ['x', 'w', ...(bias ? ['b'] : [])],
      outputs: ['c'],
      attrs: { kernel_shape: [3, 3], pads: [pad, pad, pad, pad] },
    },
    ...(residual ? [{ op: 'Add', inputs: ['c', 'r'], outputs: ['s'] }] : []),
    { op: 'Relu', inputs: [residual ? 's' : 'c'], outputs: ['y'] },
  ];
  return buildModel({
    inputs: [
      ['x', 'float32', [n, c, h, w]],
      ...(residual ? [['r', 'float32', [n, k, oh, ow]] as [string, 'float32', number[]]] : []),
    ],
    outputs: [['y', 'float32', [n, k, oh, ow]]],
    nodes,
    initializers: { w: randomF32([k, c, 3, 3], 7), ...(bias ? { b: randomF32([k], 9) } : {}) },
  });
}

async function checkAgainstOrt(cs: Case, winograd?: WinogradTile): Promise<string> {
  const model = convModel(cs);
  const compiled = await compile(model, { winograd });
  const m = await load(compiled.artifact, { threads: 1 });
  const feeds = Object.fromEntries(m.inputs.map((inp, i) => [inp.name, randomF32([...inp.shape] as number[], 3 + i)]));
  const out = m.runSync(feeds);
  const ref = await runOrt(model, feeds);
  m.dispose();
  // F(4x4)'s rounding scales with the magnitude of the sums (its transforms have entries up to 8 and 1/24), not
  // with each output: an output near zero after cancelling is off by ~1e-5 of the largest
  const scale = (ref.y.data as Float32Array).reduce((a, v) => Math.max(a, Math.abs(v)), 0);
  const tol = winograd === 4 ? { rtol: 1e-3, atol: Math.max(1e-4, 3e-5 * scale) } : undefined;
  expect(compareTensors(out.y, ref.y, tol)?.message).toBeUndefined();
  return printFunc(compiled.fused);
}

describe('Winograd F(m x m, 3x3) convolution', () => {
  it('transforms the filters at compile time: U = G g G^T, laid out [16, K, C]', () => {
    // one filter, one channel, g = [[1,2,3],[4,5,6],[7,8,9]]; G g G^T by hand in float64
    const g = [
      [1, 2, 3],
      [4, 5, 6],
      [7, 8, 9],
    ];
    const G = [
      [1, 0, 0],
      [0.5, 0.5, 0.5],
      [0.5, -0.5, 0.5],
      [0, 0, 1],
    ];
    const Gg = G.map((row) => [0, 1, 2].map((j) => row[0] * g[0][j] + row[1] * g[1][j] + row[2] * g[2][j]));
    const expected = Gg.flatMap((row) => G.map((gr) => row[0] * gr[0] + row[1] * gr[1] + row[2] * gr[2]));
    const u = winogradWeights({ dtype: 'float32', shape: [1, 1, 3, 3], data: new Float32Array(g.flat()) });
    expect(u.shape).toEqual([16, 1, 1]);
    expect([...(u.data as Float32Array)]).toEqual(expected.map((v) => Math.fround(v)));
    // the layout: element (e, k, c) at (e * K + k) * C + c
    const w2 = randomF32([3, 2, 3, 3], 11);
    const u2 = winogradWeights(w2).data as Float32Array;
    const one = (k: number, c: number) =>
      winogradWeights({
        dtype: 'float32',
        shape: [1, 1, 3, 3],
        data: (w2.data as Float32Array).slice((k * 2 + c) * 9, (k * 2 + c) * 9 + 9),
      }).data as Float32Array;
    for (let e = 0; e < 16; e++)
      for (let k = 0; k < 3; k++) for (let c = 0; c < 2; c++) expect(u2[(e * 3 + k) * 2 + c]).toBe(one(k, c)[e]);
  });

  it('transforms the filters for F(4x4, 3x3): U = G g G^T with the 6x3 G, laid out [36, K, C]', () => {
    const g = [
      [1, 2, 3],
      [4, 5, 6],
      [7, 8, 9],
    ];
    const G = [
      [1 / 4, 0, 0],
      [-1 / 6, -1 / 6, -1 / 6],
      [-1 / 6, 1 / 6, -1 / 6],
      [1 / 24, 1 / 12, 1 / 6],
      [1 / 24, -1 / 12, 1 / 6],
      [0, 0, 1],
    ];
    const Gg = G.map((row) => [0, 1, 2].map((j) => row[0] * g[0][j] + row[1] * g[1][j] + row[2] * g[2][j]));
    const expected = Gg.flatMap((row) => G.map((gr) => row[0] * gr[0] + row[1] * gr[1] + row[2] * gr[2]));
    const u = winogradWeights({ dtype: 'float32', shape: [1, 1, 3, 3], data: new Float32Array(g.flat()) }, 4);
    expect(u.shape).toEqual([36, 1, 1]);
    expect([...(u.data as Float32Array)]).toEqual(expected.map((v) => Math.fround(v)));
  });

  it('picks 4x4 output tiles where there are enough of them and little padding, else 2x2, else none', () => {
    expect(winogradTile(1, 56, 56)).toBe(4); // ResNet-18 layer 1: 196 tiles of 4x4
    expect(winogradTile(1, 28, 28)).toBe(4); // layer 2: 49
    expect(winogradTile(1, 14, 14)).toBe(4); // layer 3: 16 tiles, 31% of them padding
    expect(winogradTile(1, 13, 13)).toBe(2); // 16 tiles of 4x4 would be 51% padding
    expect(winogradTile(1, 7, 7)).toBe(2); // layer 4: 4 tiles of 4x4, 16 of 2x2
    expect(winogradTile(1, 6, 6)).toBeUndefined(); // 9 tiles: too narrow for the matmuls' register tiles
  });

  it.each<[WinogradTile, number]>([
    [2, 16],
    [4, 36],
  ])(
    'rewrites an eligible convolution into input transform, matmuls and output transform (F(%ix%i), bias and relu fused)',
    async (tile, matmuls) => {
      const fused = await checkAgainstOrt({ c: 32, k: 32, h: 32, w: 32, pad: 1 }, tile);
      expect(fused).toMatch(/fused_winograd_input_\d+\(/);
      expect(fused).toMatch(new RegExp(`matmul\\(%p0, %p1\\) : float32\\[${matmuls},32,${(32 / tile) ** 2}\\]`));
      expect(fused).toMatch(/fused_winograd_output_add_relu_\d+\(/);
    },
  );

  const cases: Case[] = [
    { c: 64, k: 64, h: 56, w: 56, pad: 1 }, // ResNet-18 layer 1
    { c: 16, k: 24, h: 34, w: 34, pad: 0, bias: false }, // no padding, no bias
    { c: 16, k: 64, h: 55, w: 55, pad: 1 }, // odd output: the last tile partly outside
    { c: 48, k: 40, h: 13, w: 13, pad: 1 }, // odd and narrow (lanes shifted back)
    { c: 24, k: 40, h: 30, w: 18, pad: 1, n: 2 }, // a batch of two
    { c: 32, k: 32, h: 20, w: 44, pad: 1, residual: true }, // residual add fused with the output transform
    { c: 256, k: 256, h: 14, w: 14, pad: 1 }, // ResNet-18 layer 3: 14x14, 16 tiles of 4x4
    { c: 512, k: 512, h: 7, w: 7, pad: 1 }, // ResNet-18 layer 4: 7x7, 16 tiles of 2x2
  ];
  const both = cases.flatMap((cs) => ([2, 4] as WinogradTile[]).map((tile) => ({ ...cs, tile })));
  it.each(both)('F($tile x $tile) matches ONNX Runtime: C$c K$k H$h W$w pad $pad', async ({ tile, ...cs }) => {
    const fused = await checkAgainstOrt(cs, tile);
    expect(fused).toContain('winograd_output');
  });

  it('refuses transform calls whose shapes do not form a 3x3 convolution, with a shape error', () => {
    const x = gvar('x', tensorType([1, 16, 10, 10], 'float32'));
    expect(() => gcall(getOp('winograd_input'), [x], { pads: [1, 1, 1, 1], output_size: [1, 9, 10] })).toThrow(
      /winograd_input: .*10x10|9x10/,
    );
    expect(() =>
      gcall(getOp('winograd_input'), [gvar('y', tensorType([1, 16, 10, 10], 'float64'))], {
        pads: [1, 1, 1, 1],
        output_size: [1, 10, 10],
      }),
    ).toThrow(/float32/);
    const m = gvar('m', tensorType([16, 8, 24], 'float32'));
    expect(() => gcall(getOp('winograd_output'), [m], { output_size: [1, 10, 10] })).toThrow(
      /winograd_output: needs float32 \[16, K, 25\]/,
    );
    expect(
      gcall(getOp('winograd_output'), [gvar('m2', tensorType([16, 8, 25], 'float32'))], { output_size: [1, 10, 10] })
        .type,
    ).toEqual(tensorType([1, 8, 10, 10], 'float32'));
  });

  it('leaves the convolutions it does not pay for, and is off on request', async () => {
    // too few channels, and a strided one: direct convolution
    expect(await checkAgainstOrt({ c: 8, k: 32, h: 32, w: 32, pad: 1 })).not.toContain('winograd');
    const model = convModel({ c: 32, k: 32, h: 32, w: 32, pad: 1 });
    expect(printFunc((await compile(model, { winograd: false })).fused)).not.toContain('winograd');
    expect(printFunc((await compile(model, { target: 'webgpu' })).fused)).not.toContain('winograd');
  });

  it('runs on WebGPU when asked for (winograd: true), matching ONNX Runtime', async () => {
    const { nodeGpuDevice } = await import('../src/conformance/node-webgpu.js');
    const model = convModel({ c: 32, k: 48, h: 20, w: 20, pad: 1 });
    const compiled = await compile(model, { target: 'webgpu', winograd: true });
    expect(printFunc(compiled.fused)).toContain('winograd_output');
    const m = await load(compiled.artifact, { target: 'webgpu', device: await nodeGpuDevice() });
    const x = randomF32([1, 32, 20, 20], 3);
    const got = await m.run({ x });
    m.dispose();
    expect(compareTensors(got.y, (await runOrt(model, { x })).y)?.message).toBeUndefined();
  });

  it('schedules its transforms with SIMD lanes within a row of tiles and per output column phase', async () => {
    const compiled = await compile(convModel({ c: 32, k: 32, h: 32, w: 32, pad: 1 }), { winograd: 2 });
    const [input, , output] = compiled.program.kernels;
    // input transform: rows materialized, then lanes along one row of 16 tiles
    expect(input.trace).toContainEqual({ p: 'split', stage: 1, axis: 'i2', factor: 16 });
    expect(input.trace).toContainEqual({ p: 'annotate', stage: 1, axis: 'i2.i.i', kind: 'vectorized' });
    // threads split both passes by channel (each thread reads the rows it computed): channels outermost
    expect(input.trace).toContainEqual({ p: 'annotate', stage: 0, axis: 'i0', kind: 'parallel' });
    expect(input.trace).toContainEqual({ p: 'reorder', stage: 1, order: ['i1', 'i0'] });
    expect(input.trace).toContainEqual({ p: 'annotate', stage: 1, axis: 'i1', kind: 'parallel' });
    // the row pass reads the input under `row inside && column inside`; the row part depends on the transform row
    // (a loop outside), yet loop partitioning splits the columns on their own part: interior vectors unchecked
    const body = input.prim.body;
    const rowPass = printStmt(partitionLoops(body.k === 'seq' ? body.body[0] : body))
      .split('\n')
      .filter((l) => l.includes('t0['));
    expect(rowPass.some((l) => l.includes('select('))).toBe(true);
    expect(rowPass.some((l) => !l.includes('select('))).toBe(true);
    // output transform (stages: rows, columns, bias add, relu = the kernel output): the output takes the column
    // transform's layout, the column phase unrolled outside the lanes
    expect(output.trace).toContainEqual({ p: 'reorder', stage: 3, order: ['i3.i', 'i3.o'] });
    expect(output.trace).toContainEqual({ p: 'annotate', stage: 3, axis: 'i3.i', kind: 'unrolled' });
    expect(output.trace).toContainEqual({ p: 'annotate', stage: 3, axis: 'i3.o.i', kind: 'vectorized' });
  });

  it('unrolls the transform rows of F(4x4, 3x3), so each copy computes only its own row of B^T or A^T', async () => {
    const compiled = await compile(convModel({ c: 32, k: 32, h: 32, w: 32, pad: 1 }));
    const [input, , output] = compiled.program.kernels;
    // each row index split by its extent and run next to the lanes: its copies read the same operand vectors
    expect(input.trace).toContainEqual({ p: 'split', stage: 0, axis: 'i1', factor: 6 });
    expect(input.trace).toContainEqual({ p: 'annotate', stage: 0, axis: 'i1.i', kind: 'unrolled' });
    expect(input.trace).toContainEqual({ p: 'split', stage: 1, axis: 'i0', factor: 6 });
    expect(input.trace).toContainEqual({ p: 'annotate', stage: 1, axis: 'i0.i', kind: 'unrolled' });
    expect(output.trace).toContainEqual({ p: 'split', stage: 0, axis: 'i1', factor: 4 });
    expect(output.trace).toContainEqual({ p: 'annotate', stage: 0, axis: 'i1.i', kind: 'unrolled' });
    // no selection by transform row is left in the loops (only the input's padding checks select)
    for (const k of [input, output]) expect(printStmt(k.prim.body)).not.toMatch(/select\(\(i\d+_\d+ == \d+\)/);
  });
});
