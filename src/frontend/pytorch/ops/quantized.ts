// PyTorch's quantized tensors (torch.ao.quantization's converted models, per-tensor affine): a quantized value is
// carried in the graph as the float tensor it stands for, (q - zero_point) * scale, which is exact. Quantizing is
// the float composition clip(round(x / scale) + zero_point, lo, hi) followed by that dequantization (a QDQ pair, as
// ONNX Runtime's QDQ models), so every later operator sees the values PyTorch's quantized kernels see.
import { type GExpr, gconst } from '../../../relay-ir/expr.js';
import type { AttrValue } from '../../../relay-ir/op.js';
import { KilnError } from '../../../runtime/errors.js';
import { tensor } from '../../../runtime/tensor.js';
import { type AtenCtx, aten } from '../converter.js';

/** c10 ScalarType codes of the quantized types -> their integer ranges. */
export const QUANTIZED_RANGES: Readonly<Record<number, readonly [number, number]>> = {
  12: [-128, 127], // qint8
  13: [0, 255], // quint8
  14: [-(2 ** 31), 2 ** 31 - 1], // qint32
};

type Call = (op: string, args: readonly GExpr[], attrs?: Record<string, AttrValue>) => GExpr;
const f32 = (v: number) => gconst(tensor('float32', [], [v]));

/** (round(x / scale) + zero_point) clipped to the range, dequantized again: x as a quantized tensor holds it. */
export function fakeQuantize(call: Call, x: GExpr, scale: number, zeroPoint: number, range: readonly [number, number]) {
  if (!(scale > 0) || !Number.isFinite(scale))
    throw new KilnError('E_MODEL_INVALID', `a quantization scale of ${scale}`, {
      hint: 'scales are positive and finite; the model is malformed or was altered',
    });
  const q = call('clip', [
    call('add', [call('round', [call('div', [x, f32(scale)])]), f32(zeroPoint)]),
    f32(range[0]),
    f32(range[1]),
  ]);
  return dequantized(call, q, scale, zeroPoint);
}

/** (q - zero_point) * scale in float32, for q of any numeric type. */
export function dequantized(call: Call, q: GExpr, scale: number, zeroPoint: number): GExpr {
  const x = q.type.kind === 'tensor' && q.type.dtype !== 'float32' ? call('cast', [q], { to: 'float32' }) : q;
  return call('mul', [call('sub', [x, f32(zeroPoint)]), f32(scale)]);
}

function quantizedRange(c: AtenCtx, code: number): readonly [number, number] {
  const r = QUANTIZED_RANGES[code];
  if (!r) c.unsupported(`quantizing to the type with c10 code ${code} (quint8, qint8 and qint32 are)`);
  return r as readonly [number, number];
}

aten('quantize_per_tensor', (c) => {
  if (!c.has('scale') || c.isTensor('scale') || c.isTensor('zero_point'))
    c.unsupported('a scale or zero point given as a tensor');
  const x = c.tensor('self');
  const call: Call = (op, args, attrs) => c.call(op, args, attrs);
  const input = c.type(x).dtype === 'float32' ? x : c.call('cast', [x], { to: 'float32' });
  return fakeQuantize(call, input, c.float('scale'), c.int('zero_point'), quantizedRange(c, c.int('dtype')));
});

/** A quantized tensor already holds its float values. */
aten('dequantize', (c) => {
  if (c.has('tensors') || c.has('qtensors')) c.unsupported('a list of quantized tensors');
  return c.call('identity', [c.tensor(c.has('self') ? 'self' : 'qtensor')]);
});
