// 64-bit integers as pairs of uint32 words (src/codegen/common/int64-pairs.ts, pass split-int64), for WebGPU: the
// pass written as Before -> Expected on printed loop IR; every operation evaluated on the lowered loop IR (words
// as uint32, WGSL's semantics) against BigInt for edge and random values; then ONNX models with int64 arithmetic
// compiled for WebGPU and run on Dawn/SwiftShader against ONNX Runtime (BigInt where ONNX Runtime is wrong or
// ONNX leaves the result undefined).
import { describe, expect, it } from 'vitest';
import {
  type BinOp,
  type Expr,
  type UnOp,
  type Var,
  add,
  binary,
  cast,
  constant,
  div,
  int,
  load,
  mod,
  select,
  shl,
  unary,
} from '../src/tensor-expr/expr.js';
import type { DType } from '../src/runtime/dtype.js';
import { type PrimFunc, type Stmt, buffer, printPrimFunc } from '../src/schedule/loop-ir.js';
import { runLoopPasses } from '../src/schedule/loop-passes.js';
import { TARGET_CAPS } from '../src/codegen/common/target-caps.js';
import { floorDivPass } from '../src/codegen/common/legalize.js';
import { int64PairsPass } from '../src/codegen/common/int64-pairs.js';
import { WGSL_LOOP_PASSES, WGSL_LOOP_RUN, emitWgslKernel } from '../src/codegen/wgsl/codegen.js';
import { compile, load as loadArtifact, type Tensor } from '../src/index.js';
import { nodeGpuDevice } from '../src/conformance/node-webgpu.js';
import { compareTensors } from '../src/conformance/compare.js';
import { buildModel, type ModelSpec } from '../src/frontend/onnx/model-builder.js';
import { runOrt } from './helpers/ort.js';
import { func, loop, named, store, text } from './helpers/loop-ir-builders.js';

const WEBGPU = TARGET_CAPS.webgpu;
const seq = (...body: Stmt[]): Stmt => ({ k: 'seq', body });
/** legalize-floordiv and split-int64 for WebGPU (verified before and after), printed. */
const lower = (f: PrimFunc, caps = WEBGPU) =>
  runLoopPasses(f, [floorDivPass(caps), int64PairsPass(caps)], { input: 'before', check: {} });
const printAfter = (f: PrimFunc) => printPrimFunc(lower(f));
const c64 = (v: bigint, t: DType = 'int64') => constant(v, t);

describe('split-int64: Before -> Expected', () => {
  const i = named('i');
  const a = buffer('a', 'int64', 4),
    b = buffer('b', 'int64', 4),
    y = buffer('y', 'int64', 4),
    z = buffer('z', 'int32', 4);

  it('an int64 read through a cast to int32 loads its low word only; buffers keep their names, twice the words', () => {
    const before = func(loop(i, 4, store(z, i, cast('int32', load(a, [i])))), [a], [z]);
    expect(printAfter(before)).toBe(
      text(`
kernel k(a: uint32[8], z: int32[4]) {
  for i in 0..4 {
    z[i] = int32(a[(i * 2)])
  }
}`),
    );
  });

  it('add: the low words once, the carry from them; an add whose high word is unread is one uint32 add', () => {
    const before = func(
      loop(
        i,
        4,
        seq(store(y, i, add(load(a, [i]), load(b, [i]))), store(z, i, cast('int32', add(load(a, [i]), c64(5n))))),
      ),
      [a, b],
      [y, z],
    );
    expect(printAfter(before)).toBe(
      text(`
kernel k(a: uint32[8], b: uint32[8], y: uint32[8], z: int32[4]) {
  for i in 0..4 {
    let al_0: uint32 = a[(i * 2)]
    let lo_1: uint32 = (al_0 + b[(i * 2)])
    y[(i * 2)] = lo_1
    y[((i * 2) + 1)] = ((a[((i * 2) + 1)] + b[((i * 2) + 1)]) + uint32((lo_1 < al_0)))
    z[i] = int32((a[(i * 2)] + 5:uint32))
  }
}`),
    );
  });

  it('an int64 accumulator is two uint32 variables; the high word is computed before the low word is assigned', () => {
    const acc = named('acc', 'int64');
    const o = buffer('o', 'int64', 1);
    const before = func(
      {
        k: 'decl',
        v: acc,
        init: c64(0n),
        body: seq(loop(i, 4, { k: 'assign', v: acc, value: add(acc, load(a, [i])) }), store(o, int(0), acc)),
      },
      [a],
      [o],
    );
    expect(printAfter(before)).toBe(
      text(`
kernel k(a: uint32[8], o: uint32[2]) {
  let acc_lo_0: uint32 = 0:uint32
  let acc_hi_1: uint32 = 0:uint32
  for i in 0..4 {
    let lo_2: uint32 = (acc_lo_0 + a[(i * 2)])
    let hi_3: uint32 = ((acc_hi_1 + a[((i * 2) + 1)]) + uint32((lo_2 < acc_lo_0)))
    acc_lo_0 = lo_2
    acc_hi_1 = hi_3
  }
  o[0] = acc_lo_0
  o[1] = acc_hi_1
}`),
    );
  });

  it('constants are word pairs, folded: a shift by a constant picks its words, a shift by 0 is the value', () => {
    const u = buffer('u', 'uint64', 4),
      v = buffer('v', 'uint64', 4);
    const before = func(
      loop(
        i,
        4,
        seq(
          store(v, i, shl(load(u, [i]), c64(40n, 'uint64'))),
          store(y, i, binary('shr', load(a, [i]), c64(33n))),
          store(y, i, binary('shr', load(a, [i]), c64(64n))),
          store(y, i, add(c64(-1n), c64(1n << 40n))),
        ),
      ),
      [u, a],
      [v, y],
    );
    expect(printAfter(before)).toBe(
      text(`
kernel k(u: uint32[8], a: uint32[8], v: uint32[8], y: uint32[8]) {
  for i in 0..4 {
    v[(i * 2)] = 0:uint32
    v[((i * 2) + 1)] = (u[(i * 2)] << 8:uint32)
    let h_0: uint32 = a[((i * 2) + 1)]
    y[(i * 2)] = uint32((int32(h_0) >> 1))
    y[((i * 2) + 1)] = uint32((int32(h_0) >> 31))
    y[(i * 2)] = a[(i * 2)]
    y[((i * 2) + 1)] = a[((i * 2) + 1)]
    y[(i * 2)] = 4294967295:uint32
    y[((i * 2) + 1)] = 255:uint32
  }
}`),
    );
  });

  it('division: one loop over the 64 bits before the statement, shared by div and mod of the same operands', () => {
    const u = buffer('u', 'uint64', 4),
      w = buffer('w', 'uint64', 4);
    const x = load(u, [i]),
      d = load(w, [i]);
    const before = func(loop(i, 4, store(u, i, add(div(x, d), mod(x, d)))), [w], [u]);
    const out = printAfter(before);
    expect(out.match(/for bit_\d+ in 0\.\.64/g)).toHaveLength(1);
    expect(out).toContain('if ((dlo_2 || dhi_3) == 0:uint32) {'); // by zero: all ones and the dividend
    expect(out).toContain('if ((nhi_1 || dhi_3) == 0:uint32) {'); // both in one word: one uint32 division
    expect(out).toContain('ql_4 = (nlo_0 / dlo_2)');
    expect(out).toContain('rl_6 = (nlo_0 % dlo_2)');
  });

  it("a store's high word that reads the buffer stored to is computed before the low word's store", () => {
    const u = buffer('u', 'uint64', 4);
    const before = func(loop(i, 4, store(u, i, shl(load(u, [i]), c64(32n, 'uint64')))), [], [u]);
    expect(printAfter(before)).toBe(
      text(`
kernel k(u: uint32[8]) {
  for i in 0..4 {
    let hi_0: uint32 = u[(i * 2)]
    u[(i * 2)] = 0:uint32
    u[((i * 2) + 1)] = hi_0
  }
}`),
    );
  });

  it('int64 floor division is legalized to div/mod first (one place for floor semantics), then split', () => {
    const before = func(loop(i, 4, store(y, i, binary('floordiv', load(a, [i]), c64(8n)))), [a], [y]);
    expect(printAfter(before)).toBe(
      text(`
kernel k(a: uint32[8], y: uint32[8]) {
  for i in 0..4 {
    let h_0: uint32 = a[((i * 2) + 1)]
    y[(i * 2)] = ((a[(i * 2)] >> 3:uint32) || (h_0 << 29:uint32))
    y[((i * 2) + 1)] = uint32((int32(h_0) >> 3))
  }
}`),
    );
  });

  it('leaves kernels without 64-bit values as they are (the same object)', () => {
    const f = buffer('f', 'float32', 4);
    const before = func(loop(i, 4, store(z, i, cast('int32', load(f, [i])))), [f], [z]);
    expect(int64PairsPass(WEBGPU).run(before)).toBe(before);
  });

  it("select arms: hoisted on WebGPU ('any'); kept in the arm on a 'pure' target, and a division there refused", () => {
    const pure = { ...WEBGPU, speculation: 'pure' as const };
    const cond = buffer('p', 'bool', 4);
    const sel = (v: Expr) => select(load(cond, [i]), v, c64(0n));
    const kernel = (v: Expr) => func(loop(i, 4, store(y, i, sel(v))), [cond, a, b], [y]);
    const sum = add(load(a, [i]), load(b, [i]));
    expect(printAfter(kernel(sum))).toContain('let al_');
    const kept = printPrimFunc(lower(kernel(sum), pure));
    expect(kept).not.toContain('let al_');
    expect(kept).toContain(
      'select(c_0, ((a[((i * 2) + 1)] + b[((i * 2) + 1)]) + uint32(((a[(i * 2)] + b[(i * 2)]) < a[(i * 2)]))), 0:uint32)',
    );
    expect(() => lower(kernel(div(load(a, [i]), load(b, [i]))), pure)).toThrow(/division in a select arm/);
  });

  it('WGSL: u32 buffers and words, no vec2 and no 64-bit helpers; int64 local buffers are u32 arrays of twice the size', () => {
    const l = buffer('l', 'int64', 2, 'local');
    const body: Stmt = {
      k: 'alloc',
      buf: l,
      body: seq(store(l, int(0), load(a, [i])), store(l, int(1), load(b, [i])), store(y, i, load(l, [int(1)]))),
    };
    const f = func(loop(i, 4, body, 'threadIdx.x'), [a, b], [y]);
    const lowered = runLoopPasses(f, WGSL_LOOP_PASSES, WGSL_LOOP_RUN);
    expect(printPrimFunc(lowered)).toContain('alloc l: uint32[4] (local)');
    const [stage] = emitWgslKernel(f);
    expect(stage.code).toContain('var<storage, read> b_a: array<u32>;');
    expect(stage.code).toMatch(/var l_l\d+: array<u32, 4>;/);
    expect(stage.code).not.toMatch(/vec2<u32>|fn kiln_/);
  });
});

// ---- the lowered loop IR evaluated with WGSL's 32-bit semantics

type Val = number;
type Mem = Map<string, Val[]>;
const fr = Math.fround;
/** float -> int32/uint32 as WGSL converts at run time: truncated, clamped to the range (NaN: 0). */
const clampTo = (v: number, lo: number, hi: number) =>
  Number.isNaN(v) ? 0 : Math.min(hi, Math.max(lo, Math.trunc(v)));

function evalExpr(e: Expr, env: Map<Var, Val>, mem: Mem): Val {
  const ev = (x: Expr) => evalExpr(x, env, mem);
  switch (e.k) {
    case 'const':
      return Number(e.value);
    case 'var': {
      const v = env.get(e);
      if (v === undefined) throw new Error(`unbound ${e.name}`);
      return v;
    }
    case 'load':
      return mem.get(e.buf.name)![ev(e.idx[0])];
    case 'select':
      return ev(e.c) ? ev(e.a) : ev(e.b);
    case 'cast': {
      const v = ev(e.a),
        from = e.a.dtype;
      switch (e.dtype) {
        case 'float32':
          return fr(v);
        case 'bool':
          return +(v !== 0);
        case 'uint32':
          return from === 'float32' ? clampTo(v, 0, 2 ** 32 - 1) : v >>> 0;
        case 'int32':
          return from === 'float32' ? clampTo(v, -(2 ** 31), 2 ** 31 - 1) : v | 0;
        default:
          throw new Error(`evaluator: cast to ${e.dtype}`);
      }
    }
    case 'un': {
      const v = ev(e.a);
      const t = e.a.dtype;
      const ops: Partial<Record<UnOp, () => Val>> = {
        neg: () => (t === 'float32' ? -v : t === 'uint32' ? -v >>> 0 : -v | 0),
        abs: () => (t === 'float32' ? Math.abs(v) : Math.abs(v) | 0),
        bitnot: () => (t === 'uint32' ? ~v >>> 0 : ~v),
        not: () => +!v,
        isnan: () => +Number.isNaN(v),
        floor: () => Math.floor(v),
      };
      const f = ops[e.op];
      if (!f) throw new Error(`evaluator: ${e.op}`);
      return f();
    }
    case 'bin': {
      const x = ev(e.a),
        y = ev(e.b),
        t = e.a.dtype;
      const w = (v: number) => (t === 'uint32' ? v >>> 0 : t === 'int32' ? v | 0 : t === 'float32' ? fr(v) : v);
      const ops: Partial<Record<BinOp, () => Val>> = {
        add: () => w(x + y),
        sub: () => w(x - y),
        mul: () => (t === 'float32' ? fr(x * y) : w(Math.imul(x, y))),
        div: () => (t === 'float32' ? fr(x / y) : y === 0 ? x : w(Math.trunc(x / y))),
        mod: () => (y === 0 ? 0 : w(x % y)),
        and: () => (t === 'bool' ? +(x && y) : w(x & y)),
        or: () => (t === 'bool' ? +(x || y) : w(x | y)),
        xor: () => w(x ^ y),
        // WGSL: the amount mod 32 (the pass never shifts by more than 31)
        shl: () => w(x << (y & 31)),
        shr: () => (t === 'uint32' ? x >>> (y & 31) : x >> (y & 31)),
        eq: () => +(x === y),
        ne: () => +(x !== y),
        lt: () => +(x < y),
        le: () => +(x <= y),
        gt: () => +(x > y),
        ge: () => +(x >= y),
      };
      const f = ops[e.op];
      if (!f) throw new Error(`evaluator: ${e.op}`);
      return f();
    }
    default:
      throw new Error(`evaluator: ${e.k}`);
  }
}

function evalStmt(s: Stmt, env: Map<Var, Val>, mem: Mem): void {
  switch (s.k) {
    case 'seq':
      for (const b of s.body) evalStmt(b, env, mem);
      return;
    case 'for':
      for (let k = 0; k < s.extent; k++) {
        env.set(s.v, k);
        evalStmt(s.body, env, mem);
      }
      return;
    case 'decl':
      env.set(s.v, evalExpr(s.init, env, mem));
      evalStmt(s.body, env, mem);
      return;
    case 'assign':
      env.set(s.v, evalExpr(s.value, env, mem));
      return;
    case 'if':
      if (evalExpr(s.cond, env, mem)) evalStmt(s.then, env, mem);
      else if (s.else) evalStmt(s.else, env, mem);
      return;
    case 'store':
      mem.get(s.buf.name)![evalExpr(s.index, env, mem)] = evalExpr(s.value, env, mem);
      return;
    default:
      throw new Error(`evaluator: ${s.k}`);
  }
}

const words = (v: bigint): [number, number] => {
  const u = BigInt.asUintN(64, v);
  return [Number(u & 0xffffffffn), Number(u >> 32n)];
};
const fromWords = (lo: number, hi: number, t: DType): bigint => {
  const u = (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
  return t === 'int64' ? BigInt.asIntN(64, u) : u;
};

/**
 * `y[i] = body(a[i], b[i])` for 64-bit `a`, `b` of dtype `t` (or `ta`, `tb`), lowered for WebGPU and evaluated
 * for each pair of values; returns the results (64-bit as bigint, others as numbers).
 */
function runLowered(
  body: (x: Expr, y: Expr) => Expr,
  ta: DType,
  tb: DType,
  xs: readonly (bigint | number)[],
  ys: readonly (bigint | number)[],
): (bigint | number)[] {
  const n = xs.length;
  const i = named('i');
  const A = buffer('a', ta, n),
    B = buffer('b', tb, n);
  const value = body(load(A, [i]), load(B, [i]));
  const Y = buffer('y', value.dtype, n);
  const lowered = lower(func(loop(i, n, store(Y, i, value)), [A, B], [Y]));
  const wide = (t: DType) => t === 'int64' || t === 'uint64';
  const fill = (t: DType, vs: readonly (bigint | number)[]) =>
    wide(t) ? vs.flatMap((v) => words(BigInt(v))) : vs.map((v) => (t === 'float32' ? fr(Number(v)) : Number(v)));
  const mem: Mem = new Map([
    ['a', fill(ta, xs)],
    ['b', fill(tb, ys)],
    ['y', new Array((wide(value.dtype) ? 2 : 1) * n).fill(0)],
  ]);
  evalStmt(lowered.body, new Map(), mem);
  const out = mem.get('y')!;
  return xs.map((_, k) => (wide(value.dtype) ? fromWords(out[2 * k], out[2 * k + 1], value.dtype) : out[k]));
}

// edge values and random ones (a fixed xorshift, so every run checks the same)
const EDGES = [
  0n,
  1n,
  -1n,
  2n,
  -2n,
  3n,
  7n,
  -7n,
  0x7fffffffn,
  0x80000000n,
  -0x80000000n,
  0xffffffffn,
  0x100000000n,
  -0x100000000n,
  0x1ffffffffn,
  0x123456789abcdefn,
  -0x123456789abcdefn,
  (1n << 63n) - 1n,
  -(1n << 63n),
  (1n << 62n) + 12345n,
];
function randoms(n: number, seed: bigint): bigint[] {
  let s = seed;
  const out: bigint[] = [];
  for (let k = 0; k < n; k++) {
    s ^= (s << 13n) & 0xffffffffffffffffn;
    s ^= s >> 7n;
    s ^= (s << 17n) & 0xffffffffffffffffn;
    // a mix of widths: full 64-bit, 33-bit and small values
    const v = k % 3 === 0 ? s : k % 3 === 1 ? s & 0x1ffffffffn : s & 0xffn;
    out.push(BigInt.asIntN(64, (s >> 11n) & 1n ? -v : v));
  }
  return out;
}
const VALUES = [...EDGES, ...randoms(40, 0x9e3779b97f4a7c15n)];
/** Every pair of VALUES, as two lists. */
const PAIRS = (() => {
  const xs: bigint[] = [],
    ys: bigint[] = [];
  for (const x of VALUES)
    for (const y of VALUES) {
      xs.push(x);
      ys.push(y);
    }
  return { xs, ys };
})();

const I64 = (v: bigint) => BigInt.asIntN(64, v),
  U64 = (v: bigint) => BigInt.asUintN(64, v);
const truncDiv = (x: bigint, y: bigint) => x / y; // BigInt division truncates, % has the dividend's sign
function powRef(x: bigint, e: bigint, signed: boolean): bigint {
  const w = signed ? I64 : U64;
  if (signed && e < 0n) return x === 1n ? 1n : x === -1n ? (e & 1n ? -1n : 1n) : 0n;
  let r = 1n,
    b = U64(x),
    n = U64(e);
  while (n) {
    if (n & 1n) r = U64(r * b);
    b = U64(b * b);
    n >>= 1n;
  }
  return w(r);
}
/** float32 nearest to `v`, ties to even (what a correctly rounded int64 -> float32 gives). */
function roundF32(v: bigint): number {
  const neg = v < 0n,
    m = neg ? -v : v;
  const bits = m.toString(2).length;
  if (bits <= 24) return Number(v);
  const shift = BigInt(bits - 24);
  let q = m >> shift;
  const rem = m & ((1n << shift) - 1n),
    half = 1n << (shift - 1n);
  if (rem > half || (rem === half && q & 1n)) q++;
  const r = Number(q) * 2 ** Number(shift);
  return neg ? -r : r;
}
/** i64.trunc_sat_f32_s / _u. */
function truncSat(f: number, signed: boolean): bigint {
  const lo = signed ? -(1n << 63n) : 0n,
    hi = signed ? (1n << 63n) - 1n : (1n << 64n) - 1n;
  if (Number.isNaN(f)) return 0n;
  if (!Number.isFinite(f)) return f > 0 ? hi : lo;
  const t = BigInt(Math.trunc(f));
  return t < lo ? lo : t > hi ? hi : t;
}

describe('split-int64: every operation on the lowered loop IR (WGSL 32-bit semantics) against BigInt', () => {
  const { xs, ys } = PAIRS;
  const nonzero = ys.map((y) => (y === 0n ? 3n : y));
  const binCases: [string, (x: Expr, y: Expr) => Expr, (x: bigint, y: bigint, s: boolean) => bigint | boolean][] = [
    ['add', (x, y) => binary('add', x, y), (x, y) => x + y],
    ['sub', (x, y) => binary('sub', x, y), (x, y) => x - y],
    ['mul', (x, y) => binary('mul', x, y), (x, y) => x * y],
    ['and', (x, y) => binary('and', x, y), (x, y) => x & y],
    ['or', (x, y) => binary('or', x, y), (x, y) => x | y],
    ['xor', (x, y) => binary('xor', x, y), (x, y) => x ^ y],
    // biome-ignore lint/complexity/useMathMinMax: bigint
    ['min', (x, y) => binary('min', x, y), (x, y) => (y < x ? y : x)],
    // biome-ignore lint/complexity/useMathMinMax: bigint
    ['max', (x, y) => binary('max', x, y), (x, y) => (y > x ? y : x)],
    ['eq', (x, y) => binary('eq', x, y), (x, y) => x === y],
    ['ne', (x, y) => binary('ne', x, y), (x, y) => x !== y],
    ['lt', (x, y) => binary('lt', x, y), (x, y) => x < y],
    ['le', (x, y) => binary('le', x, y), (x, y) => x <= y],
    ['gt', (x, y) => binary('gt', x, y), (x, y) => x > y],
    ['ge', (x, y) => binary('ge', x, y), (x, y) => x >= y],
    ['shl', (x, y) => binary('shl', x, y), (x, y) => x << (U64(y) & 63n)],
    ['shr', (x, y) => binary('shr', x, y), (x, y) => x >> (U64(y) & 63n)],
  ];
  for (const t of ['int64', 'uint64'] as const) {
    const signed = t === 'int64';
    const norm = signed ? I64 : U64;
    const X = xs.map(norm),
      Y = ys.map(norm);
    for (const [name, build, ref] of binCases) {
      it(`${t} ${name}`, () => {
        const got = runLowered(build, t, t, X, Y);
        const want = X.map((x, k) => {
          const r = ref(x, Y[k], signed);
          return typeof r === 'boolean' ? +r : norm(r);
        });
        expect(got).toEqual(want);
      });
    }
    it(`${t} div, mod, floordiv, floormod (by zero: all ones and the dividend, unsigned)`, () => {
      const D = nonzero.map(norm);
      expect(runLowered(div, t, t, X, D)).toEqual(X.map((x, k) => norm(truncDiv(x, D[k]))));
      expect(runLowered(mod, t, t, X, D)).toEqual(X.map((x, k) => norm(x % D[k])));
      const floorDiv = (x: bigint, d: bigint) => {
        const q = x / d;
        return x % d !== 0n && x < 0n !== d < 0n ? q - 1n : q;
      };
      expect(runLowered((x, y) => binary('floordiv', x, y), t, t, X, D)).toEqual(
        X.map((x, k) => norm(floorDiv(x, D[k]))),
      );
      expect(runLowered((x, y) => binary('floormod', x, y), t, t, X, D)).toEqual(
        X.map((x, k) => norm(x - floorDiv(x, D[k]) * D[k])),
      );
      const zeros = X.map(() => 0n);
      if (!signed) {
        expect(runLowered(div, t, t, X, zeros)).toEqual(X.map(() => U64(-1n)));
        expect(runLowered(mod, t, t, X, zeros)).toEqual(X);
      }
    });
    it(`${t} neg, abs, bitnot, sign`, () => {
      const un = (op: UnOp) => runLowered((x) => unary(op, x), t, t, X, X);
      expect(un('neg')).toEqual(X.map((x) => norm(-x)));
      expect(un('abs')).toEqual(X.map((x) => norm(x < 0n ? -x : x)));
      expect(un('bitnot')).toEqual(X.map((x) => norm(~x)));
      expect(un('sign')).toEqual(X.map((x) => norm(x > 0n ? 1n : x < 0n ? -1n : 0n)));
    });
    it(`${t} pow (small exponents, and negative ones for int64)`, () => {
      const E = VALUES.map((_, k) => BigInt((k % 70) - (signed ? 5 : 0)));
      const B = VALUES.map(norm);
      const got = runLowered((x, y) => binary('pow', x, y), t, t, B, E.map(norm));
      expect(got).toEqual(B.map((x, k) => norm(powRef(x, norm(E[k]), signed))));
    });
    it(`${t} casts: to int32, uint32, bool and float32 (correctly rounded); from int32, uint32 and bool`, () => {
      const V = VALUES.map(norm);
      const to = (d: DType) => runLowered((x) => cast(d, x), t, t, V, V);
      expect(to('int32')).toEqual(V.map((v) => Number(BigInt.asIntN(32, v))));
      expect(to('uint32')).toEqual(V.map((v) => Number(BigInt.asUintN(32, v))));
      expect(to('bool')).toEqual(V.map((v) => +(v !== 0n)));
      expect(to('float32')).toEqual(V.map(roundF32));
      const i32 = [0, 1, -1, 2147483647, -2147483648, 12345, -98765];
      expect(runLowered((x) => cast(t, x), 'int32', 'int32', i32, i32)).toEqual(i32.map((v) => norm(BigInt(v))));
      const u32 = [0, 1, 4294967295, 2147483648];
      expect(runLowered((x) => cast(t, x), 'uint32', 'uint32', u32, u32)).toEqual(u32.map((v) => BigInt(v)));
      expect(runLowered((x) => cast(t, x), 'bool', 'bool', [0, 1], [0, 1])).toEqual([0n, 1n]);
    });
    it(`${t} from float32: truncated, saturating, NaN -> 0`, () => {
      const F = [
        0,
        -0.5,
        0.99,
        -1.5,
        2.7,
        3e9,
        -3e9,
        2147483648,
        -2147483648,
        4294967296,
        4294967295.5,
        1.5e12,
        -1.5e12,
        1e15,
        -1e15,
        1e18,
        -7.9e18,
        9.2e18,
        -9.2e18,
        2 ** 63,
        -(2 ** 63),
        1.8e19,
        2 ** 64,
        1e30,
        -1e30,
        Number.NaN,
        Number.POSITIVE_INFINITY,
        Number.NEGATIVE_INFINITY,
      ].map(fr);
      expect(runLowered((x) => cast(t, x), 'float32', 'float32', F, F)).toEqual(F.map((f) => truncSat(f, signed)));
    });
  }
});

// ---- end to end: ONNX models on WebGPU (Dawn + SwiftShader) against ONNX Runtime

const i64 = (xs: bigint[]): Tensor => ({ dtype: 'int64', shape: [xs.length], data: BigInt64Array.from(xs) });
const u64 = (xs: bigint[]): Tensor => ({ dtype: 'uint64', shape: [xs.length], data: BigUint64Array.from(xs) });

async function runWebGpu(bytes: Uint8Array, feeds: Record<string, Tensor>) {
  const { artifact } = await compile(bytes, { target: 'webgpu' });
  const model = await loadArtifact(artifact, { target: 'webgpu', device: await nodeGpuDevice() });
  try {
    return await model.run(feeds);
  } finally {
    model.dispose?.();
  }
}
const big = (t: Tensor) => [...(t.data as BigInt64Array | BigUint64Array)];

describe('split-int64: ONNX models with int64 arithmetic on WebGPU against ONNX Runtime', () => {
  // carries and borrows across the words, both signs, the extremes (not INT64_MIN / -1: it traps in ONNX Runtime)
  const A = [
    0xffffffffn,
    -0xffffffffn,
    0x7fffffffffffffffn,
    -0x8000000000000000n,
    -7n,
    7n,
    -4294967296n,
    123456789012345n,
    -123456789012345n,
    1n << 40n,
    -(1n << 40n),
    5000000000n,
    -1n,
    0n,
    0x80000000n,
    99n,
  ];
  const B = [1n, -1n, 1n, -2n, 2n, -2n, 3n, -1000n, 4294967297n, -3n, 7n, -5000000001n, 3n, 5n, -0x80000000n, -100n];

  it('Add, Sub, Mul (wrapping), Div, Mod (floor and fmod), Min, Max, compares, Neg, Abs, Sign, casts', async () => {
    const n = A.length;
    const out = (
      name: string,
      dtype: 'int64' | 'bool' | 'float32' | 'int32' = 'int64',
    ): [string, typeof dtype, number[]] => [name, dtype, [n]];
    const spec: ModelSpec = {
      opset: 18,
      inputs: [
        ['a', 'int64', [n]],
        ['b', 'int64', [n]],
      ],
      outputs: [
        out('add'),
        out('sub'),
        out('mul'),
        out('div'),
        out('fmod_'),
        out('mod'),
        out('min'),
        out('max'),
        out('lt', 'bool'),
        out('gt', 'bool'),
        out('eq', 'bool'),
        out('neg'),
        out('abs'),
        out('sign'),
        out('tof', 'float32'),
        out('to32', 'int32'),
      ],
      nodes: [
        { op: 'Add', inputs: ['a', 'b'], outputs: ['add'] },
        { op: 'Sub', inputs: ['a', 'b'], outputs: ['sub'] },
        { op: 'Mul', inputs: ['a', 'b'], outputs: ['mul'] },
        { op: 'Div', inputs: ['a', 'b'], outputs: ['div'] },
        { op: 'Mod', inputs: ['a', 'b'], outputs: ['fmod_'], attrs: { fmod: 1 } },
        { op: 'Mod', inputs: ['a', 'b'], outputs: ['mod'] },
        { op: 'Min', inputs: ['a', 'b'], outputs: ['min'] },
        { op: 'Max', inputs: ['a', 'b'], outputs: ['max'] },
        { op: 'Less', inputs: ['a', 'b'], outputs: ['lt'] },
        { op: 'Greater', inputs: ['a', 'b'], outputs: ['gt'] },
        { op: 'Equal', inputs: ['a', 'b'], outputs: ['eq'] },
        { op: 'Neg', inputs: ['a'], outputs: ['neg'] },
        { op: 'Abs', inputs: ['a'], outputs: ['abs'] },
        { op: 'Sign', inputs: ['a'], outputs: ['sign'] },
        { op: 'Cast', inputs: ['a'], outputs: ['tof'], attrs: { to: 1 } },
        { op: 'Cast', inputs: ['a'], outputs: ['to32'], attrs: { to: 6 } },
      ],
    };
    const bytes = buildModel(spec);
    const feeds = { a: i64(A), b: i64(B) };
    const got = await runWebGpu(bytes, feeds);
    const want = await runOrt(bytes, feeds);
    // BigInt where ONNX Runtime is no reference: wrapping products (overflow is undefined in C++), Min/Max and Sign
    // (onnxruntime-node reads their low 32 bits: Sign(0xffffffff) = -1), Neg/Abs of INT64_MIN
    want.mul = i64(A.map((a, k) => I64(a * B[k])));
    want.min = i64(A.map((a, k) => (a < B[k] ? a : B[k])));
    want.max = i64(A.map((a, k) => (a > B[k] ? a : B[k])));
    want.neg = i64(A.map((a) => I64(-a)));
    want.abs = i64(A.map((a) => I64(a < 0n ? -a : a)));
    want.sign = i64(A.map((a) => (a > 0n ? 1n : a < 0n ? -1n : 0n)));
    for (const [name, w] of Object.entries(want)) expect(compareTensors(got[name], w)?.message, name).toBeUndefined();
    // the floor modulo has the divisor's sign, fmod the dividend's
    expect(big(got.mod)).toEqual(A.map((a, k) => ((a % B[k]) + B[k]) % B[k]));
    expect(big(got.fmod_)).toEqual(A.map((a, k) => a % B[k]));
  });

  it('uint64 BitShift by 0, 31, 32, 63; Pow; Cast from float32 (NaN and beyond the range saturate)', async () => {
    const X = [1n, 0xffffffffffffffffn, 0x8000000000000001n, 0x123456789abcdefn, 0xffffffffn, 0x100000000n, 3n, 0n];
    const S = [0n, 31n, 32n, 63n, 63n, 32n, 31n, 0n];
    const n = X.length;
    const P = [2n, -3n, 10n, -1n, -1n, 1n, 7n, 0n];
    const E = [62n, 39n, 18n, 7n, 8n, 100n, 22n, 0n];
    const F = [1.5, -2.7, 3e9, -1e15, Number.NaN, 1e30, -1e30, 9.3e18];
    const spec: ModelSpec = {
      opset: 18,
      inputs: [
        ['x', 'uint64', [n]],
        ['s', 'uint64', [n]],
        ['p', 'int64', [n]],
        ['e', 'int64', [n]],
        ['f', 'float32', [n]],
      ],
      outputs: [
        ['l', 'uint64', [n]],
        ['r', 'uint64', [n]],
        ['pw', 'int64', [n]],
        ['fi', 'int64', [n]],
      ],
      nodes: [
        { op: 'BitShift', inputs: ['x', 's'], outputs: ['l'], attrs: { direction: 'LEFT' } },
        { op: 'BitShift', inputs: ['x', 's'], outputs: ['r'], attrs: { direction: 'RIGHT' } },
        { op: 'Pow', inputs: ['p', 'e'], outputs: ['pw'] },
        { op: 'Cast', inputs: ['f'], outputs: ['fi'], attrs: { to: 7 } },
      ],
    };
    const bytes = buildModel(spec);
    const feeds = {
      x: u64(X),
      s: u64(S),
      p: i64(P),
      e: i64(E),
      f: { dtype: 'float32', shape: [n], data: Float32Array.from(F) } as Tensor,
    };
    const got = await runWebGpu(bytes, feeds);
    const want = await runOrt(bytes, feeds);
    expect(big(got.l)).toEqual(X.map((x, k) => U64(x << S[k])));
    expect(big(got.r)).toEqual(X.map((x, k) => x >> S[k]));
    expect(big(want.l)).toEqual(big(got.l));
    expect(big(want.r)).toEqual(big(got.r));
    // powers whose value ONNX Runtime computes exactly (within 2^53), and 2^62; overflowing ones wrap (BigInt)
    expect(big(got.pw)).toEqual(P.map((p, k) => powRef(p, E[k], true)));
    const exact = P.map((p, k) => powRef(p, E[k], true)).map((v, k) => (v > -(2n ** 53n) && v < 2n ** 53n) || k === 0);
    big(want.pw).forEach((w, k) => {
      if (exact[k]) expect(big(got.pw)[k], `pow ${k}`).toBe(w);
    });
    // in range: ONNX Runtime; NaN and out of range: i64.trunc_sat (C++ leaves them undefined)
    expect(big(got.fi)).toEqual(F.map((f) => truncSat(fr(f), true)));
    big(want.fi).forEach((w, k) => {
      if (Math.abs(F[k]) < 9e18) expect(big(got.fi)[k], `cast ${F[k]}`).toBe(w);
    });
  });
});
