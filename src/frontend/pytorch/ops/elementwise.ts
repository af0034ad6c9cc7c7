// ATen elementwise operators -> Kiln graph operators. Tensor-scalar overloads (add.Scalar, or add.Tensor with a
// Python number, which torch.export also writes) take the number as a scalar constant; operands of different
// dtypes are promoted as PyTorch does for the common cases (an integer operand joins a float one).
import type { GExpr } from '../../../relay-ir/expr.js';
import { tensor } from '../../../runtime/tensor.js';
import type { DType } from '../../../runtime/dtype.js';
import { type AtenCtx, aten } from '../converter.js';

const isFloat = (t: DType) => t === 'float32' || t === 'float64';
const scalar = (c: AtenCtx, like: GExpr, v: number) => c.constant(tensor(c.type(like).dtype, [], [v]));

/** The two operands brought to one dtype: floats win over integers, float64 over float32. */
function promote(c: AtenCtx, a: GExpr, b: GExpr): [GExpr, GExpr] {
  const ta = c.type(a).dtype,
    tb = c.type(b).dtype;
  if (ta === tb) return [a, b];
  const rank = (t: DType) => (t === 'float64' ? 3 : t === 'float32' ? 2 : t === 'bool' ? 0 : 1);
  // a 0-dim operand (a Python number or a scalar tensor) of the same kind takes the other's dtype, as in PyTorch
  const aScalar = c.type(a).shape.length === 0,
    bScalar = c.type(b).shape.length === 0;
  let to: DType;
  if (isFloat(ta) === isFloat(tb) && aScalar !== bScalar) to = aScalar ? tb : ta;
  else to = rank(ta) >= rank(tb) ? ta : tb;
  const cast = (e: GExpr, t: DType) => (t === to ? e : c.call('cast', [e], { to }));
  return [cast(a, ta), cast(b, tb)];
}

function binary(op: string, withAlpha: boolean) {
  return (c: AtenCtx): GExpr => {
    const self = c.tensor('self');
    let other = c.tensorOrScalar('other', self);
    if (withAlpha && c.has('alpha')) {
      const alpha = c.float('alpha');
      if (alpha !== 1) other = c.call('mul', promote(c, other, scalar(c, other, alpha)));
    }
    return c.call(op, promote(c, self, other));
  };
}

aten(['add', 'add_'], binary('add', true));
aten(['sub', 'sub_'], binary('sub', true));
aten(['mul', 'mul_'], binary('mul', false));
aten(['div', 'div_'], (c) => {
  if (c.has('rounding_mode')) c.unsupported(`rounding_mode '${c.string('rounding_mode')}'`);
  const self = c.tensor('self');
  let [a, b] = promote(c, self, c.tensorOrScalar('other', self));
  // true division: integer operands divide as floats
  if (!isFloat(c.type(a).dtype))
    [a, b] = [c.call('cast', [a], { to: 'float32' }), c.call('cast', [b], { to: 'float32' })];
  return c.call('div', [a, b]);
});
aten(['maximum'], (c) => c.call('max', promote(c, c.tensor('self'), c.tensor('other'))));
aten(['minimum'], (c) => c.call('min', promote(c, c.tensor('self'), c.tensor('other'))));
aten(['pow'], (c) => {
  const self = c.tensor('self');
  return c.call('pow', [self, c.tensorOrScalar('exponent', self)]);
});

// ---- unary ------------------------------------------------------------------------------------------------------

const UNARY: Record<string, string> = {
  relu: 'relu',
  relu_: 'relu',
  sigmoid: 'sigmoid',
  sigmoid_: 'sigmoid',
  tanh: 'tanh',
  tanh_: 'tanh',
  exp: 'exp',
  log: 'log',
  sqrt: 'sqrt',
  neg: 'neg',
  abs: 'abs',
  erf: 'erf',
  floor: 'floor',
  ceil: 'ceil',
  reciprocal: 'reciprocal',
  sin: 'sin',
  cos: 'cos',
  hardswish: 'hard_swish',
  hardswish_: 'hard_swish',
  mish: 'mish',
};
for (const [op, kiln] of Object.entries(UNARY)) aten(op, (c) => c.call(kiln, [c.tensor('self')]));

aten('rsqrt', (c) => c.call('reciprocal', [c.call('sqrt', [c.tensor('self')])]));
aten(['silu', 'silu_'], (c) => c.call('swish', [c.tensor('self')], { alpha: 1 }));
aten(['hardsigmoid', 'hardsigmoid_'], (c) => c.call('hard_sigmoid', [c.tensor('self')], { alpha: 1 / 6, beta: 0.5 }));
aten('gelu', (c) =>
  c.call('gelu', [c.tensor('self')], c.string('approximate', 'none') === 'tanh' ? { approximate: 'tanh' } : {}),
);
aten(['leaky_relu', 'leaky_relu_'], (c) =>
  c.call('leaky_relu', [c.tensor('self')], { alpha: c.float('negative_slope', 0.01) }),
);

// ---- clamps -----------------------------------------------------------------------------------------------------

function clip(c: AtenCtx, x: GExpr, lo: number | undefined, hi: number | undefined): GExpr {
  const dt = c.type(x).dtype;
  const big = isFloat(dt) ? Infinity : dt === 'int64' ? Number.MAX_SAFE_INTEGER : 2 ** 31 - 1;
  return c.call('clip', [x, scalar(c, x, lo ?? -big), scalar(c, x, hi ?? big)]);
}

aten(['hardtanh', 'hardtanh_'], (c) => clip(c, c.tensor('self'), c.float('min_val', -1), c.float('max_val', 1)));
aten(['relu6', 'relu6_'], (c) => clip(c, c.tensor('self'), 0, 6));
aten(['clamp', 'clamp_', 'clip', 'clip_'], (c) => {
  const x = c.tensor('self');
  if (c.overload === 'Tensor') {
    const lo = c.optTensor('min'),
      hi = c.optTensor('max');
    let y = x;
    if (lo) y = c.call('max', promote(c, y, lo));
    if (hi) y = c.call('min', promote(c, y, hi));
    return y;
  }
  return clip(c, x, c.optFloat('min'), c.optFloat('max'));
});
aten(['clamp_min', 'clamp_min_'], (c) => clip(c, c.tensor('self'), c.float('min'), undefined));
aten(['clamp_max', 'clamp_max_'], (c) => clip(c, c.tensor('self'), undefined, c.float('max')));
