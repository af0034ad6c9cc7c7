// Run-time sizes (artifacts compiled with symbolic dims): the symbols' values come from the inputs' shapes, are
// checked against the ranges the model was compiled for and against each other, and give the outputs' shapes.
// Tensors live in the layouts of the symbols' upper bounds (IOBinding.shape), so inputs are copied in and outputs
// out through those strides.
import type { ArtifactHeader, DimExpr, IOBinding } from './artifact-format.js';
import { ARRAY, type TypedArray } from './dtype.js';
import { KilnError } from './errors.js';
import { type Tensor, formatShape, sizeOf } from './tensor.js';

export function evalDimExpr(e: DimExpr, values: ReadonlyMap<string, number>): number {
  if (typeof e === 'number') return e;
  if (typeof e === 'string') {
    const v = values.get(e);
    if (v === undefined) throw new KilnError('E_ARTIFACT', `dim expression names an unknown symbol '${e}'`);
    return v;
  }
  const a = evalDimExpr(e[1], values);
  switch (e[0]) {
    case '+':
      return a + evalDimExpr(e[2], values);
    case '*':
      return a * evalDimExpr(e[2], values);
    case 'min':
      return Math.min(a, evalDimExpr(e[2], values));
    case 'max':
      return Math.max(a, evalDimExpr(e[2], values));
    case 'floordiv':
      return Math.floor(a / (e[2] as number));
  }
}

/**
 * The grid of one GPU launch at a run's sizes (`values`: the symbols'): per block index the ids `runIds` names,
 * at most the compiled grid's; x folded over y where the launch folds it. The compiled grid where no ids are given.
 */
export function launchGrid(
  launch: { grid: readonly number[]; runIds?: readonly DimExpr[]; foldedX?: true },
  values: ReadonlyMap<string, number>,
): [number, number, number] {
  const { grid, runIds, foldedX } = launch;
  if (!runIds) return [grid[0], grid[1], grid[2]];
  const most = [foldedX ? grid[0] * grid[1] : grid[0], grid[1], grid[2]];
  const ids = most.map((m, t) => Math.max(0, Math.min(m, evalDimExpr(runIds[t], values))));
  if (!foldedX) return [ids[0], ids[1], ids[2]];
  const x = Math.min(ids[0], grid[0]);
  return [x, x && Math.ceil(ids[0] / x), ids[2]];
}

/** The symbols' values by name (header.symbols' order in `symbols`). */
export const symbolMap = (h: ArtifactHeader, symbols: Int32Array): Map<string, number> =>
  new Map((h.symbols ?? []).map((s, i) => [s.name, symbols[i]]));

/** The symbols' values given by the inputs' shapes (already checked against the dims' ranks and static sizes). */
export function symbolValues(h: ArtifactHeader, shapes: Readonly<Record<string, readonly number[]>>): Int32Array {
  const symbols = h.symbols ?? [];
  const values = new Map<string, number>();
  const from = new Map<string, string>();
  const names = new Set(symbols.map((s) => s.name));
  for (const inp of h.inputs) {
    inp.dims?.forEach((d, i) => {
      if (typeof d !== 'string' || !names.has(d)) return;
      const v = shapes[inp.name][i];
      const where = `input '${inp.name}' dim ${i} (${d})`;
      const known = values.get(d);
      if (known !== undefined && known !== v)
        throw new KilnError('E_INPUT', `${where} is ${v}, but ${from.get(d)} is ${known}: they are the same size`, {
          hint: `pass inputs that agree on '${d}'`,
        });
      const s = symbols.find((x) => x.name === d)!;
      if (v < s.min || v > s.max)
        throw new KilnError(
          'E_INPUT',
          `${where} is ${v}, outside the range ${s.min}..${s.max} the model was compiled for`,
          { hint: `pass a size in ${s.min}..${s.max}, or recompile with --dim ${d}=LO..HI` },
        );
      values.set(d, v);
      from.set(d, where);
    });
  }
  const missing = symbols.filter((s) => !s.counted && !values.has(s.name));
  if (missing.length)
    throw new KilnError(
      'E_INPUT',
      `no input has a dim that is just ${missing.map((s) => `'${s.name}'`).join(', ')}, so its size is unknown`,
      { hint: 'recompile with that dim fixed (--dim NAME=N)' },
    );
  // dims that are expressions of the symbols must agree with them
  for (const inp of h.inputs) {
    inp.dims?.forEach((d, i) => {
      if (typeof d !== 'string' || names.has(d)) return;
      const want = evalDimExpr(h.dimExprs?.[d] ?? d, values);
      if (shapes[inp.name][i] !== want)
        throw new KilnError(
          'E_INPUT',
          `input '${inp.name}' dim ${i} (${d}) is ${shapes[inp.name][i]}, but the other inputs make it ${want}`,
          { hint: `pass ${d} = ${want}` },
        );
    });
  }
  // (a counted size is written by its kernel during the run: sizesAfterRun reads it back)
  return Int32Array.from(symbols, (s) => values.get(s.name) ?? s.min);
}

/**
 * The symbols' values after a run: those given by the inputs, and the sizes the kernels counted, read from the
 * symbols region (`region()`: the int32 values as the kernels left them, read only where the artifact counts sizes).
 * `symbols` itself where nothing was counted.
 */
export function sizesAfterRun(
  h: ArtifactHeader,
  symbols: Int32Array | undefined,
  region: () => Int32Array,
): Int32Array | undefined {
  if (!symbols || !countsSizes(h)) return symbols;
  const counted = region();
  const out = symbols.slice();
  (h.symbols ?? []).forEach((s, i) => {
    if (!s.counted) return;
    const v = counted[i];
    const [lo, hi] = s.declared ?? [s.min, s.max];
    if (s.declared && v >= s.min && v <= s.max && !(v >= lo && v <= hi))
      throw new KilnError(
        'E_INPUT',
        `the inputs make the Range that counts '${s.name}' ${v > hi ? `longer than ${hi}` : `${v}`} elements, outside the range ${lo}..${hi} it was compiled for (or its delta is 0)`,
        { hint: `compile with a range that holds it: kiln compile --dim ${s.name}=${Math.min(lo, v)}..N` },
      );
    if (!(v >= s.min && v <= s.max))
      throw new KilnError(
        'E_ARTIFACT',
        `the run counted the size '${s.name}' as ${v}, outside its range ${s.min}..${s.max}`,
        {
          hint: 'the artifact is damaged: recompile the model',
        },
      );
    out[i] = v;
  });
  return out;
}

/** Whether a run of the artifact counts sizes from the data (its outputs' shapes are known only after it). */
export const countsSizes = (h: ArtifactHeader): boolean => (h.symbols ?? []).some((s) => s.counted);

/** The symbols' values of a run over checked inputs; undefined for a model without run-time sizes. */
export function runSymbols(h: ArtifactHeader, checked: Readonly<Record<string, Tensor>>): Int32Array | undefined {
  if (!h.symbols) return undefined;
  return symbolValues(h, Object.fromEntries(h.inputs.map((i) => [i.name, checked[i.name].shape])));
}

/** Writes an input's data into `into`, its binding's layout (at the bounds for run-time dims). */
export function writeBoundLayout(b: IOBinding, t: Tensor, into: Elements): void {
  if (b.dims) copyStrided(t.data as unknown as Elements, t.shape, into, b.shape, true);
  else into.set(t.data as unknown as ArrayLike<unknown>);
}

/** An input's data in its binding's layout: at the bounds for run-time dims, else the tensor's own data. */
export function inBoundLayout(b: IOBinding, t: Tensor): TypedArray {
  if (!b.dims) return t.data;
  const laidOut = new ARRAY[b.dtype](sizeOf(b.shape)) as TypedArray;
  writeBoundLayout(b, t, laidOut as unknown as Elements);
  return laidOut;
}

/** An output out of its binding's layout (`laidOut`, at the bounds), in its shape at the symbols' values. */
export function outOfBoundLayout(
  h: ArtifactHeader,
  b: IOBinding,
  symbols: Int32Array | undefined,
  laidOut: TypedArray,
): Tensor {
  if (!symbols || !b.dims) return { dtype: b.dtype, shape: [...b.shape], data: laidOut } as Tensor;
  const shape = runShape(h, b, symbols);
  const data = new ARRAY[b.dtype](sizeOf(shape)) as TypedArray;
  copyStrided(data as unknown as Elements, shape, laidOut as unknown as Elements, b.shape, false);
  return { dtype: b.dtype, shape, data } as Tensor;
}

/** A binding's shape at the symbols' values. */
export function runShape(h: ArtifactHeader, b: IOBinding, symbols: Int32Array): number[] {
  if (!b.dims) return [...b.shape];
  const values = symbolMap(h, symbols);
  return b.dims.map((d) => (typeof d === 'number' ? d : evalDimExpr(h.dimExprs?.[d] ?? d, values)));
}

/** A typed array of any element type. */
export interface Elements extends ArrayLike<unknown> {
  set(a: ArrayLike<unknown>, offset?: number): void;
  subarray(begin: number, end?: number): Elements;
}

/**
 * Copies between a dense tensor of `shape` and the bound layout `bound` (same rank, every dim <= the bound's):
 * row by row of the innermost dim, one copy when only the leading dim is smaller.
 */
export function copyStrided(
  dense: Elements,
  shape: readonly number[],
  laidOut: Elements,
  bound: readonly number[],
  toLayout: boolean,
): void {
  const rank = shape.length;
  if (shape.some((d, i) => d > bound[i]))
    throw new KilnError('E_INTERNAL', `shape ${formatShape(shape)} exceeds the layout ${formatShape(bound)}`);
  if (rank === 0 || shape.slice(1).every((d, i) => d === bound[i + 1])) {
    const n = shape.reduce((a, b) => a * b, 1);
    if (toLayout) laidOut.set(dense.subarray(0, n));
    else dense.set(laidOut.subarray(0, n));
    return;
  }
  const row = shape[rank - 1];
  const strides = new Array<number>(rank);
  strides[rank - 1] = 1;
  for (let i = rank - 2; i >= 0; i--) strides[i] = strides[i + 1] * bound[i + 1];
  const rows = shape.slice(0, -1).reduce((a, b) => a * b, 1);
  const idx = new Array<number>(rank - 1).fill(0);
  for (let r = 0; r < rows; r++) {
    let at = 0;
    for (let i = 0; i < rank - 1; i++) at += idx[i] * strides[i];
    if (toLayout) laidOut.set(dense.subarray(r * row, (r + 1) * row), at);
    else dense.set(laidOut.subarray(at, at + row), r * row);
    for (let i = rank - 2; i >= 0; i--) {
      if (++idx[i] < shape[i]) break;
      idx[i] = 0;
    }
  }
}
