// ATen elementwise operators -> Kiln graph operators. Tensor-scalar overloads (add.Scalar, or add.Tensor with a
// Python number, which torch.export also writes) take the number as a scalar constant; operands of different
// dtypes are promoted as PyTorch does for the common cases (an integer operand joins a float one).
import type { GExpr } from '../../../relay-ir/expr.js';
import { sizeOf, tensor } from '../../../runtime/tensor.js';
import { type DType, isFloat } from '../../../runtime/dtype.js';
import type { Dim } from '../../../relay-ir/types.js';
import { dimMax, dimSub } from '../../../relay-ir/sym-dim.js';
import { type AtenCtx, aten } from '../converter.js';

const scalar = (c: AtenCtx, like: GExpr, v: number) => c.constant(tensor(c.type(like).dtype, [], [v]));

/** The two operands brought to one dtype: floats win over integers, wider floats over narrower (half) ones. */
function promote(c: AtenCtx, a: GExpr, b: GExpr): [GExpr, GExpr] {
  const ta = c.type(a).dtype,
    tb = c.type(b).dtype;
  if (ta === tb) return [a, b];
  const rank = (t: DType) => (t === 'float64' ? 4 : t === 'float32' ? 3 : isFloat(t) ? 2 : t === 'bool' ? 0 : 1);
  // a 0-dim operand (a Python number or a scalar tensor) of the same kind takes the other's dtype, as in PyTorch
  const aScalar = c.type(a).shape.length === 0,
    bScalar = c.type(b).shape.length === 0;
  let to: DType;
  if (isFloat(ta) === isFloat(tb) && aScalar !== bScalar) to = aScalar ? tb : ta;
  else to = rank(ta) >= rank(tb) ? ta : tb;
  const cast = (e: GExpr, t: DType) => (t === to ? e : c.call('cast', [e], { to }));
  return [cast(a, ta), cast(b, tb)];
}

/** self and other, either of which may be a Python number (`1 - x` is sub.Tensor(1, x)). */
function operands(c: AtenCtx): [GExpr, GExpr] {
  if (c.isTensor('self') || !c.isTensor('other')) {
    const self = c.tensor('self');
    return [self, c.tensorOrScalar('other', self)];
  }
  const other = c.tensor('other');
  return [c.tensorOrScalar('self', other), other];
}

function binary(op: string, withAlpha: boolean) {
  return (c: AtenCtx): GExpr => {
    let [self, other] = operands(c);
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
  let [a, b] = promote(c, ...operands(c));
  const mode = c.has('rounding_mode') ? c.string('rounding_mode') : undefined;
  if (mode === 'floor') return floorDivide(c, a, b);
  if (mode === 'trunc') {
    if (!isFloat(c.type(a).dtype)) return c.call('div', [a, b]); // integer division truncates
    const q = c.call('div', [a, b]);
    return c.call('mul', [c.call('sign', [q]), c.call('floor', [c.call('abs', [q])])]);
  }
  if (mode !== undefined) c.unsupported(`rounding_mode '${mode}'`);
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

// ---- comparisons, logic, selection ------------------------------------------------------------------------------

const COMPARE: Record<string, string> = {
  eq: 'equal',
  lt: 'less',
  le: 'less_equal',
  gt: 'greater',
  ge: 'greater_equal',
};
for (const [op, kiln] of Object.entries(COMPARE)) {
  aten(op, (c) => c.call(kiln, promote(c, ...operands(c))));
}
aten('ne', (c) => c.call('not', [c.call('equal', promote(c, ...operands(c)))]));

/** A tensor as bool (nonzero is true), as PyTorch's logical operators read their operands. */
const truth = (c: AtenCtx, x: GExpr) => (c.type(x).dtype === 'bool' ? x : c.call('cast', [x], { to: 'bool' }));
aten('logical_not', (c) => c.call('not', [truth(c, c.tensor('self'))]));
for (const op of ['and', 'or', 'xor'])
  aten(`logical_${op}`, (c) => c.call(op, [truth(c, c.tensor('self')), truth(c, c.tensor('other'))]));

/** & | ^ on tensors: logical for bools, bitwise for integers. */
for (const op of ['and', 'or', 'xor']) {
  aten([`bitwise_${op}`, `__${op}__`], (c) => {
    const [a, b] = promote(c, ...operands(c));
    return c.call(c.type(a).dtype === 'bool' ? op : `bitwise_${op}`, [a, b]);
  });
}

aten('where', (c) => {
  if (c.overload === 'default') c.unsupported('where(condition) (the indices of nonzero elements)');
  const cond = truth(c, c.tensor('condition'));
  // where.self, where.ScalarSelf, where.ScalarOther, where.Scalar: a Python number takes the other operand's dtype
  const scalarSelf = c.overload === 'ScalarSelf' || c.overload === 'Scalar',
    scalarOther = c.overload === 'ScalarOther' || c.overload === 'Scalar';
  const a = scalarSelf
    ? scalarOther
      ? c.constant(tensor('float32', [], [c.float('self')]))
      : c.tensorOrScalar('self', c.tensor('other'))
    : c.tensor('self');
  const b = c.tensorOrScalar('other', a);
  return c.call('where', [cond, ...promote(c, a, b)]);
});

aten(['masked_fill', 'masked_fill_'], (c) => {
  const self = c.tensor('self');
  const value = c.tensorOrScalar('value', self);
  const v = c.type(value).dtype === c.type(self).dtype ? value : c.call('cast', [value], { to: c.type(self).dtype });
  return c.call('where', [truth(c, c.tensor('mask')), v, self]);
});

// ---- tensors made from numbers: arange, full, zeros, ones, scalar_tensor ----------------------------------------

/** PyTorch's default dtype for a creation op: the given one, else int64 for integers and float32 otherwise. */
const createdDType = (c: AtenCtx, values: number[], dflt?: DType): DType =>
  c.optDType('dtype') ?? dflt ?? (values.every(Number.isInteger) ? 'int64' : 'float32');

aten('arange', (c) => {
  const start = c.overload === 'default' ? 0 : c.float('start');
  const step = c.overload === 'start_step' ? c.float('step', 1) : 1;
  if (step === 0) c.unsupported('step 0');
  const to = c.dim('end');
  if (typeof to !== 'number') {
    // arange(seq) of a symbolic size: a range operator of that many values
    if (!Number.isInteger(start) || step !== 1) c.unsupported(`a symbolic end with start ${start} and step ${step}`);
    const dtype = c.optDType('dtype') ?? 'int64';
    return c.call('range', [c.constant(tensor(dtype, [], [start])), c.constant(tensor(dtype, [], [1]))], {
      count: [dimMax(0, dimSub(to, start))],
    });
  }
  const end = to;
  const n = Math.max(0, Math.ceil((end - start) / step));
  const values = Array.from({ length: n }, (_, i) => start + i * step);
  const dtype = createdDType(c, [start, end, step]);
  return c.constant(tensor(dtype, [n], isFloat(dtype) ? values : values.map(Math.trunc)));
});

/** A tensor of one value: a constant, or a scalar expanded to a shape with symbolic dims. */
function filled(c: AtenCtx, shape: Dim[], value: number, dflt?: DType): GExpr {
  const dtype = createdDType(c, [value], dflt);
  if (shape.every((d) => typeof d === 'number'))
    return c.constant(tensor(dtype, shape, new Array<number>(sizeOf(shape)).fill(value)));
  return c.call('expand', [c.constant(tensor(dtype, [], [value]))], { shape });
}
aten('full', (c) => filled(c, c.dims('size'), c.float('fill_value')));
aten(['zeros', 'ones'], (c) => filled(c, c.dims('size'), c.target.includes('ones') ? 1 : 0, 'float32'));
aten('full_like', (c) => {
  const x = c.tensor('self');
  return filled(c, [...c.type(x).shape], c.float('fill_value'), c.type(x).dtype);
});
aten(['zeros_like', 'ones_like'], (c) => {
  const x = c.tensor('self');
  return filled(c, [...c.type(x).shape], c.target.includes('ones') ? 1 : 0, c.type(x).dtype);
});
aten(['new_zeros', 'new_ones'], (c) =>
  filled(c, c.dims('size'), c.target.includes('ones') ? 1 : 0, c.type(c.tensor('self')).dtype),
);
aten('new_full', (c) => filled(c, c.dims('size'), c.float('fill_value'), c.type(c.tensor('self')).dtype));
aten('scalar_tensor', (c) => filled(c, [], c.float('s'), 'float32'));

// ---- more unary, integer division ---------------------------------------------------------------------------------

aten('sign', (c) => c.call('sign', [c.tensor('self')]));
aten('bitwise_not', (c) => {
  const x = c.tensor('self');
  return c.call(c.type(x).dtype === 'bool' ? 'not' : 'bitwise_not', [x]);
});
/** scale * (x > 0 ? x : alpha * (exp(x * input_scale) - 1)); selu decomposes to this. */
aten(['elu', 'elu_'], (c) => {
  const x = c.tensor('self');
  const alpha = c.float('alpha', 1),
    scale = c.float('scale', 1),
    inputScale = c.float('input_scale', 1);
  if (scale === 1 && inputScale === 1) return c.call('elu', [x], { alpha });
  const k = (v: number) => scalar(c, x, v);
  const negative = c.call('mul', [k(alpha), c.call('sub', [c.call('exp', [c.call('mul', [x, k(inputScale)])]), k(1)])]);
  return c.call('mul', [c.call('where', [c.call('greater', [x, k(0)]), x, negative]), k(scale)]);
});
aten(['selu', 'selu_'], (c) => c.call('selu', [c.tensor('self')], {}));
aten('softplus', (c) => {
  if (c.float('beta', 1) !== 1) c.unsupported('softplus with beta other than 1');
  return c.call('softplus', [c.tensor('self')]);
});
aten('log1p', (c) => {
  const x = c.tensor('self');
  return c.call('log', [c.call('add', [x, scalar(c, x, 1)])]);
});
aten('expm1', (c) => {
  const x = c.tensor('self');
  return c.call('sub', [c.call('exp', [x]), scalar(c, x, 1)]);
});
/** Python's %: the sign of the divisor. */
aten('remainder', (c) => c.call('mod', promote(c, ...operands(c)), { fmod: 0 }));
aten('fmod', (c) => c.call('mod', promote(c, ...operands(c)), { fmod: 1 }));
/** floor_divide and div(rounding_mode='floor'): floor(a / b), in floats for float operands. */
function floorDivide(c: AtenCtx, a: GExpr, b: GExpr): GExpr {
  const q = c.call('div', [a, b]);
  if (isFloat(c.type(a).dtype)) return c.call('floor', [q]);
  // integer div truncates: step down where the remainder's sign differs from the divisor's
  const r = c.call('mod', [a, b], { fmod: 1 });
  const zero = scalar(c, a, 0);
  const fix = c.call('and', [
    c.call('not', [c.call('equal', [r, zero])]),
    c.call('not', [c.call('equal', [c.call('less', [r, zero]), c.call('less', [b, zero])])]),
  ]);
  return c.call('sub', [q, c.call('cast', [fix], { to: c.type(q).dtype })]);
}
aten('floor_divide', (c) => floorDivide(c, ...promote(c, ...operands(c))));
