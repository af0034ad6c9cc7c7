// Convolution padding as its own pad kernel: a float32 ungrouped convolution with a window larger than 1 and pads
// becomes pad (zeros) + convolution without pads, so the convolution's inner loops read without bounds checks.
// The copy is cheap next to the convolution's K*K*C multiply-adds per output. Grouped convolutions, depthwise
// ones included (K*K multiply-adds per output, where the copy would cost as much as the convolution), keep their
// bounds checks: loop partitioning (schedule/passes/partition.ts) leaves them only in the border tiles.
import { type FuncNode, gcall, isFuncCall, mapFunc } from '../expr.js';
import { getOp, type OpSpec } from '../op.js';

export function explicitConvPadding(fn: FuncNode): FuncNode {
  return mapFunc(fn, (n) => {
    if (n.kind !== 'call' || isFuncCall(n) || (n.op as OpSpec).name !== 'conv') return undefined;
    const x = n.args[0],
      w = n.args[1];
    const pads = (n.attrs.pads as readonly number[] | undefined) ?? [];
    if (
      x.type.kind !== 'tensor' ||
      x.type.dtype !== 'float32' ||
      w.type.kind !== 'tensor' ||
      pads.every((p) => p === 0)
    )
      return undefined;
    const spatial = x.type.shape.length - 2;
    const group = Number(n.attrs.group ?? 1);
    if ((w.type.shape.slice(2) as number[]).every((k) => k === 1) || group !== 1) return undefined;
    const full = [0, 0, ...pads.slice(0, spatial), 0, 0, ...pads.slice(spatial)];
    const padded = gcall(getOp('pad'), [x], { pads: full, mode: 'constant', value: 0 }, n.origin);
    return gcall(
      n.op as OpSpec,
      [padded, ...n.args.slice(1)],
      { ...n.attrs, pads: new Array(2 * spatial).fill(0) },
      n.origin,
    );
  });
}
