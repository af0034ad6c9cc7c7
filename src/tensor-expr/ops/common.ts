// Helpers shared by operator definitions: broadcasting, attribute access, shape checks.
import { KilnError } from '../../runtime/errors.js';
import type { Attrs } from '../../relay-ir/op.js';
import type { Dim, TensorType } from '../../relay-ir/types.js';
import { type Expr, int } from '../expr.js';
import { type Tensor, at } from '../tensor.js';
import { dimEquals, dimSymbols } from '../../relay-ir/sym-dim.js';

export function shapeError(msg: string): never {
  throw new KilnError('E_SHAPE', msg);
}

/** Inputs an operator computes with together must have one element type (present ones; optional ones may be absent). */
export function sameDtype(op: string, first: TensorType, ...others: readonly (TensorType | undefined)[]): void {
  for (const t of others)
    if (t && t.dtype !== first.dtype) shapeError(`${op}: input dtypes differ (${first.dtype} vs ${t.dtype})`);
}

/**
 * numpy-style broadcast of several shapes. A symbolic dim broadcasts against 1 and against the dims the symbols'
 * ranges prove equal to it; one that might be 1 at run time is not taken to broadcast.
 */
export function broadcastShapes(shapes: readonly (readonly Dim[])[]): Dim[] {
  const rank = Math.max(0, ...shapes.map((s) => s.length));
  const out: Dim[] = [];
  const show = () => shapes.map((s) => `[${s.join(',')}]`).join(' and ');
  for (let i = 0; i < rank; i++) {
    let d: Dim = 1;
    for (const s of shapes) {
      const x = s[s.length - rank + i] ?? 1;
      if (x === 1) continue;
      if (d === 1) d = x;
      else if (d !== x && !dimEquals(d, x)) {
        if (typeof d === 'number' && typeof x === 'number') shapeError(`shapes ${show()} do not broadcast`);
        const symbols = [...new Set([d, x].flatMap(dimSymbols))];
        throw new KilnError(
          'E_SHAPE',
          `shapes ${show()} broadcast only if ${d} = ${x}, which the dims' ranges do not prove`,
          {
            hint: `give the symbolic dims ranges that decide it: ${symbols.map((s) => `--dim ${s}=LO..HI`).join(' ')} (API: dims: { ${symbols.map((s) => `${s}: [LO, HI]`).join(', ')} })`,
          },
        );
      }
    }
    out.push(d);
  }
  return out;
}

/** Loads `t` at the output index `idx` of a broadcast whose result has rank idx.length. */
export function bcastLoad(t: Tensor, idx: readonly Expr[]): Expr {
  const r = t.shape.length,
    R = idx.length;
  return at(t, ...t.shape.map((d, j) => (d === 1 ? int(0) : idx[R - r + j])));
}

export const num = (a: Attrs, k: string, dflt?: number): number => {
  const v = a[k];
  if (v === undefined || v === null) {
    if (dflt === undefined) throw new KilnError('E_MODEL_INVALID', `missing attribute '${k}'`);
    return dflt;
  }
  return Number(v);
};
export const ints = (a: Attrs, k: string, dflt?: readonly number[]): number[] => {
  const v = a[k];
  if (v === undefined || v === null) {
    if (dflt === undefined) throw new KilnError('E_MODEL_INVALID', `missing attribute '${k}'`);
    return [...dflt];
  }
  return (v as readonly number[]).map(Number);
};
/** A list of dims: numbers, and symbolic dims (relay-ir/sym-dim.ts) as their texts. */
export const dims = (a: Attrs, k: string, dflt?: readonly Dim[]): Dim[] => {
  const v = a[k];
  if (v === undefined || v === null) {
    if (dflt === undefined) throw new KilnError('E_MODEL_INVALID', `missing attribute '${k}'`);
    return [...dflt];
  }
  return (v as readonly Dim[]).map((d) => (typeof d === 'string' ? d : Number(d)));
};
export const str = (a: Attrs, k: string, dflt: string): string =>
  a[k] === undefined || a[k] === null ? dflt : String(a[k]);

export function staticDims(t: TensorType, what: string): number[] {
  for (const d of t.shape) staticDim(d, what);
  return t.shape as number[];
}

/**
 * The type rule of an operator whose first dim passes through (a batch), applied where that dim alone is symbolic:
 * the rule runs with a batch of 1 and the symbolic batch is put back. Other symbolic dims stay the rule's to reject.
 */
export function symbolicBatch(
  infer: (args: readonly TensorType[], a: Attrs) => TensorType,
): (args: readonly TensorType[], a: Attrs) => TensorType {
  return (args, a) => {
    const batch = args[0]?.shape[0];
    if (typeof batch !== 'string') return infer(args, a);
    // (every argument with the same batch: a grid, say)
    const t = infer(
      args.map((x) => (x.shape[0] === batch ? { ...x, shape: [1, ...x.shape.slice(1)] } : x)),
      a,
    );
    return t.shape[0] === 1 ? { ...t, shape: [batch, ...t.shape.slice(1)] } : infer(args, a);
  };
}

/** The dims of `t`: the first (a batch) may be symbolic, the others must be numbers. */
export function batchThenStatic(t: TensorType, what: string): [Dim, ...number[]] {
  const [batch, ...rest] = t.shape;
  return [batch, ...rest.map((d) => staticDim(d, what))];
}

/** A dim that must be a number here (kernels do not take sizes at run time yet). */
export function staticDim(d: Dim, what: string): number {
  if (typeof d !== 'number')
    throw new KilnError('E_DYNAMIC', `${what}: dimension '${d}' must be known at compile time`, {
      hint: 'pass concrete input shapes with the inputShapes compile option (kiln compile --input-shape name=1,3,224,224)',
    });
  return d;
}

/** Normalizes a possibly negative axis against a rank. */
export function normAxis(axis: number, rank: number, what = 'axis'): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) shapeError(`${what} ${axis} out of range for rank ${rank}`);
  return a;
}
