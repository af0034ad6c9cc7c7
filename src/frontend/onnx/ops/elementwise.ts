// ONNX elementwise, activation and logical operators -> Kiln graph operators.
import { BYTES, type DType, ONNX_DTYPE, isFloat, isFloat8 } from '../../../runtime/dtype.js';
import { KilnError } from '../../../runtime/errors.js';
import { tensor } from '../../../runtime/tensor.js';
import { reduceInit } from '../../../tensor-expr/expr.js';
import type { GExpr } from '../../../relay-ir/expr.js';
import { type ConvertCtx, converter } from '../converter.js';
import { NARROW_FORMAT, elementValue, halfValue, maxFiniteBits } from '../../../runtime/half.js';

const UNARY: Record<string, string> = {
  Abs: 'abs',
  Neg: 'neg',
  Sign: 'sign',
  Sqrt: 'sqrt',
  Reciprocal: 'reciprocal',
  Exp: 'exp',
  Log: 'log',
  Sin: 'sin',
  Cos: 'cos',
  Tan: 'tan',
  Asin: 'asin',
  Acos: 'acos',
  Atan: 'atan',
  Sinh: 'sinh',
  Cosh: 'cosh',
  Tanh: 'tanh',
  Asinh: 'asinh',
  Acosh: 'acosh',
  Atanh: 'atanh',
  Erf: 'erf',
  Floor: 'floor',
  Ceil: 'ceil',
  Round: 'round',
  Not: 'not',
  BitwiseNot: 'bitwise_not',
  IsNaN: 'isnan',
  Relu: 'relu',
  Sigmoid: 'sigmoid',
  Softplus: 'softplus',
  Softsign: 'softsign',
  HardSwish: 'hard_swish',
  Mish: 'mish',
  Identity: 'identity',
};
for (const [onnx, op] of Object.entries(UNARY)) converter(onnx, 1, (c) => c.call(op, [c.input(0)]));

/** Unary ops with float attributes (name, default). */
const UNARY_ATTR: Record<string, [string, [string, number][]]> = {
  LeakyRelu: ['leaky_relu', [['alpha', 0.01]]],
  Elu: ['elu', [['alpha', 1]]],
  Celu: ['celu', [['alpha', 1]]],
  Selu: [
    'selu',
    [
      ['alpha', 1.6732631921768188],
      ['gamma', 1.0507010221481323],
    ],
  ],
  ThresholdedRelu: ['thresholded_relu', [['alpha', 1]]],
  HardSigmoid: [
    'hard_sigmoid',
    [
      ['alpha', 0.2],
      ['beta', 0.5],
    ],
  ],
  Shrink: [
    'shrink',
    [
      ['bias', 0],
      ['lambd', 0.5],
    ],
  ],
  Swish: ['swish', [['alpha', 1]]],
};
for (const [onnx, [op, attrs]] of Object.entries(UNARY_ATTR)) {
  converter(onnx, 1, (c) => c.call(op, [c.input(0)], Object.fromEntries(attrs.map(([k, d]) => [k, c.float(k, d)]))));
}
converter(
  'Binarizer',
  1,
  (c) => c.call('binarizer', [c.input(0)], { threshold: c.float('threshold', 0) }),
  'ai.onnx.ml',
);
converter('SwiGLU', 1, (c) => c.call('swiglu', [c.input(0), c.input(1)], { alpha: c.float('alpha', 1) }));
converter('IsInf', 10, (c) =>
  c.call('isinf', [c.input(0)], {
    detect_positive: c.int('detect_positive', 1),
    detect_negative: c.int('detect_negative', 1),
  }),
);
converter('Gelu', 20, (c) => c.call('gelu', [c.input(0)], { approximate: c.string('approximate', 'none') }));

const BINARY: Record<string, string> = {
  Add: 'add',
  Sub: 'sub',
  Mul: 'mul',
  Div: 'div',
  Pow: 'pow',
  And: 'and',
  Or: 'or',
  Xor: 'xor',
  Equal: 'equal',
  Less: 'less',
  LessOrEqual: 'less_equal',
  Greater: 'greater',
  GreaterOrEqual: 'greater_equal',
  BitwiseAnd: 'bitwise_and',
  BitwiseOr: 'bitwise_or',
  BitwiseXor: 'bitwise_xor',
  PRelu: 'prelu',
};
for (const [onnx, op] of Object.entries(BINARY)) {
  converter(onnx, 7, (c) => c.call(op, [c.input(0), c.input(1)]));
  // opset < 7: explicit broadcast attribute, with `axis` aligning B inside A
  if (onnx !== 'PRelu') converter(onnx, 1, (c) => c.call(op, [c.input(0), legacyBroadcast(c)]));
}
converter('Mod', 10, (c) => c.call('mod', [c.input(0), c.input(1)], { fmod: c.int('fmod', 0) }));
converter('BitShift', 11, (c) =>
  c.call(c.string('direction') === 'LEFT' ? 'bitshift_left' : 'bitshift_right', [c.input(0), c.input(1)]),
);

function legacyBroadcast(c: ConvertCtx): GExpr {
  const b = c.input(1);
  if (!c.int('broadcast', 0)) return b;
  const ra = c.type(c.input(0)).shape.length,
    tb = c.type(b);
  const axis = c.int('axis', ra - tb.shape.length);
  const trailing = ra - axis - tb.shape.length;
  if (trailing <= 0) return b;
  return c.call('reshape', [b], { shape: [...tb.shape, ...new Array(trailing).fill(1)] });
}

/** Sum / Min / Max / Mean over any number of inputs, with broadcasting. */
const VARIADIC: Record<string, string> = { Sum: 'add', Min: 'min', Max: 'max', Mean: 'add' };
for (const [onnx, op] of Object.entries(VARIADIC)) {
  converter(onnx, 1, (c) => {
    const xs: GExpr[] = [];
    for (let i = 0; i < c.numInputs; i++) xs.push(c.input(i));
    let acc = xs.reduce((a, b) => c.call(op, [a, b]));
    if (xs.length === 1) acc = c.call('identity', [acc]);
    if (onnx === 'Mean') acc = c.call('div', [acc, c.constant(tensor(c.type(acc).dtype, [], [xs.length]))]);
    return acc;
  });
}

converter('Where', 9, (c) => c.call('where', [c.input(0), c.input(1), c.input(2)]));

function clip(c: ConvertCtx, lo: GExpr | undefined, hi: GExpr | undefined): GExpr {
  const x = c.input(0),
    dt = c.type(x).dtype;
  // an absent bound is the type's lowest / highest value (the identity of max / min)
  const bound = (e: GExpr | undefined, which: 'max' | 'min') => {
    const init = reduceInit(which, dt) as { value: number | bigint };
    return e ?? c.constant(tensor(dt, [], [init.value]));
  };
  return c.call('clip', [x, bound(lo, 'max'), bound(hi, 'min')]);
}
converter('Clip', 11, (c) => clip(c, c.optInput(1), c.optInput(2)));
converter('Clip', 6, (c) => {
  const dt = c.type(c.input(0)).dtype;
  return c.call('clip', [
    c.input(0),
    c.constant(tensor(dt, [], [c.float('min', -3.4028234663852886e38)])),
    c.constant(tensor(dt, [], [c.float('max', 3.4028234663852886e38)])),
  ]);
});

converter('Cast', 6, (c) => {
  const to = ONNX_DTYPE[c.int('to')];
  if (!to) throw new KilnError('E_UNSUPPORTED', `Cast to element type ${c.int('to')} is not supported`);
  return saturatingCast(c, c.input(0), to);
});

/**
 * A cast, saturating (opset 19's `saturate`, default 1) where it goes from a float to a float8: out-of-range values
 * and infinities become the largest finite value of the sign; without saturation they overflow as the format does
 * (infinity, or NaN where it has none).
 */
export function saturatingCast(c: ConvertCtx, x: GExpr, to: DType): GExpr {
  const from = c.type(x).dtype;
  if (!isFloat8(to) || !isFloat(from) || c.int('saturate', 1) === 0) return c.call('cast', [x], { to });
  const max = halfValue(to, maxFiniteBits(NARROW_FORMAT[to]));
  // (in float32: a float16 source would round the bound)
  const x32 = from === 'float32' || from === 'float64' ? x : c.call('cast', [x], { to: 'float32' });
  const t = c.type(x32).dtype;
  const clipped = c.call('clip', [x32, c.constant(tensor(t, [], [-max])), c.constant(tensor(t, [], [max]))]);
  // (NaN stays NaN: WGSL's min and max may drop it)
  return c.call('cast', [c.call('where', [c.call('isnan', [x32]), x32, clipped])], { to });
}
/**
 * BitCast: the same bits read as another type of the same width. Between integer types that is an integer cast
 * (it wraps); to or from a float type it is the loop IR's bitcast.
 */
converter('BitCast', 26, (c) => {
  const x = c.input(0),
    from = c.type(x).dtype,
    to = ONNX_DTYPE[c.int('to')];
  if (!to)
    throw new KilnError('E_UNSUPPORTED', `BitCast to element type ${c.int('to')} is not supported`, {
      hint: 'Kiln handles float32, float64, int8-64, uint8-64 and bool',
    });
  if (BYTES[from] !== BYTES[to])
    throw new KilnError('E_MODEL_INVALID', `BitCast between ${from} and ${to} of different widths`, {
      hint: 'BitCast keeps the bits: both types must have the same width (Cast converts values)',
    });
  if (from === to) return c.call('identity', [x]);
  if (isFloat(from) || isFloat(to)) return c.call('bitcast', [x], { to });
  return c.call('cast', [x], { to });
});
converter('CastLike', 15, (c) => saturatingCast(c, c.input(0), c.type(c.input(1)).dtype));

/** Dropout at inference is the identity; its optional mask output is all true. */
converter('Dropout', 1, (c) => {
  const x = c.input(0);
  const training = c.opset >= 12 ? c.optInput(2) : undefined;
  if (training && c.constValue(training, 'Dropout training_mode').data[0]) {
    const r = c.optInput(1);
    const rv = r && c.constValue(r, 'Dropout ratio');
    const ratio = rv ? Number(elementValue(rv.dtype, rv.data, 0)) : 0.5;
    if (ratio !== 0) c.unsupported('training_mode=true with ratio > 0 (random masking)');
  }
  const outs: GExpr[] = [c.call('identity', [x])];
  if (c.numOutputs > 1) {
    // all-true bool tensor of x's shape: not(isinf with nothing detected)
    outs.push(c.call('not', [c.call('isinf', [x], { detect_positive: 0, detect_negative: 0 })]));
  }
  return outs;
});

/** PRelu before opset 7: a 1-D slope with one value per channel applies along axis 1 (PyTorch's exports rely on it). */
converter('PRelu', 1, (c) => {
  const x = c.input(0),
    slope = c.input(1);
  const xs = c.type(x).shape,
    ss = c.type(slope).shape;
  if (ss.length === 1 && xs.length > 2 && ss[0] === xs[1] && ss[0] !== 1) {
    return c.call('prelu', [
      x,
      c.call('reshape', [slope], { shape: [ss[0] as number, ...new Array(xs.length - 2).fill(1)] }),
    ]);
  }
  return c.call('prelu', [x, slope]);
});
