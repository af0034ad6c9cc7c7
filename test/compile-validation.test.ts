// Issue 22 on the compiler side: bad dims, malformed graphs, out-of-range attributes, memory plans over what wasm32
// addresses and models with several unsupported parts fail at compile time with one clear KilnError; long graphs
// compile without overflowing the stack.
import { describe, expect, it } from 'vitest';
import { compile, load, KilnError } from '../src/index.js';
import { buildModel, randomF32, type NodeSpec } from '../src/frontend/onnx/model-builder.js';
import type { Tensor } from '../src/runtime/tensor.js';

async function errorOf(p: Promise<unknown>): Promise<KilnError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(KilnError);
    return e as KilnError;
  }
  throw new Error('expected a KilnError');
}

const f32 = (shape: number[], values: number[]): Tensor => ({
  dtype: 'float32',
  shape,
  data: Float32Array.from(values),
});
const i64 = (values: number[]): Tensor => ({
  dtype: 'int64',
  shape: [values.length],
  data: BigInt64Array.from(values.map(BigInt)),
});

const reluModel = (shape: (number | string)[] = [2, 3]) =>
  buildModel({
    inputs: [['x', 'float32', shape]],
    outputs: [['y', 'float32', shape]],
    nodes: [{ op: 'Relu', inputs: ['x'], outputs: ['y'], name: 'relu0' }],
  });

describe('dims', () => {
  it('rejects negative dims in the model, unless inputShapes gives the shape', async () => {
    const negIn = buildModel({
      inputs: [['x', 'float32', [-1, 3]]],
      outputs: [['y', 'float32', ['n', 3]]],
      nodes: [{ op: 'Relu', inputs: ['x'], outputs: ['y'] }],
    });
    const e = await errorOf(compile(negIn));
    expect(e.code).toBe('E_MODEL_INVALID');
    expect(e.message).toMatch(/input 'x' \[-1,3\]/);
    expect(e.hint).toMatch(/inputShapes/);
    const r = await compile(negIn, { inputShapes: { x: [2, 3] } });
    expect(r.header.inputs[0].shape).toEqual([2, 3]);

    const out = await errorOf(
      compile(
        buildModel({
          inputs: [['x', 'float32', [2, 3]]],
          outputs: [['y', 'float32', [2, -3]]],
          nodes: [{ op: 'Relu', inputs: ['x'], outputs: ['y'] }],
        }),
      ),
    );
    expect(out.code).toBe('E_MODEL_INVALID');
    expect(out.message).toMatch(/output 'y'/);
  });

  it('rejects negative, fractional and non-numeric inputShapes dims, and the wrong rank', async () => {
    const m = reluModel(['n', 3]);
    for (const bad of [
      [-2, 3],
      [1.5, 3],
      [Number.NaN, 3],
    ]) {
      const e = await errorOf(compile(m, { inputShapes: { x: bad } }));
      expect(e.code).toBe('E_INPUT');
      expect(e.message).toMatch(/inputShapes\['x'\].*dim 0.*not a whole number >= 0/);
    }
    const rank = await errorOf(compile(m, { inputShapes: { x: [2, 3, 4] } }));
    expect(rank.code).toBe('E_INPUT');
    expect(rank.message).toMatch(/rank 3, the model declares rank 2 \[n,3\]/);
    // zero-size tensors are valid ONNX (the conformance suite has them)
    const zero = await compile(m, { inputShapes: { x: [0, 3] } });
    expect(zero.header.inputs[0].shape).toEqual([0, 3]);
  });

  it('rejects inputShapes and specialize names that are not inputs, listing the inputs', async () => {
    const e = await errorOf(compile(reluModel(['n', 3]), { inputShapes: { x: [2, 3], X: [2, 3] } }));
    expect(e.code).toBe('E_INPUT');
    expect(e.message).toMatch(/inputShapes name 'X' is not an input/);
    expect(e.message).toMatch(/the model's inputs are 'x' \[n,3\]/);
    const s = await errorOf(compile(reluModel(), { specialize: { nope: f32([1], [1]) } }));
    expect(s.code).toBe('E_INPUT');
    expect(s.message).toMatch(/specialize name 'nope'.*'x'/);
  });
});

describe('graph well-formedness', () => {
  const two = (nodes: NodeSpec[], extra: Partial<Parameters<typeof buildModel>[0]> = {}) =>
    buildModel({
      inputs: [['x', 'float32', [4]]],
      outputs: [['y', 'float32', [4]]],
      nodes,
      ...extra,
    });

  it('names both nodes that write one value', async () => {
    const e = await errorOf(
      compile(
        two([
          { op: 'Relu', inputs: ['x'], outputs: ['y'], name: 'first_writer' },
          { op: 'Neg', inputs: ['x'], outputs: ['y'], name: 'second_writer' },
        ]),
      ),
    );
    expect(e.code).toBe('E_MODEL_INVALID');
    expect(e.message).toMatch(/'y' is written by two nodes: 'first_writer' \(Relu\) and 'second_writer' \(Neg\)/);
  });

  it('rejects a node that writes a graph input or an initializer', async () => {
    const e = await errorOf(
      compile(
        two([
          { op: 'Relu', inputs: ['x'], outputs: ['x'], name: 'clobber' },
          { op: 'Neg', inputs: ['x'], outputs: ['y'] },
        ]),
      ),
    );
    expect(e.code).toBe('E_MODEL_INVALID');
    expect(e.message).toMatch(/'clobber' \(Relu\) writes 'x', which is a graph input/);
    const w = await errorOf(
      compile(
        two(
          [
            { op: 'Relu', inputs: ['x'], outputs: ['w'], name: 'writes_w' },
            { op: 'Add', inputs: ['x', 'w'], outputs: ['y'] },
          ],
          { initializers: { w: f32([4], [1, 2, 3, 4]) } },
        ),
      ),
    );
    expect(w.message).toMatch(/'writes_w' \(Relu\) writes 'w', which is an initializer/);
  });

  it('sorts nodes given out of order, and reports a cycle', async () => {
    const r = await compile(
      two([
        { op: 'Neg', inputs: ['a'], outputs: ['y'], name: 'second' },
        { op: 'Relu', inputs: ['x'], outputs: ['a'], name: 'first' },
      ]),
    );
    const m = await load(r.artifact);
    expect(Array.from(m.runSync({ x: f32([4], [-1, 2, -3, 4]) }).y.data as Float32Array)).toEqual([-0, -2, -0, -4]);

    const e = await errorOf(
      compile(
        two([
          { op: 'Add', inputs: ['x', 'c'], outputs: ['a'], name: 'add_a' },
          { op: 'Relu', inputs: ['a'], outputs: ['b'], name: 'relu_b' },
          { op: 'Neg', inputs: ['b'], outputs: ['c'], name: 'neg_c' },
          { op: 'Identity', inputs: ['c'], outputs: ['y'], name: 'out' },
        ]),
      ),
    );
    expect(e.code).toBe('E_MODEL_INVALID');
    expect(e.message).toMatch(/cycle: 'add_a' \(Add\) -> 'relu_b' \(Relu\) -> 'neg_c' \(Neg\) -> 'add_a' \(Add\)/);
  });

  it('rejects a graph output listed twice', async () => {
    const e = await errorOf(
      compile(
        buildModel({
          inputs: [['x', 'float32', [4]]],
          outputs: [
            ['y', 'float32', [4]],
            ['y', 'float32', [4]],
          ],
          nodes: [{ op: 'Relu', inputs: ['x'], outputs: ['y'] }],
        }),
      ),
    );
    expect(e.code).toBe('E_MODEL_INVALID');
    expect(e.message).toMatch(/graph output 'y' is listed twice/);
  });

  it('rejects inputs of different element types where an operator computes with them together', async () => {
    const w = f32(
      [4, 3],
      Array.from({ length: 12 }, (_, i) => i),
    );
    const e = await errorOf(
      compile(
        buildModel({
          inputs: [['x', 'int64', [2, 4]]],
          outputs: [['y', 'float32', [2, 3]]],
          initializers: { w },
          nodes: [{ op: 'Gemm', inputs: ['x', 'w'], outputs: ['y'], name: 'gemm0' }],
        }),
      ),
    );
    expect(e.code).toBe('E_SHAPE');
    expect(e.message).toMatch(/gemm: input dtypes differ \(int64 vs float32\).*gemm0/);
  });

  it('lists every undefined input in one error', async () => {
    const e = await errorOf(
      compile(
        two([
          { op: 'Add', inputs: ['x', 'missing1'], outputs: ['a'], name: 'n1' },
          { op: 'Add', inputs: ['a', 'missing2'], outputs: ['y'], name: 'n2' },
        ]),
      ),
    );
    expect(e.code).toBe('E_MODEL_INVALID');
    expect(e.message).toMatch(
      /2 values are not defined.*'missing1' \(read by node 'n1' \(Add\)\).*'missing2' \(read by node 'n2' \(Add\)\)/,
    );
  });
});

describe('attributes out of range', () => {
  const x = (shape = [1, 4, 8, 8]): [string, 'float32', number[]] => ['x', 'float32', shape];
  const one = (node: Omit<NodeSpec, 'outputs'>, initializers?: Record<string, Tensor>, inputs = [x()]) =>
    compile(
      buildModel({ inputs, outputs: [['y', 'float32', []]], nodes: [{ ...node, outputs: ['y'] }], initializers }),
    );
  const w = { w: randomF32([4, 4, 3, 3]) };
  const cases: [string, () => Promise<unknown>, string, RegExp][] = [
    [
      'conv stride 0',
      () => one({ op: 'Conv', inputs: ['x', 'w'], name: 'c0', attrs: { strides: [0, 1] } }, w),
      'E_SHAPE',
      /strides \[0,1\] must be whole numbers >= 1/,
    ],
    [
      'conv dilation 0',
      () => one({ op: 'Conv', inputs: ['x', 'w'], name: 'c1', attrs: { dilations: [1, 0] } }, w),
      'E_SHAPE',
      /dilations \[1,0\]/,
    ],
    [
      'conv negative pads',
      () => one({ op: 'Conv', inputs: ['x', 'w'], name: 'c2', attrs: { pads: [-1, 0, 0, 0] } }, w),
      'E_SHAPE',
      /pads \[-1,0,0,0\] must be whole numbers >= 0/,
    ],
    [
      'conv kernel_shape vs weight',
      () => one({ op: 'Conv', inputs: ['x', 'w'], name: 'c3', attrs: { kernel_shape: [5, 5] } }, w),
      'E_SHAPE',
      /kernel_shape \[5,5\] does not match the weight's spatial dims \[3,3\]/,
    ],
    [
      'conv group 0',
      () => one({ op: 'Conv', inputs: ['x', 'w'], name: 'c4', attrs: { group: 0 } }, w),
      'E_SHAPE',
      /group 0 must be a whole number >= 1/,
    ],
    [
      'conv group not dividing channels',
      () => one({ op: 'Conv', inputs: ['x', 'w'], name: 'c5', attrs: { group: 3 } }, { w: randomF32([3, 4, 3, 3]) }),
      'E_SHAPE',
      /not divisible by group 3/,
    ],
    [
      'maxpool kernel 0',
      () => one({ op: 'MaxPool', inputs: ['x'], name: 'p0', attrs: { kernel_shape: [0, 2] } }),
      'E_SHAPE',
      /kernel_shape \[0,2\]/,
    ],
    [
      'maxpool pads as wide as the window',
      () => one({ op: 'MaxPool', inputs: ['x'], name: 'p1', attrs: { kernel_shape: [2, 2], pads: [2, 0, 0, 0] } }),
      'E_SHAPE',
      /pads \[2,0,0,0\] must be smaller than the window/,
    ],
    [
      'softmax axis',
      () => one({ op: 'Softmax', inputs: ['x'], name: 's0', attrs: { axis: 7 } }),
      'E_SHAPE',
      /axis 7 out of range for rank 4/,
    ],
    [
      'split axis',
      () => one({ op: 'Split', inputs: ['x'], name: 'sp', attrs: { axis: 9 } }),
      'E_SHAPE',
      /axis 9 out of range/,
    ],
    ['lrn size 0', () => one({ op: 'LRN', inputs: ['x'], name: 'l0', attrs: { size: 0 } }), 'E_SHAPE', /size 0/],
    [
      'tile negative repeats',
      () => one({ op: 'Tile', inputs: ['x', 'r'], name: 't0' }, { r: i64([1, -1, 1, 1]) }),
      'E_SHAPE',
      /output shape \[1,-4,8,8\]/,
    ],
    [
      'ConstantOfShape negative',
      () => one({ op: 'ConstantOfShape', inputs: ['s'], name: 'k0' }, { s: i64([-3, 2]) }, []),
      'E_SHAPE',
      /\[-3,2\]/,
    ],
    [
      'OneHot depth',
      () =>
        one(
          { op: 'OneHot', inputs: ['i', 'd', 'v'], name: 'o0' },
          { i: i64([1, 2]), d: i64([-3]), v: f32([2], [0, 1]) },
          [],
        ),
      'E_SHAPE',
      /depth -3/,
    ],
    [
      'Slice axis listed twice',
      () =>
        one(
          { op: 'Slice', inputs: ['x', 'st', 'en', 'ax'], name: 'sl0' },
          { st: i64([0, 1]), en: i64([2, 3]), ax: i64([2, -2]) },
        ),
      'E_SHAPE',
      /axis 2 is listed twice in axes \[2, -2\]/,
    ],
    [
      'Resize scale 0',
      () => one({ op: 'Resize', inputs: ['x', '', 'sc'], name: 'rs0' }, { sc: f32([4], [1, 1, 0, 2]) }),
      'E_MODEL_INVALID',
      /scales \[1,1,0,2\] must all be positive/,
    ],
    [
      'Range delta 0',
      () =>
        one(
          { op: 'Range', inputs: ['a', 'b', 'd'], name: 'r0' },
          { a: f32([], [0]), b: f32([], [5]), d: f32([], [0]) },
          [],
        ),
      'E_MODEL_INVALID',
      /delta is 0/,
    ],
    [
      'Gather constant index',
      () => one({ op: 'Gather', inputs: ['x', 'i'], name: 'g0', attrs: { axis: 1 } }, { i: i64([7]) }),
      'E_MODEL_INVALID',
      /index 7 out of range for axis 1 of size 4/,
    ],
  ];
  it.each(cases)('%s', async (_name, run, code, message) => {
    const e = await errorOf(run());
    expect(e.code).toBe(code);
    expect(e.message).toMatch(message);
    expect(e.node).toBeTruthy();
  });
});

describe('memory over what wasm32 addresses', () => {
  it('fails fast with the size and the limit', async () => {
    const t0 = performance.now();
    const e = await errorOf(compile(reluModel(['n', 1024, 1024, 'c']), { inputShapes: { x: [1, 1024, 1024, 1100] } }));
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(e.code).toBe('E_SHAPE');
    expect(e.message).toMatch(/needs at least 92274\d+ bytes \(8\.59 GiB\) of WebAssembly memory/);
    expect(e.message).toMatch(/inputs 4613734400 bytes/);
    expect(e.message).toMatch(/4294967296 bytes \(4 GiB/);
    expect(e.hint).toMatch(/smaller input shapes/);
  });
});

describe('unsupported parts, all in one error', () => {
  it('lists every unsupported operator with domain, opset, count and node names', async () => {
    const e = await errorOf(
      compile(
        buildModel({
          inputs: [['x', 'float32', [4]]],
          outputs: [['y', 'float32', [4]]],
          nodes: [
            { op: 'FancyA', inputs: ['x'], outputs: ['a'], name: 'fa1' },
            { op: 'Relu', inputs: ['a'], outputs: ['b'], name: 'ok' },
            { op: 'FancyA', inputs: ['b'], outputs: ['c'], name: 'fa2' },
            { op: 'FancyB', inputs: ['c'], outputs: ['y'], name: 'fb1' },
          ],
        }),
      ),
    );
    expect(e.code).toBe('E_UNSUPPORTED_OP');
    expect(e.message).toMatch(/2 operators are not supported/);
    expect(e.message).toMatch(/FancyA \(domain ai\.onnx, opset 17\): 2 nodes 'fa1', 'fa2'/);
    expect(e.message).toMatch(/FancyB \(domain ai\.onnx, opset 17\): 1 node 'fb1'/);
  });

  it('lists unsupported element types with counts and where, beside unsupported operators', async () => {
    const h: Tensor = { dtype: 'float32', shape: [4], data: new Float32Array(4) };
    const bytes = buildModel({
      inputs: [['x', 'float32', [4]]],
      outputs: [['y', 'float32', [4]]],
      nodes: [
        { op: 'Cast', inputs: ['x'], outputs: ['h'], name: 'to_u4', attrs: { to: 21 } },
        { op: 'Weird', inputs: ['h', 'w'], outputs: ['y'], name: 'weird0' },
      ],
      initializers: { w: h },
    });
    const e = await errorOf(compile(bytes));
    expect(e.code).toBe('E_UNSUPPORTED_OP');
    expect(e.message).toMatch(/Weird .*1 node 'weird0'/);
    expect(e.message).toMatch(/uint4 \(1 tensor: Cast node 'to_u4'\)/);
  });
});

describe('long graphs', () => {
  const OPS = ['Relu', 'Neg', 'Add'] as const;
  function chain(n: number) {
    const nodes: NodeSpec[] = [];
    let prev = 'x';
    for (let i = 0; i < n; i++) {
      const op = OPS[i % 3],
        out = i === n - 1 ? 'y' : `v${i}`;
      nodes.push({ op, inputs: op === 'Add' ? [prev, 'c'] : [prev], outputs: [out], name: `n${i}` });
      prev = out;
    }
    return buildModel({
      inputs: [['x', 'float32', [2, 8]]],
      outputs: [['y', 'float32', [2, 8]]],
      nodes,
      initializers: { c: f32([1], [0.25]) },
    });
  }
  function expected(x: Float32Array, n: number): number[] {
    return Array.from(x, (v0) => {
      let v = v0;
      for (let i = 0; i < n; i++)
        v = OPS[i % 3] === 'Relu' ? Math.max(0, v) : OPS[i % 3] === 'Neg' ? -v : Math.fround(v + 0.25);
      return v;
    });
  }
  // values in [-1, 1): the chain maps v to 0.25 - relu(v), so results still depend on the input
  const x = randomF32([2, 8], 7);

  it('a chain of operators that read their input several times (Elu) stays small', async () => {
    // inlining every Elu into the next made an expression of 3^n nodes: 8 of them never finished compiling
    const n = 40,
      nodes: NodeSpec[] = [];
    for (let i = 0; i < n; i++)
      nodes.push({
        op: 'Elu',
        inputs: [i ? `e${i - 1}` : 'x'],
        outputs: [i === n - 1 ? 'y' : `e${i}`],
        name: `elu${i}`,
        attrs: { alpha: { float: 0.5 } },
      });
    const r = await compile(
      buildModel({ inputs: [['x', 'float32', [2, 8]]], outputs: [['y', 'float32', [2, 8]]], nodes }),
    );
    const y = (await load(r.artifact)).runSync({ x }).y.data as Float32Array;
    const want = Array.from(x.data as Float32Array, (v) => {
      for (let i = 0; i < n; i++) v = v > 0 ? v : Math.fround(0.5 * Math.expm1(v));
      return v;
    });
    y.forEach((v, i) => expect(v).toBeCloseTo(want[i], 5));
  }, 60_000);

  for (const n of [2000, 100_000]) {
    it(`a ${n}-node elementwise chain compiles and runs`, async () => {
      const t0 = performance.now();
      const r = await compile(chain(n));
      const ms = performance.now() - t0;
      console.log(
        `${n}-node chain: compiled in ${(ms / 1000).toFixed(1)} s, ${r.header.calls.length} kernel calls, ${r.header.kernels.length} distinct kernels`,
      );
      expect(r.header.kernels.length).toBeLessThan(10); // same-shaped kernels are shared
      const m = await load(r.artifact);
      const y = m.runSync({ x }).y.data as Float32Array;
      expect(Array.from(y)).toEqual(expected(x.data as Float32Array, n));
    }, 120_000);
  }
});
