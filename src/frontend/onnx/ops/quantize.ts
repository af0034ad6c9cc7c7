// ONNX linear quantization -> compositions of Kiln graph operators (cast, div, round, add, clip, matmul_integer,
// conv_integer): QuantizeLinear, DequantizeLinear (every opset: per-tensor, per-axis and blocked scales), and
// DynamicQuantizeLinear, QLinearMatMul and QLinearConv on top of them. The arithmetic is float32 whatever the
// scale's type (ONNX Runtime's too), rounding half to even, saturating to the quantized type's range.
import { type DType, ONNX_DTYPE, isFloat, isFloat8 } from '../../../runtime/dtype.js';
import { KilnError } from '../../../runtime/errors.js';
import { tensor } from '../../../runtime/tensor.js';
import type { GExpr } from '../../../relay-ir/expr.js';
import { type ConvertCtx, converter } from '../converter.js';
import { convInteger, convIntegerAttrs } from './nn.js';
import { saturatingCast } from './elementwise.js';
import { integerProduct } from '../../../relay-ir/passes/fuse-qdq.js';

/** The integer types a zero point (and a quantized tensor) may have, with their ranges. */
const QRANGE: Partial<Record<DType, [number, number]>> = {
  uint8: [0, 255],
  int8: [-128, 127],
  uint16: [0, 65535],
  int16: [-32768, 32767],
};

const f32 = (c: ConvertCtx, e: GExpr) => (c.type(e).dtype === 'float32' ? e : c.call('cast', [e], { to: 'float32' }));
const castTo = (c: ConvertCtx, e: GExpr, to: DType) => (c.type(e).dtype === to ? e : c.call('cast', [e], { to }));
const scalar = (c: ConvertCtx, dtype: DType, v: number) => c.constant(tensor(dtype, [], [v]));

/** The quantized type's range, or an E_UNSUPPORTED naming the type. */
function qrange(c: ConvertCtx, t: DType): [number, number] {
  const r = QRANGE[t];
  if (!r) c.unsupported(`${c.opType} with quantized type ${t} (Kiln has uint8, int8, uint16 and int16)`);
  return r as [number, number];
}

/**
 * `p` (a scale or zero point) shaped to broadcast against `x` [..]: a scalar or one-element tensor as it is; a 1-D
 * one along `axis`; a blocked one (same rank as x, `block` elements of x per element along `axis`) repeated along it.
 */
function alongAxis(c: ConvertCtx, p: GExpr, x: GExpr, axis: number, block: number, what: string): GExpr {
  const xs = c.type(x).shape,
    ps = c.type(p).shape;
  const rank = xs.length;
  const ax = axis < 0 ? axis + rank : axis;
  const size = ps.reduce<number>((n, d) => n * Number(d), 1);
  if (block > 0) {
    if (ps.length !== rank || ax < 0 || ax >= rank)
      throw new KilnError(
        'E_MODEL_INVALID',
        `${c.opType} '${c.name}': blocked ${what} of shape [${ps}] for input [${xs}]`,
        {
          hint: `a blocked ${what} has the input's rank, with ceil(dim / block_size) along axis ${axis}`,
        },
      );
    const n = Number(xs[ax]);
    if (Number(ps[ax]) !== Math.ceil(n / block))
      throw new KilnError(
        'E_MODEL_INVALID',
        `${c.opType} '${c.name}': ${what} has ${ps[ax]} blocks along axis ${ax}, input dim ${n} / block_size ${block} needs ${Math.ceil(n / block)}`,
        { hint: 'fix the block_size attribute or the scale shape' },
      );
    const idx = tensor(
      'int64',
      [n],
      Array.from({ length: n }, (_, i) => Math.floor(i / block)),
    );
    return c.call('gather', [p, c.constant(idx)], { axis: ax });
  }
  if (ps.length === 0 || (size === 1 && ps.length <= 1))
    return ps.length === 0 ? p : c.call('reshape', [p], { shape: [] });
  if (ps.length !== 1 || ax < 0 || ax >= rank || Number(ps[0]) !== Number(xs[ax]))
    throw new KilnError(
      'E_MODEL_INVALID',
      `${c.opType} '${c.name}': ${what} of shape [${ps}] fits neither per-tensor nor per-axis (axis ${axis}) quantization of [${xs}]`,
      { hint: `a per-axis ${what} is 1-D with the input's dim along axis ${axis}` },
    );
  return c.call('reshape', [p], { shape: [Number(ps[0]), ...Array(rank - ax - 1).fill(1)] });
}

/** round(v) + zp saturated to `t`'s range and cast to it; `v` and `zp` float32 (zp may be undefined: 0). */
function saturateRound(c: ConvertCtx, v: GExpr, zp: GExpr | undefined, t: DType): GExpr {
  const [lo, hi] = qrange(c, t);
  let q = c.call('round', [v]);
  if (zp) q = c.call('add', [q, zp]);
  q = c.call('clip', [q, scalar(c, 'float32', lo), scalar(c, 'float32', hi)]);
  return c.call('cast', [q], { to: t });
}

/** The output type that `output_dtype` (opset 21+) names, when it names one. */
function outputDtype(c: ConvertCtx): DType | undefined {
  const code = c.int('output_dtype', 0);
  if (!code) return undefined;
  const t = ONNX_DTYPE[code];
  if (!t) c.unsupported(`${c.opType} output_dtype ${code}`);
  return t;
}

/**
 * y = saturate(round(x / scale) + zero_point): x float (or int32), the zero point's type (uint8 without one). To a
 * float8: x / scale + zero_point rounded to the format, saturating unless `saturate` = 0 (opset 19).
 */
export function quantizeLinear(c: ConvertCtx, x: GExpr, scale: GExpr, zp: GExpr | undefined, axis = 1, block = 0) {
  const to = zp ? c.type(zp).dtype : (outputDtype(c) ?? 'uint8');
  if (!isFloat(c.type(scale).dtype)) c.unsupported(`${c.opType} with a ${c.type(scale).dtype} scale`);
  const s = f32(c, alongAxis(c, scale, x, axis, block, 'scale'));
  const z = zp && f32(c, alongAxis(c, zp, x, axis, block, 'zero point'));
  const v = c.call('div', [f32(c, x), s]);
  if (isFloat8(to)) return saturatingCast(c, z ? c.call('add', [v, z]) : v, to);
  qrange(c, to);
  return saturateRound(c, v, z, to);
}

/** y = (x - zero_point) * scale, in the scale's type (or output_dtype's): the difference exact in int32. */
export function dequantizeLinear(c: ConvertCtx, x: GExpr, scale: GExpr, zp: GExpr | undefined, axis = 1, block = 0) {
  const xt = c.type(x).dtype;
  const st = c.type(scale).dtype;
  if (!isFloat(st)) c.unsupported(`${c.opType} with a ${st} scale`);
  // the difference: exact in int32, or (a float8 is its value, its zero point a float8 too) in float32
  const diffType = isFloat8(xt) ? 'float32' : 'int32';
  if (diffType === 'int32' && xt !== 'int32') qrange(c, xt);
  let d = castTo(c, x, diffType);
  if (zp) d = c.call('sub', [d, castTo(c, alongAxis(c, zp, x, axis, block, 'zero point'), diffType)]);
  const y = c.call('mul', [f32(c, d), f32(c, alongAxis(c, scale, x, axis, block, 'scale'))]);
  return castTo(c, y, outputDtype(c) ?? st);
}

const qAxis = (c: ConvertCtx) => c.int('axis', 1);
const qBlock = (c: ConvertCtx) => c.int('block_size', 0);

converter('QuantizeLinear', 10, (c) => quantizeLinear(c, c.input(0), c.input(1), c.optInput(2), qAxis(c), qBlock(c)));
converter('DequantizeLinear', 10, (c) =>
  dequantizeLinear(c, c.input(0), c.input(1), c.optInput(2), qAxis(c), qBlock(c)),
);

/** DynamicQuantizeLinear: uint8 with the scale and zero point that map [min(x, 0), max(x, 0)] onto [0, 255]. */
converter('DynamicQuantizeLinear', 11, (c) => {
  const x = c.input(0);
  if (c.type(x).dtype !== 'float32') c.unsupported(`DynamicQuantizeLinear of ${c.type(x).dtype}`);
  const rank = c.type(x).shape.length;
  const axes = Array.from({ length: rank }, (_, i) => i);
  const zero = scalar(c, 'float32', 0),
    qmax = scalar(c, 'float32', 255);
  const lo = c.call('min', [c.call('reduce_min', [x], { axes, keepdims: 0 }), zero]);
  const hi = c.call('max', [c.call('reduce_max', [x], { axes, keepdims: 0 }), zero]);
  const scale = c.call('div', [c.call('sub', [hi, lo]), qmax]);
  // the zero point: 0 - min / scale, clipped to [0, 255], then rounded (ONNX's order)
  const zpf = c.call('round', [c.call('clip', [c.call('sub', [zero, c.call('div', [lo, scale])]), zero, qmax])]);
  const zp = c.call('cast', [zpf], { to: 'uint8' });
  return [saturateRound(c, c.call('div', [x, scale]), zpf, 'uint8'), scale, zp];
});

/**
 * The requantization both QLinear ops end with: an int32 accumulator times a_scale * b_scale / y_scale (per output
 * channel where the weight scale is, along `axis` of the output), rounded, plus y's zero point, saturated.
 */
function requantize(c: ConvertCtx, acc: GExpr, sa: GExpr, sb: GExpr, sy: GExpr, zy: GExpr | undefined, axis: number) {
  const along = (e: GExpr, what: string) => alongAxis(c, e, acc, axis, 0, what);
  const mult = c.call('div', [
    c.call('mul', [f32(c, along(sa, 'scale')), f32(c, along(sb, 'scale'))]),
    f32(c, along(sy, 'scale')),
  ]);
  const to = zy ? c.type(zy).dtype : 'uint8';
  return saturateRound(c, c.call('mul', [f32(c, acc), mult]), zy && f32(c, along(zy, 'zero point')), to);
}

const zeroLike = (c: ConvertCtx, e: GExpr) => scalar(c, c.type(e).dtype, 0);

/** The elements of a constant input (absent: `dflt`), or undefined where the value is computed at run time. */
function known(e: GExpr | undefined, dflt?: number[]): number[] | undefined {
  if (!e) return dflt;
  return e.kind === 'const' ? Array.from(e.value.data as ArrayLike<number | bigint>, Number) : undefined;
}

/**
 * QLinearConv / QLinearMatMul on the integer operator the QDQ fusion also makes (relay-ir/passes/fuse-qdq.ts),
 * when the weight and every scale and zero point are constants (as quantizers write them); undefined otherwise.
 * The weight scale and zero point are per tensor or per output channel.
 */
function integerKernel(c: ConvertCtx, kind: 'conv' | 'matmul'): GExpr | undefined {
  const x = c.input(0),
    w = c.input(3);
  const xt = c.type(x).dtype;
  if (w.kind !== 'const' || (w.value.dtype !== 'uint8' && w.value.dtype !== 'int8')) return undefined;
  if (xt !== 'uint8' && xt !== 'int8') return undefined;
  const ws = w.value.shape;
  if (kind === 'matmul' && (ws.length !== 2 || c.type(x).shape.length < 1)) return undefined;
  const channels = kind === 'conv' ? ws[0] : ws[1];
  const yz = c.optInput(7);
  const yType = yz ? c.type(yz).dtype : 'uint8';
  if (yType !== 'uint8' && yType !== 'int8') return undefined;
  const xs = known(c.input(1)),
    xz = known(c.optInput(2), [0]),
    wScale = known(c.input(4)),
    wZero = known(c.optInput(5), [0]),
    ys = known(c.input(6)),
    yZero = known(yz, [0]),
    bias = kind === 'conv' ? known(c.optInput(8), new Array(channels).fill(0)) : new Array(channels).fill(0);
  const perChannel = (v: number[] | undefined) =>
    v?.length === 1 ? new Array<number>(channels).fill(v[0]) : v?.length === channels ? v : undefined;
  const wsc = perChannel(wScale),
    wzp = perChannel(wZero);
  if (xs?.length !== 1 || xz?.length !== 1 || ys?.length !== 1 || yZero?.length !== 1 || !wsc || !wzp) return undefined;
  if (bias?.length !== channels) return undefined;
  const weight = w.value;
  const [qmin, qmax] = QRANGE[yType]!;
  return integerProduct({
    kind,
    x,
    xScale: xs[0],
    xZero: xz[0],
    weight: Array.from(weight.data as ArrayLike<number>, Number),
    weightShape: ws,
    wScale: wsc,
    wZero: wzp,
    bias: Int32Array.from(bias),
    yScale: ys[0],
    yZero: yZero[0],
    yType,
    qmin,
    qmax,
    conv: kind === 'conv' ? convIntegerAttrs(c, x, w) : undefined,
    origin: [c.name],
  });
}

converter('QLinearMatMul', 10, (c) => {
  const fused = integerKernel(c, 'matmul');
  if (fused) return fused;
  const a = c.input(0),
    b = c.input(3);
  const za = c.optInput(2) ?? zeroLike(c, a),
    zb = c.optInput(5) ?? zeroLike(c, b);
  // matmul_integer takes scalar or 1-element zero points as they are
  const acc = c.call('matmul_integer', [a, b, za, zb]);
  // per-column b scales (1-D of N) lie along the output's last axis
  return requantize(c, acc, c.input(1), c.input(4), c.input(6), c.optInput(7), -1);
});

converter('QLinearConv', 10, (c) => {
  const fused = integerKernel(c, 'conv');
  if (fused) return fused;
  const x = c.input(0),
    w = c.input(3);
  const rank = c.type(x).shape.length;
  let acc = convInteger(c, x, w, c.optInput(2), c.optInput(5));
  const bias = c.optInput(8);
  if (bias) {
    const m = Number(c.type(bias).shape[0]);
    acc = c.call('add', [acc, c.call('reshape', [bias], { shape: [m, ...Array(rank - 2).fill(1)] })]);
  }
  // per-output-channel weight scales lie along the output's axis 1
  return requantize(c, acc, c.input(1), c.input(4), c.input(6), c.optInput(7), 1);
});
