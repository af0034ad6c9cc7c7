// Elementwise and broadcasting operators: each row of these tables is one operator's whole definition.
import type { DType } from '../../runtime/dtype.js';
import { isFloat, isUnsigned } from '../../runtime/dtype.js';
import { OpPattern, type Attrs } from '../../relay-ir/op.js';
import { tensorType } from '../../relay-ir/types.js';
import * as E from '../expr.js';
import { type Expr, constant as c } from '../expr.js';
import { compute } from '../tensor.js';
import { defineOp } from '../op-def.js';
import { bcastLoad, broadcastShapes, num, shapeError } from './common.js';

const k = (x: Expr, v: number): Expr => c(v, x.dtype);
const exp = (x: Expr) => E.unary('exp', x);
const log = (x: Expr) => E.unary('log', x);
const tanh = (x: Expr) => E.unary('tanh', x);
const recip = (x: Expr) => E.div(k(x, 1), x);
const sigmoid = (x: Expr) => recip(E.add(k(x, 1), exp(E.unary('neg', x))));
const softplus = (x: Expr) => E.select(E.gt(x, k(x, 20)), x, log(E.add(k(x, 1), exp(x))));

type UnaryFn = (x: Expr, a: Attrs) => Expr;
/** name -> (body, result dtype rule). Result dtype = input dtype unless `out` says otherwise. */
const UNARY: Record<string, { f: UnaryFn; out?: DType; floatOnly?: boolean }> = {
  neg: { f: (x) => E.unary('neg', x) },
  abs: { f: (x) => E.unary('abs', x) },
  sign: { f: (x) => E.unary('sign', x) },
  sqrt: { f: (x) => E.unary('sqrt', x), floatOnly: true },
  reciprocal: { f: recip, floatOnly: true },
  exp: { f: exp, floatOnly: true },
  log: { f: log, floatOnly: true },
  sin: { f: (x) => E.unary('sin', x) },
  cos: { f: (x) => E.unary('cos', x) },
  tan: { f: (x) => E.unary('tan', x) },
  asin: { f: (x) => E.unary('asin', x) },
  acos: { f: (x) => E.unary('acos', x) },
  atan: { f: (x) => E.unary('atan', x) },
  sinh: { f: (x) => E.unary('sinh', x) },
  cosh: { f: (x) => E.unary('cosh', x) },
  tanh: { f: tanh },
  asinh: { f: (x) => E.unary('asinh', x) },
  acosh: { f: (x) => E.unary('acosh', x) },
  atanh: { f: (x) => E.unary('atanh', x) },
  erf: { f: (x) => E.unary('erf', x) },
  floor: { f: (x) => E.unary('floor', x) },
  ceil: { f: (x) => E.unary('ceil', x) },
  round: { f: (x) => E.unary('round', x) },
  not: { f: (x) => E.unary('not', x) },
  bitwise_not: { f: (x) => E.unary('bitnot', x) },
  isnan: { f: (x) => E.unary('isnan', x), out: 'bool' },
  isinf: {
    f: (x, a) => {
      const pos = num(a, 'detect_positive', 1),
        neg = num(a, 'detect_negative', 1);
      const p = pos ? E.eq(x, k(x, Infinity)) : c(0, 'bool'),
        n = neg ? E.eq(x, k(x, -Infinity)) : c(0, 'bool');
      return E.or(p, n);
    },
    out: 'bool',
  },
  relu: { f: (x) => E.max(x, k(x, 0)) },
  sigmoid: { f: sigmoid },
  softplus: { f: softplus },
  /** Swish (opset 24): x * sigmoid(alpha * x). */
  swish: { f: (x, a) => E.mul(x, sigmoid(E.mul(k(x, num(a, 'alpha', 1)), x))), floatOnly: true },
  /** ai.onnx.ml Binarizer: 1 where x > threshold, else 0 (same dtype). */
  binarizer: {
    f: (x, a) => {
      const t = num(a, 'threshold', 0); // integer x > t  <=>  x > floor(t)
      return E.select(E.gt(x, k(x, isFloat(x.dtype) ? t : Math.floor(t))), k(x, 1), k(x, 0));
    },
  },
  softsign: { f: (x) => E.div(x, E.add(k(x, 1), E.unary('abs', x))) },
  leaky_relu: { f: (x, a) => E.select(E.lt(x, k(x, 0)), E.mul(x, k(x, num(a, 'alpha', 0.01))), x) },
  elu: { f: (x, a) => E.select(E.lt(x, k(x, 0)), E.mul(k(x, num(a, 'alpha', 1)), E.sub(exp(x), k(x, 1))), x) },
  celu: {
    f: (x, a) => {
      const al = num(a, 'alpha', 1);
      return E.add(E.max(x, k(x, 0)), E.min(k(x, 0), E.mul(k(x, al), E.sub(exp(E.div(x, k(x, al))), k(x, 1)))));
    },
  },
  selu: {
    f: (x, a) => {
      const al = num(a, 'alpha', 1.6732631921768188),
        g = num(a, 'gamma', 1.0507010221481323);
      return E.select(E.le(x, k(x, 0)), E.mul(k(x, g), E.sub(E.mul(k(x, al), exp(x)), k(x, al))), E.mul(k(x, g), x));
    },
  },
  thresholded_relu: { f: (x, a) => E.select(E.gt(x, k(x, num(a, 'alpha', 1))), x, k(x, 0)) },
  hard_sigmoid: {
    f: (x, a) => E.max(k(x, 0), E.min(k(x, 1), E.add(E.mul(k(x, num(a, 'alpha', 0.2)), x), k(x, num(a, 'beta', 0.5))))),
  },
  hard_swish: { f: (x) => E.mul(x, E.max(k(x, 0), E.min(k(x, 1), E.add(E.mul(k(x, 1 / 6), x), k(x, 0.5))))) },
  mish: { f: (x) => E.mul(x, tanh(softplus(x))) },
  gelu: {
    f: (x, a) => {
      if (a.approximate === 'tanh') {
        const inner = E.mul(k(x, Math.sqrt(2 / Math.PI)), E.add(x, E.mul(k(x, 0.044715), E.mul(x, E.mul(x, x)))));
        return E.mul(E.mul(k(x, 0.5), x), E.add(k(x, 1), tanh(inner)));
      }
      return E.mul(E.mul(k(x, 0.5), x), E.add(k(x, 1), E.unary('erf', E.mul(x, k(x, Math.SQRT1_2)))));
    },
  },
  shrink: {
    f: (x, a) => {
      const bias = num(a, 'bias', 0),
        l = num(a, 'lambd', 0.5);
      const kk = (v: number) => (isFloat(x.dtype) ? k(x, v) : k(x, Math.trunc(v)));
      return E.select(E.lt(x, kk(-l)), E.add(x, kk(bias)), E.select(E.gt(x, kk(l)), E.sub(x, kk(bias)), kk(0)));
    },
  },
  /** Cast: attribute `to` is the target dtype. Float->int truncates toward zero, as C and ONNX Runtime do. */
  cast: { f: (x, a) => E.cast(a.to as DType, x) },
  /** BitCast: the same bits read as `to`, a type of the same width. */
  bitcast: { f: (x, a) => E.bitcast(a.to as DType, x) },
  identity: { f: (x) => x },
};

for (const [name, def] of Object.entries(UNARY)) {
  defineOp({
    name,
    pattern: OpPattern.ElemWise,
    inferType: ([x], a) => {
      if (def.floatOnly && !isFloat(x.dtype)) shapeError(`${name} needs a float input, got ${x.dtype}`);
      return tensorType(x.shape, name === 'cast' || name === 'bitcast' ? (a.to as DType) : (def.out ?? x.dtype));
    },
    compute: ([x], a, out) => compute(name, out.shape, (idx) => def.f(E.load(x, idx), a)),
  });
}

const BITS: Partial<Record<DType, number>> = {
  int8: 8,
  uint8: 8,
  int16: 16,
  uint16: 16,
  int32: 32,
  uint32: 32,
  int64: 64,
  uint64: 64,
};
const shiftInRange = (b: Expr, dt: DType): Expr => {
  const ok = E.lt(b, k(b, BITS[dt] ?? 32));
  return isUnsigned(dt) ? ok : E.and(E.ge(b, k(b, 0)), ok);
};

type BinaryFn = (a: Expr, b: Expr, attrs: Attrs) => Expr;
const BINARY: Record<string, { f: BinaryFn; out?: DType }> = {
  add: { f: E.add },
  sub: { f: E.sub },
  mul: { f: E.mul },
  div: { f: E.div },
  pow: { f: (a, b) => E.pow(a, E.cast(a.dtype, b)) },
  /** Mod: fmod=1 is C fmod (sign of the dividend); fmod=0 is Python's % (sign of the divisor). */
  mod: {
    f: (a, b, at) => {
      if (num(at, 'fmod', 0)) return E.mod(a, b);
      const r = E.mod(a, b);
      return E.select(E.and(E.ne(r, k(r, 0)), E.ne(E.lt(r, k(r, 0)), E.lt(b, k(b, 0)))), E.add(r, b), r);
    },
  },
  min: { f: E.min },
  max: { f: E.max },
  and: { f: E.and },
  or: { f: E.or },
  xor: { f: (a, b) => E.ne(a, b) },
  bitwise_and: { f: E.and },
  bitwise_or: { f: E.or },
  bitwise_xor: { f: E.xor },
  /** Shifts by a negative amount or by >= the bit width give 0 (right shift of a negative signed value: -1). */
  bitshift_left: { f: (a, b) => E.select(shiftInRange(b, a.dtype), E.shl(a, b), k(a, 0)) },
  bitshift_right: {
    f: (a, b) =>
      E.select(
        shiftInRange(b, a.dtype),
        E.shr(a, b),
        isUnsigned(a.dtype) ? k(a, 0) : E.select(E.lt(a, k(a, 0)), k(a, -1), k(a, 0)),
      ),
  },
  /** SwiGLU (opset 26+): swish_alpha(a) * b. */
  swiglu: { f: (a, b, at) => E.mul(E.mul(a, sigmoid(E.mul(k(a, num(at, 'alpha', 1)), a))), b) },
  equal: { f: E.eq, out: 'bool' },
  less: { f: E.lt, out: 'bool' },
  less_equal: { f: E.le, out: 'bool' },
  greater: { f: E.gt, out: 'bool' },
  greater_equal: { f: E.ge, out: 'bool' },
  prelu: { f: (x, s) => E.select(E.lt(x, k(x, 0)), E.mul(x, s), x) },
};

for (const [name, def] of Object.entries(BINARY)) {
  defineOp({
    name,
    pattern: OpPattern.Broadcast,
    inferType: ([a, b]) => {
      if (name !== 'pow' && a.dtype !== b.dtype) shapeError(`${name}: input dtypes differ (${a.dtype} vs ${b.dtype})`);
      return tensorType(broadcastShapes([a.shape, b.shape]), def.out ?? a.dtype);
    },
    compute: ([a, b], at, out) => compute(name, out.shape, (idx) => def.f(bcastLoad(a, idx), bcastLoad(b, idx), at)),
  });
}

defineOp({
  name: 'where',
  pattern: OpPattern.Broadcast,
  inferType: ([cond, a, b]) => {
    if (cond.dtype !== 'bool') shapeError(`where: condition must be bool, got ${cond.dtype}`);
    if (a.dtype !== b.dtype) shapeError(`where: branch dtypes differ (${a.dtype} vs ${b.dtype})`);
    return tensorType(broadcastShapes([cond.shape, a.shape, b.shape]), a.dtype);
  },
  compute: ([cond, a, b], _, out) =>
    compute('where', out.shape, (idx) => E.select(bcastLoad(cond, idx), bcastLoad(a, idx), bcastLoad(b, idx))),
});

/** clip(x, lo, hi) with lo/hi broadcast scalars (Clip's optional bounds come in as ±inf / type limits). */
defineOp({
  name: 'clip',
  pattern: OpPattern.Broadcast,
  inferType: ([x]) => tensorType(x.shape, x.dtype),
  compute: ([x, lo, hi], _, out) =>
    compute('clip', out.shape, (idx) => E.min(E.max(E.load(x, idx), bcastLoad(lo, idx)), bcastLoad(hi, idx))),
});
