// Narrow integers in 32-bit registers (src/codegen/common/narrow.ts): int8/int16/uint8/uint16 arithmetic widened to
// int32/uint32 and wrapped back to its width where it may leave it, written as Before -> Expected on printed loop
// IR; then overflowing int8/uint8/int16 arithmetic end to end against ONNX Runtime on WebAssembly, WebGPU
// (SwiftShader) and the PTX simulator.
import { describe, expect, it } from 'vitest';
import {
  type Expr,
  type Var,
  add,
  binary,
  cast,
  constant,
  int,
  load,
  lt,
  min,
  mul,
  printExpr,
  select,
  shr,
  unary,
} from '../src/tensor-expr/expr.js';
import { simplify } from '../src/tensor-expr/simplify.js';
import { type PrimFunc, type Stmt, buffer, printPrimFunc } from '../src/schedule/loop-ir.js';
import { runLoopPasses } from '../src/schedule/loop-passes.js';
import { TARGET_CAPS, type TargetCaps } from '../src/codegen/common/target-caps.js';
import { narrowPass, wrapValue } from '../src/codegen/common/narrow.js';
import { compile, load as loadArtifact, type Tensor } from '../src/index.js';
import { nodeGpuDevice } from '../src/conformance/node-webgpu.js';
import { compareTensors } from '../src/conformance/compare.js';
import { buildModel, type ModelSpec } from '../src/frontend/onnx/model-builder.js';
import { runOrt } from './helpers/ort.js';
import { runCudaSim } from './support/cuda-sim-runtime.js';
import { func, loop, named, store, text } from './helpers/loop-ir-builders.js';

const seq = (...body: Stmt[]): Stmt => ({ k: 'seq', body });
/** Runs the pass for `caps` (verified before and after, as every pass in tests) and prints the result. */
const printAfter = (f: PrimFunc, caps: TargetCaps = TARGET_CAPS.wasm) =>
  printPrimFunc(runLoopPasses(f, [narrowPass(caps)], { input: 'before', check: {} }));

describe('narrow: the pass on loop IR', () => {
  const i = named('i');
  const i8 = (n: string) => buffer(n, 'int8', 4);
  const c = (v: number, t: Var['dtype']) => constant(v, t);

  it('widens int8 add to int32 and wraps it before the store; loads are widened, a copy stays a copy', () => {
    const a = i8('a'),
      b = i8('b'),
      y = i8('y'),
      z = i8('z');
    const before = func(
      loop(i, 4, seq(store(y, i, add(load(a, [i]), load(b, [i]))), store(z, i, load(a, [i])))),
      [a, b],
      [y, z],
    );
    expect(printAfter(before)).toBe(
      text(`
kernel k(a: int8[4], b: int8[4], y: int8[4], z: int8[4]) {
  for i in 0..4 {
    y[i] = int8((((int32(a[i]) + int32(b[i])) << 24) >> 24))
    z[i] = a[i]
  }
}`),
    );
  });

  it('wraps uint8/uint16 with a mask, int16 with shifts by 16; min, shr and compares of in-range values are not wrapped', () => {
    const a = buffer('a', 'uint8', 4),
      s = buffer('s', 'int16', 4),
      y = buffer('y', 'uint8', 4),
      w = buffer('w', 'int16', 4),
      u = buffer('u', 'uint16', 4);
    const x = load(a, [i]),
      h = load(s, [i]);
    const before = func(
      loop(
        i,
        4,
        seq(
          store(y, i, min(shr(mul(x, c(3, 'uint8')), c(1, 'uint8')), x)),
          store(w, i, select(lt(h, c(0, 'int16')), mul(h, h), binary('xor', h, c(-1, 'int16')))),
          store(u, i, binary('sub', cast('uint16', x), c(300, 'uint16'))),
        ),
      ),
      [a, s],
      [y, w, u],
    );
    expect(printAfter(before)).toBe(
      text(`
kernel k(a: uint8[4], s: int16[4], y: uint8[4], w: int16[4], u: uint16[4]) {
  for i in 0..4 {
    y[i] = uint8(min((((uint32(a[i]) * 3:uint32) && 255:uint32) >> 1:uint32), uint32(a[i])))
    w[i] = int16(select((int32(s[i]) < 0), (((int32(s[i]) * int32(s[i])) << 16) >> 16), (int32(s[i]) ^ -1)))
    u[i] = uint16(((uint32(a[i]) - 300:uint32) && 65535:uint32))
  }
}`),
    );
  });

  it('neg and signed abs wrap (abs(-128) is -128), signed bitnot does not, unsigned bitnot does', () => {
    const a = i8('a'),
      b = buffer('b', 'uint8', 4),
      y = i8('y'),
      z = i8('z'),
      n = i8('n'),
      m = buffer('m', 'uint8', 4);
    const before = func(
      loop(
        i,
        4,
        seq(
          store(y, i, unary('neg', load(a, [i]))),
          store(z, i, unary('abs', load(a, [i]))),
          store(n, i, unary('bitnot', load(a, [i]))),
          store(m, i, unary('bitnot', unary('abs', load(b, [i])))),
        ),
      ),
      [a, b],
      [y, z, n, m],
    );
    expect(printAfter(before)).toBe(
      text(`
kernel k(a: int8[4], b: uint8[4], y: int8[4], z: int8[4], n: int8[4], m: uint8[4]) {
  for i in 0..4 {
    y[i] = int8(((neg(int32(a[i])) << 24) >> 24))
    z[i] = int8(((abs(int32(a[i])) << 24) >> 24))
    n[i] = int8(bitnot(int32(a[i])))
    m[i] = uint8((bitnot(abs(uint32(b[i]))) && 255:uint32))
  }
}`),
    );
  });

  it('casts: float through int64 where native (wasm, PTX), through int32 on WebGPU; narrow to narrow wraps only from a wider range', () => {
    const f = buffer('f', 'float32', 4),
      a = i8('a'),
      y = i8('y'),
      q = buffer('q', 'uint8', 4),
      h = buffer('h', 'int16', 4),
      g = i8('g'),
      o = buffer('o', 'float32', 4),
      k = buffer('k', 'bool', 4),
      kb = buffer('kb', 'bool', 4);
    const before = func(
      loop(
        i,
        4,
        seq(
          store(y, i, cast('int8', load(f, [i]))),
          store(q, i, cast('uint8', load(f, [i]))),
          store(h, i, cast('int16', load(a, [i]))),
          store(g, i, cast('int8', add(cast('int16', load(a, [i])), c(200, 'int16')))),
          store(q, i, cast('uint8', load(a, [i]))),
          store(o, i, add(cast('float32', load(a, [i])), cast('float32', cast('int8', i)))),
          store(k, i, cast('bool', load(a, [i]))),
          store(y, i, cast('int8', load(kb, [i]))),
        ),
      ),
      [f, a, kb],
      [y, q, h, g, o, k],
    );
    expect(printAfter(before, TARGET_CAPS.cuda)).toBe(
      text(`
kernel k(f: float32[4], a: int8[4], kb: bool[4], y: int8[4], q: uint8[4], h: int16[4], g: int8[4], o: float32[4], k: bool[4]) {
  for i in 0..4 {
    y[i] = int8(((int32(int64(f[i])) << 24) >> 24))
    q[i] = uint8((uint32(int64(f[i])) && 255:uint32))
    h[i] = int16(int32(a[i]))
    g[i] = int8((((((int32(a[i]) + 200) << 16) >> 16) << 24) >> 24))
    q[i] = uint8((uint32(int32(a[i])) && 255:uint32))
    o[i] = (float32(int32(a[i])) + float32(((i << 24) >> 24)))
    k[i] = bool(int32(a[i]))
    y[i] = int8(int32(kb[i]))
  }
}`),
    );
    const webgpu = printAfter(before, TARGET_CAPS.webgpu);
    expect(webgpu).toContain('y[i] = int8(((int32(f[i]) << 24) >> 24))');
    expect(webgpu).toContain('q[i] = uint8((uint32(int32(f[i])) && 255:uint32))');
  });

  it('variables become int32/uint32; constants are wrapped (folded where all operands are constants)', () => {
    const a = buffer('a', 'int16', 4),
      y = buffer('y', 'int16', 1),
      acc = named('acc', 'int16');
    const before = func(
      {
        k: 'decl',
        v: acc,
        init: add(c(30000, 'int16'), c(30000, 'int16')),
        body: seq(loop(i, 4, { k: 'assign', v: acc, value: add(acc, load(a, [i])) }), store(y, int(0), acc)),
      },
      [a],
      [y],
    );
    expect(printAfter(before)).toBe(
      text(`
kernel k(a: int16[4], y: int16[1]) {
  let acc: int32 = -5536
  for i in 0..4 {
    acc = (((acc + int32(a[i])) << 16) >> 16)
  }
  y[0] = int16(acc)
}`),
    );
  });

  it('bool arithmetic computes in int32 and compares with 0; bool logic and selects stay bool', () => {
    const p = buffer('p', 'bool', 4),
      y = buffer('y', 'bool', 4);
    const x = load(p, [i]);
    const before = func(
      loop(i, 4, seq(store(y, i, add(x, x)), store(y, i, binary('and', x, unary('not', x))))),
      [p],
      [y],
    );
    expect(printAfter(before)).toBe(
      text(`
kernel k(p: bool[4], y: bool[4]) {
  for i in 0..4 {
    y[i] = ((int32(p[i]) + int32(p[i])) != 0)
    y[i] = (p[i] && not(p[i]))
  }
}`),
    );
  });

  it('leaves kernels without narrow integers as they are (the same expression objects), keeps shared subtrees shared', () => {
    const x = buffer('x', 'float32', 4),
      o = buffer('o', 'float32', 4);
    const v = add(load(x, [i]), constant(1, 'float32'));
    const f = func(loop(i, 4, store(o, i, mul(v, v))), [x], [o]);
    const after = runLoopPasses(f, [narrowPass(TARGET_CAPS.wasm)], {});
    const st = (after.body as Extract<Stmt, { k: 'for' }>).body as Extract<Stmt, { k: 'store' }>;
    expect(st.value).toBe(((f.body as Extract<Stmt, { k: 'for' }>).body as Extract<Stmt, { k: 'store' }>).value);

    const a = i8('a'),
      y = i8('y');
    const s = add(load(a, [i]), load(a, [i]));
    const g = runLoopPasses(func(loop(i, 4, store(y, i, mul(s, s))), [a], [y]), [narrowPass(TARGET_CAPS.wasm)], {});
    const value = (
      ((g.body as Extract<Stmt, { k: 'for' }>).body as Extract<Stmt, { k: 'store' }>).value as Extract<
        Expr,
        { k: 'cast' }
      >
    ).a;
    // int8(((m << 24) >> 24)) with m = (s' * s'): both operands the same node
    const m = ((value as Extract<Expr, { k: 'bin' }>).a as Extract<Expr, { k: 'bin' }>).a as Extract<
      Expr,
      { k: 'bin' }
    >;
    expect(m.op).toBe('mul');
    expect(m.a).toBe(m.b);
  });

  it('the index simplifier keeps the wraps (it folds neither shl nor shr, and reads int32 and as bitwise)', () => {
    const a = i8('a'),
      u = buffer('u', 'uint8', 4),
      y = i8('y'),
      z = buffer('z', 'uint8', 4);
    const after = runLoopPasses(
      func(
        loop(
          i,
          4,
          seq(
            store(y, i, add(load(a, [i]), constant(1, 'int8'))),
            store(z, i, add(load(u, [i]), constant(1, 'uint8'))),
          ),
        ),
        [a, u],
        [y, z],
      ),
      [narrowPass(TARGET_CAPS.wasm)],
      {},
    );
    const printed = printPrimFunc(after);
    const values = ((after.body as Extract<Stmt, { k: 'for' }>).body as Extract<Stmt, { k: 'seq' }>).body.map(
      (st) => (st as Extract<Stmt, { k: 'store' }>).value,
    );
    for (const v of values) expect(printExpr(simplify(v, new Map([[i, { lo: 0, hi: 3 }]])))).toBe(printExpr(v));
    expect(printed).toContain('y[i] = int8((((int32(a[i]) + 1) << 24) >> 24))');
    expect(printed).toContain('z[i] = uint8(((uint32(u[i]) + 1:uint32) && 255:uint32))');
  });

  it("wrapValue: two's complement wrap into each narrow dtype", () => {
    expect([200, -129, 128, 70000].map((v) => wrapValue(v, 'int8'))).toEqual([-56, 127, -128, 112]);
    expect([-1, 256, 300].map((v) => wrapValue(v, 'uint8'))).toEqual([255, 0, 44]);
    expect([40000, -32769].map((v) => wrapValue(v, 'int16'))).toEqual([-25536, 32767]);
    expect([-1, 70000].map((v) => wrapValue(v, 'uint16'))).toEqual([65535, 4464]);
  });
});

/** Overflowing narrow integer arithmetic: Add, Sub, Mul, Neg, Abs(-128), BitShift left, Cast from float beyond range. */
const OVERFLOW: ModelSpec = {
  opset: 18,
  inputs: [
    ['a', 'int8', [8]],
    ['b', 'int8', [8]],
    ['u', 'uint8', [8]],
    ['n', 'uint8', [8]],
    ['s', 'int16', [8]],
    ['f', 'float32', [8]],
  ],
  outputs: [
    ['add', 'int8', [8]],
    ['sub', 'int8', [8]],
    ['mul', 'int8', [8]],
    ['neg', 'int8', [8]],
    ['abs', 'int8', [8]],
    ['uadd', 'uint8', [8]],
    ['shl', 'uint8', [8]],
    ['smul', 'int16', [8]],
    ['f8', 'int8', [8]],
    ['fu8', 'uint8', [8]],
    ['f16', 'int16', [8]],
    ['chain', 'float32', [8]],
  ],
  nodes: [
    { op: 'Add', inputs: ['a', 'b'], outputs: ['add'] },
    { op: 'Sub', inputs: ['a', 'b'], outputs: ['sub'] },
    { op: 'Mul', inputs: ['a', 'b'], outputs: ['mul'] },
    { op: 'Neg', inputs: ['a'], outputs: ['neg'] },
    { op: 'Abs', inputs: ['a'], outputs: ['abs'] },
    { op: 'Add', inputs: ['u', 'u'], outputs: ['uadd'] },
    { op: 'BitShift', inputs: ['u', 'n'], outputs: ['shl'], attrs: { direction: 'LEFT' } },
    { op: 'Mul', inputs: ['s', 's'], outputs: ['smul'] },
    { op: 'Cast', inputs: ['f'], outputs: ['f8'], attrs: { to: 3 } },
    { op: 'Cast', inputs: ['f'], outputs: ['fu8'], attrs: { to: 2 } },
    { op: 'Cast', inputs: ['f'], outputs: ['f16'], attrs: { to: 5 } },
    // a wrapped intermediate read by float arithmetic in the same kernel: (a + b) * 2 as float
    { op: 'Mul', inputs: ['a', 'b'], outputs: ['m2'] },
    { op: 'Add', inputs: ['m2', 'a'], outputs: ['m3'] },
    { op: 'Cast', inputs: ['m3'], outputs: ['m4'], attrs: { to: 1 } },
    { op: 'Add', inputs: ['m4', 'f'], outputs: ['chain'] },
  ],
};
const t = (dtype: Tensor['dtype'], data: ArrayLike<number>): Tensor => {
  const C = { int8: Int8Array, uint8: Uint8Array, int16: Int16Array, float32: Float32Array }[
    dtype as 'int8' | 'uint8' | 'int16' | 'float32'
  ];
  return { dtype, shape: [data.length], data: C.from(data) };
};
const FEEDS: Record<string, Tensor> = {
  a: t('int8', [100, -128, 127, 3, -100, 64, -1, -128]),
  b: t('int8', [100, -1, 1, 3, -100, 2, -128, -128]),
  u: t('uint8', [200, 255, 128, 3, 1, 0, 17, 99]),
  n: t('uint8', [1, 1, 2, 4, 7, 0, 3, 1]),
  s: t('int16', [200, -256, 30000, 3, -32768, 181, 182, -1]),
  f: t('float32', [300.7, -200.2, 1000, -129, 70000.5, -3.9, 127.9, 255.5]),
};

describe('narrow: overflowing int8/uint8/int16 arithmetic against ONNX Runtime', () => {
  const bytes = buildModel(OVERFLOW);
  const check = async (got: Record<string, Tensor>) => {
    const want = await runOrt(bytes, FEEDS);
    for (const [name, w] of Object.entries(want)) expect(compareTensors(got[name], w)?.message, name).toBeUndefined();
  };

  it('WebAssembly', async () => {
    const { artifact } = await compile(bytes);
    await check((await loadArtifact(artifact, { threads: 1 })).runSync(FEEDS));
  });

  it('WebGPU (SwiftShader)', async () => {
    const { artifact } = await compile(bytes, { target: 'webgpu' });
    const model = await loadArtifact(artifact, { target: 'webgpu', device: await nodeGpuDevice() });
    try {
      await check(await model.run(FEEDS));
    } finally {
      model.dispose?.();
    }
  });

  it('PTX simulator', async () => {
    const { artifact } = await compile(bytes, { target: 'cuda', sm: 86, optimize: false });
    await check((await runCudaSim(artifact, FEEDS)).outputs);
  });
});
