// The shared lowering of src/codegen/common: lets for values used several times (bind.ts), floor division
// legalized into truncating div/mod (legalize.ts) and the transcendental library (math-expand.ts). Passes are
// written as Before -> Expected on printed loop IR; the forms are checked numerically by a float32 evaluator of
// the loop IR against Math.* (the node suites on WebGPU and the PTX simulator check them against ONNX Runtime).
import { describe, expect, it } from 'vitest';
import {
  type Expr,
  type Var,
  constant,
  floordiv,
  floormod,
  binary,
  add,
  mul,
  printExpr,
  int,
  load,
  lt,
  select,
  sub,
  unary,
} from '../src/tensor-expr/expr.js';
import { type PrimFunc, type Stmt, buffer, printPrimFunc } from '../src/schedule/loop-ir.js';
import { runLoopPasses } from '../src/schedule/loop-passes.js';
import { TARGET_CAPS, type TargetCaps } from '../src/codegen/common/target-caps.js';
import { rewriteWithLets } from '../src/codegen/common/bind.js';
import { isPure } from '../src/codegen/common/pure.js';
import { ExprIds, csePass, repeatedSubexpressions } from '../src/codegen/common/cse.js';
import { floorDivPass } from '../src/codegen/common/legalize.js';
import { MATH_FORMS, mathExpandPass } from '../src/codegen/common/math-expand.js';
import type { UnaryMathFn } from '../src/runtime/math.js';
import { erf } from '../src/runtime/math.js';
import { func, loop, named, store, text } from './helpers/loop-ir-builders.js';

/** Runs one pass (verified after, as every pass in tests) and prints the result. */
const printAfter = (f: PrimFunc, pass: ReturnType<typeof floorDivPass>) =>
  printPrimFunc(runLoopPasses(f, [pass], { input: 'before' }));

describe('bind: lets before the statement, nothing moved out of a guarded select arm', () => {
  const x = buffer('x', 'float32', 8),
    y = buffer('y', 'float32', 8);
  const i = named('i');
  // a rewrite that needs its argument twice: neg(v) -> v - 2v, with v bound
  const twice = (f: PrimFunc) =>
    printPrimFunc(
      rewriteWithLets(f, (e, ctx) => {
        if (e.k !== 'un' || e.op !== 'neg') return undefined;
        const v = ctx.bind(e.a, 'v');
        return sub(v, sub(v, sub(constant(0, 'float32'), v)));
      }),
    );

  it('binds the argument once before the statement (one load), and reuses it elsewhere in the statement', () => {
    const xi = load(x, [i]);
    const before = func(loop(i, 8, store(y, i, sub(unary('neg', xi), xi))), [x], [y]);
    expect(twice(before)).toBe(
      text(`
kernel k(x: float32[8], y: float32[8]) {
  for i in 0..8 {
    let v_0: float32 = x[i]
    y[i] = ((v_0 - (v_0 - (0:float32 - v_0))) - v_0)
  }
}`),
    );
  });

  it('keeps a load in a select arm where it is (it may be out of bounds when the arm is not chosen)', () => {
    const before = func(
      loop(i, 8, store(y, i, select(lt(i, int(7)), unary('neg', load(x, [int(7)])), constant(0, 'float32')))),
      [x],
      [y],
    );
    expect(twice(before)).toBe(
      text(`
kernel k(x: float32[8], y: float32[8]) {
  for i in 0..8 {
    y[i] = select((i < 7), (x[7] - (x[7] - (0:float32 - x[7]))), 0:float32)
  }
}`),
    );
  });

  it('lifts what is safe out of a select arm, and leaves a vectorized loop body whole', () => {
    const j = named('j');
    const before = func(
      loop(i, 2, {
        k: 'seq',
        body: [
          store(
            y,
            i,
            select(lt(i, int(1)), unary('neg', unary('abs', constant(3, 'float32'))), constant(0, 'float32')),
          ),
          loop(j, 4, store(y, j, unary('neg', load(x, [j]))), 'vectorized'),
        ],
      }),
      [x],
      [y],
    );
    expect(twice(before)).toBe(
      text(`
kernel k(x: float32[8], y: float32[8]) {
  for i in 0..2 {
    let v_0: float32 = abs(3:float32)
    y[i] = select((i < 1), (v_0 - (v_0 - (0:float32 - v_0))), 0:float32)
    for j in 0..4 (vectorized) {
      y[j] = (x[j] - (x[j] - (0:float32 - x[j])))
    }
  }
}`),
    );
  });

  it('isPure: no memory but registers, no integer division that may trap, no pow', () => {
    expect(isPure(floordiv(i, 3))).toBe(true);
    expect(isPure(floordiv(i, i))).toBe(false);
    expect(isPure(floordiv(i, -1))).toBe(false); // INT_MIN / -1 traps on WebAssembly
    expect(isPure(load(x, [i]))).toBe(false);
    expect(isPure(load(buffer('r', 'float32', 4, 'local'), [int(2)]))).toBe(true);
    expect(isPure(binary('pow', constant(2, 'float32'), constant(3, 'float32')))).toBe(false);
  });
});

describe('legalize-floordiv: Before -> Expected', () => {
  const a = buffer('a', 'int32', 8),
    b = buffer('b', 'int32', 8),
    o = buffer('o', 'int32', 8);
  const i = named('i');
  const pass = floorDivPass(TARGET_CAPS.webgpu);
  const one = (value: Expr) => func(loop(i, 8, store(o, i, value)), [a, b], [o]);

  it('a dividend the loop ranges prove >= 0 (through floor divisions legalized inside it): plain div/mod', () => {
    expect(printAfter(one(sub(floordiv(i, 3), floormod(floordiv(i, 2), 3))), pass)).toBe(
      text(`
kernel k(a: int32[8], b: int32[8], o: int32[8]) {
  for i in 0..8 {
    o[i] = ((i / 3) - ((i / 2) % 3))
  }
}`),
    );
  });

  it('a power-of-two divisor: arithmetic shifts', () => {
    const d = sub(i, 3);
    expect(printAfter(one(sub(floordiv(d, 4), floormod(d, 4))), pass)).toBe(
      text(`
kernel k(a: int32[8], b: int32[8], o: int32[8]) {
  for i in 0..8 {
    let fa_0: int32 = (i - 3)
    o[i] = ((fa_0 >> 2) - (fa_0 - ((fa_0 >> 2) << 2)))
  }
}`),
    );
  });

  it("another positive constant: the remainder's sign corrects the quotient (taken from it: one division)", () => {
    const d = sub(i, 3);
    expect(printAfter(one(sub(floordiv(d, 7), floormod(d, 7))), pass)).toBe(
      text(`
kernel k(a: int32[8], b: int32[8], o: int32[8]) {
  for i in 0..8 {
    let fa_0: int32 = (i - 3)
    let fq_1: int32 = (fa_0 / 7)
    let fr_2: int32 = (fa_0 % 7)
    o[i] = (select(((fa_0 - (fq_1 * 7)) < 0), (fq_1 - 1), fq_1) - select((fr_2 < 0), (fr_2 + 7), fr_2))
  }
}`),
    );
  });

  it('any divisor: dividend and divisor loaded once, remainder and divisor of opposite signs correct it', () => {
    expect(printAfter(one(floormod(load(a, [i]), load(b, [i]))), pass)).toBe(
      text(`
kernel k(a: int32[8], b: int32[8], o: int32[8]) {
  for i in 0..8 {
    let fa_0: int32 = a[i]
    let fb_1: int32 = b[i]
    let fr_2: int32 = (fa_0 % fb_1)
    o[i] = select(((fr_2 != 0) && ((fr_2 ^ fb_1) < 0)), (fr_2 + fb_1), fr_2)
  }
}`),
    );
  });

  it('floor division by any divisor: one division, the remainder from the quotient', () => {
    expect(printAfter(one(floordiv(load(a, [i]), load(b, [i]))), pass)).toBe(
      text(`
kernel k(a: int32[8], b: int32[8], o: int32[8]) {
  for i in 0..8 {
    let fa_0: int32 = a[i]
    let fb_1: int32 = b[i]
    let fq_2: int32 = (fa_0 / fb_1)
    let fr_3: int32 = (fa_0 - (fq_2 * fb_1))
    o[i] = select(((fr_3 != 0) && ((fr_3 ^ fb_1) < 0)), (fq_2 - 1), fq_2)
  }
}`),
    );
  });

  it('int64 is legalized for PTX (native 64-bit) and WebGPU (before split-int64 makes it u32 words) alike', () => {
    const l = buffer('l', 'int64', 8),
      lo = buffer('lo', 'int64', 8);
    const f = func(loop(i, 8, store(lo, i, floordiv(load(l, [i]), constant(4n, 'int64')))), [l], [lo]);
    expect(printAfter(f, floorDivPass(TARGET_CAPS.cuda))).toContain('lo[i] = (l[i] >> 2:int64)');
    expect(printAfter(f, pass)).toContain('lo[i] = (l[i] >> 2:int64)');
  });
});

describe('expand-math: Before -> Expected', () => {
  const x = buffer('x', 'float32', 8),
    y = buffer('y', 'float32', 8);
  const i = named('i');

  it('tanh on WebGPU (no overflowing builtin): the library form over exp, its argument loaded once', () => {
    const f = func(loop(i, 8, store(y, i, unary('tanh', load(x, [i])))), [x], [y]);
    expect(printAfter(f, mathExpandPass(TARGET_CAPS.webgpu))).toBe(
      text(`
kernel k(x: float32[8], y: float32[8]) {
  for i in 0..8 {
    let x_0: float32 = x[i]
    let ax_1: float32 = abs(x_0)
    let x2_2: float32 = (x_0 * x_0)
    let e_3: float32 = exp((ax_1 * -2:float32))
    let mg_4: float32 = ((1:float32 - e_3) / (1:float32 + e_3))
    y[i] = select((ax_1 < 0.125:float32), (((x_0 * x2_2) * ((((-0.05396825447678566:float32 * x2_2) + 0.13333334028720856:float32) * x2_2) + -0.3333333432674408:float32)) + x_0), select((x_0 < 0:float32), neg(mg_4), mg_4))
  }
}`),
    );
  });

  it('WGSL builtins and PTX approximations stay; float64 math goes through float32 on PTX', () => {
    const d = buffer('d', 'float64', 8),
      e = buffer('e', 'float64', 8);
    const f = func(loop(i, 8, store(e, i, unary('exp', load(d, [i])))), [d], [e]);
    expect(printAfter(f, mathExpandPass(TARGET_CAPS.cuda))).toContain('e[i] = float64(exp(float32(d[i])))');
    const g = func(loop(i, 8, store(y, i, unary('atan', load(x, [i])))), [x], [y]);
    expect(printAfter(g, mathExpandPass(TARGET_CAPS.webgpu))).toContain('y[i] = atan(x[i])');
    expect(printAfter(g, mathExpandPass(TARGET_CAPS.cuda))).not.toContain('atan(');
  });
});

// ---- a float32 evaluator of the loop IR (integers as int32), enough for the expansions
type Env = Map<Var, number>;
const f = Math.fround;
function evalExpr(e: Expr, env: Env, mem: Map<string, number[]>): number {
  const ev = (x: Expr) => evalExpr(x, env, mem);
  const fl = e.dtype === 'float32' || e.dtype === 'float64';
  const wrap = (v: number) => (fl ? f(v) : v | 0);
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
    case 'cast':
      return e.dtype === 'float32' ? f(ev(e.a)) : ev(e.a);
    case 'select':
      return ev(e.c) ? ev(e.a) : ev(e.b);
    case 'un': {
      const a = ev(e.a);
      const fn: Record<string, (v: number) => number> = {
        neg: (v) => -v,
        abs: Math.abs,
        sqrt: Math.sqrt,
        exp: Math.exp,
        log: Math.log,
        sin: Math.sin,
        cos: Math.cos,
      };
      if (!fn[e.op]) throw new Error(`evaluator: ${e.op}`);
      return wrap(fn[e.op](a));
    }
    case 'bin': {
      const a = ev(e.a),
        b = ev(e.b);
      switch (e.op) {
        case 'add':
          return wrap(a + b);
        case 'sub':
          return wrap(a - b);
        case 'mul':
          return fl ? f(a * b) : Math.imul(a, b);
        case 'div':
          return fl ? f(a / b) : Math.trunc(a / b) | 0;
        case 'mod':
          return (a % b) | 0;
        case 'shr':
          return a >> b;
        case 'shl':
          return a << b;
        case 'and':
          return e.dtype === 'bool' ? Number(a && b) : a & b;
        case 'xor':
          return a ^ b;
        case 'lt':
          return Number(a < b);
        case 'gt':
          return Number(a > b);
        case 'ne':
          return Number(a !== b);
        default:
          throw new Error(`evaluator: ${e.op}`);
      }
    }
    default:
      throw new Error(`evaluator: ${e.k}`);
  }
}
function evalStmt(s: Stmt, env: Env, mem: Map<string, number[]>): void {
  switch (s.k) {
    case 'seq':
      s.body.forEach((b) => evalStmt(b, env, mem));
      return;
    case 'decl':
      env.set(s.v, evalExpr(s.init, env, mem));
      evalStmt(s.body, env, mem);
      return;
    case 'store':
      mem.get(s.buf.name)![evalExpr(s.index, env, mem)] = evalExpr(s.value, env, mem);
      return;
    default:
      throw new Error(`evaluator: ${s.k}`);
  }
}
/** out[0] = body(in[0]) after `caps`' passes, evaluated for each input. */
function evaluator(caps: TargetCaps, dtype: 'float32' | 'int32', body: (x: Expr, y: Expr) => Expr) {
  const a = buffer('a', dtype, 2),
    o = buffer('o', dtype, 1);
  const fn = func(store(o, int(0), body(load(a, [int(0)]), load(a, [int(1)]))), [a], [o]);
  const lowered = runLoopPasses(fn, [floorDivPass(caps), mathExpandPass(caps)], { input: 'before' });
  return (x: number, y = 0) => {
    const mem = new Map([
      ['a', [x, y]],
      ['o', [0]],
    ]);
    evalStmt(lowered.body, new Map(), mem);
    return mem.get('o')![0];
  };
}

const REFERENCE: Record<string, (x: number) => number> = {
  tan: Math.tan,
  tanh: Math.tanh,
  sinh: Math.sinh,
  cosh: Math.cosh,
  atan: Math.atan,
  asin: Math.asin,
  acos: Math.acos,
  asinh: Math.asinh,
  acosh: Math.acosh,
  atanh: Math.atanh,
  erf,
};
const DOMAIN: Record<string, [number, number]> = {
  tan: [-1.5, 1.5],
  tanh: [-12, 12],
  sinh: [-10, 10],
  cosh: [-10, 10],
  atan: [-50, 50],
  asin: [-1, 1],
  acos: [-1, 1],
  asinh: [-100, 100],
  acosh: [1, 100],
  atanh: [-0.99, 0.99],
  erf: [-5, 5],
};

describe('the polynomial library against Math.* (float32 evaluation, PTX natives: exp, log, sin, cos)', () => {
  for (const op of Object.keys(MATH_FORMS) as UnaryMathFn[]) {
    it(`${op}: relative error below 2e-5 (or absolute below 1e-6) over [${DOMAIN[op]}]`, () => {
      const run = evaluator(TARGET_CAPS.cuda, 'float32', (x) => unary(op, x));
      const [lo, hi] = DOMAIN[op];
      let worst = 0;
      for (let k = 0; k <= 2000; k++) {
        const x = f(lo + ((hi - lo) * k) / 2000);
        const want = REFERENCE[op](x),
          got = run(x);
        const err = Math.abs(got - want) / Math.max(Math.abs(want), 0.05);
        worst = Math.max(worst, Math.abs(got - want) < 1e-6 ? 0 : err);
      }
      expect(worst).toBeLessThan(2e-5);
    });
  }
  it('tanh and erf on WebGPU: -> +-1 for large |x|, no NaN', () => {
    const tanh = evaluator(TARGET_CAPS.webgpu, 'float32', (x) => unary('tanh', x)),
      erfW = evaluator(TARGET_CAPS.webgpu, 'float32', (x) => unary('erf', x));
    expect([tanh(-1e4), tanh(1e4), erfW(-30), erfW(30)]).toEqual([-1, 1, -1, 1]);
  });
});

describe('floor division forms against Math.floor', () => {
  it('every form (loop-proved, power of two, constant, any divisor) for dividends of both signs', () => {
    for (const c of [1, 2, 4, 7, 12, -3, -8]) {
      const fd = evaluator(TARGET_CAPS.webgpu, 'int32', (x) => floordiv(x, constant(c, 'int32')));
      const fm = evaluator(TARGET_CAPS.webgpu, 'int32', (x) => floormod(x, constant(c, 'int32')));
      const any = evaluator(TARGET_CAPS.cuda, 'int32', (x, y) => floordiv(x, y));
      const anyM = evaluator(TARGET_CAPS.cuda, 'int32', (x, y) => floormod(x, y));
      for (let a = -30; a <= 30; a++) {
        const q = Math.floor(a / c) | 0;
        expect([fd(a), fm(a), any(a, c), anyM(a, c)]).toEqual([q, (a - q * c) | 0, q, (a - q * c) | 0]);
      }
    }
  });
});

describe('cse: Before -> Expected', () => {
  const x = buffer('x', 'float32', 64),
    y = buffer('y', 'float32', 64);
  const i = named('i');
  // 9 nodes: x[i*2 + 1] * x[i*2 + 1] ... built twice as distinct objects, equal in structure
  const big = () => mul(load(x, [add(mul(i, int(2)), int(1))]), add(load(x, [i]), constant(1, 'float32')));
  const one = (value: Expr) => func(loop(i, 8, store(y, i, value)), [x], [y]);

  it('binds a subexpression of 8+ nodes that occurs twice (equal in structure, not the same object)', () => {
    expect(printAfter(one(sub(big(), unary('neg', big()))), csePass(TARGET_CAPS.cuda))).toBe(
      text(`
kernel k(x: float32[64], y: float32[64]) {
  for i in 0..8 {
    let cse_0: float32 = (x[((i * 2) + 1)] * (x[i] + 1:float32))
    y[i] = (cse_0 - neg(cse_0))
  }
}`),
    );
  });

  it('leaves small repeated subexpressions inline', () => {
    const small = () => add(load(x, [i]), constant(1, 'float32'));
    expect(printAfter(one(mul(small(), small())), csePass(TARGET_CAPS.cuda))).toBe(
      text(`
kernel k(x: float32[64], y: float32[64]) {
  for i in 0..8 {
    y[i] = ((x[i] + 1:float32) * (x[i] + 1:float32))
  }
}`),
    );
  });

  it('moves a load out of a select arm only where the target cannot fault (WebGPU), not on CUDA', () => {
    const guarded = one(select(lt(i, int(4)), sub(big(), unary('neg', big())), constant(0, 'float32')));
    expect(printAfter(guarded, csePass(TARGET_CAPS.webgpu))).toBe(
      text(`
kernel k(x: float32[64], y: float32[64]) {
  for i in 0..8 {
    let cse_0: float32 = (x[((i * 2) + 1)] * (x[i] + 1:float32))
    y[i] = select((i < 4), (cse_0 - neg(cse_0)), 0:float32)
  }
}`),
    );
    expect(printAfter(guarded, csePass(TARGET_CAPS.cuda))).toBe(
      text(`
kernel k(x: float32[64], y: float32[64]) {
  for i in 0..8 {
    y[i] = select((i < 4), ((x[((i * 2) + 1)] * (x[i] + 1:float32)) - neg((x[((i * 2) + 1)] * (x[i] + 1:float32)))), 0:float32)
  }
}`),
    );
  });

  it('leaves the body of a vectorized loop whole', () => {
    const v = func(loop(i, 4, store(y, i, sub(big(), unary('neg', big()))), 'vectorized'), [x], [y]);
    expect(printAfter(v, csePass(TARGET_CAPS.webgpu))).toBe(printPrimFunc(v));
  });

  it('repeatedSubexpressions: children before parents, each distinct parent counted once', () => {
    const ids = new ExprIds();
    const inner = add(mul(i, int(3)), mul(i, int(5))); // 7 nodes
    const outer = add(inner, int(1)); // 9 nodes
    expect(repeatedSubexpressions([mul(outer, outer)], ids, 7).map(printExpr)).toEqual(['(((i * 3) + (i * 5)) + 1)']);
    expect(repeatedSubexpressions([add(mul(outer, inner), inner)], ids, 7).map(printExpr)).toEqual([
      '((i * 3) + (i * 5))',
    ]);
  });
});
