// The sizes a kernel for run-time sizes is measured at (docs/dynamic-shapes.md, "the tuner keyed by ranges"). One
// artifact serves every size in the ranges the user declared, so a candidate is timed at several of them and its
// cost is their weighted combination: the upper bounds (weight 0.4: the largest runs, and the layouts' own sizes),
// the lower bounds (0.35: the other end the user named, often a batch of 1, where a schedule tiled for the bound
// wastes most) and one point drawn uniformly inside the ranges from the tuning seed (0.25: a size between them).
// The bounds together weigh 0.75: they are the sizes the user wrote down. A time at each size is first scaled to
// the default schedule's time at the upper bounds (the scales are fixed by the task's first measurement), so each
// weight counts a candidate's speed relative to the default there, not the size's share of the absolute time (a
// batch of 1 would weigh nothing next to a batch of 64).
import type { SymbolTable } from '../compiler/dynamic-kernel.js';
import { median } from '../util/stats.js';
import { Rng } from './rng.js';

/** The sizes of a kernel for run-time sizes measured at: per size the symbols' values (symbol table order). */
export interface MeasuredSizes {
  values: number[][];
  weights: number[];
  /** What each size is: 'upper', 'lower' or 'inside'. */
  labels: string[];
  /** Per size, the factor its time is scaled by (set from the task's first measurement: see the file comment). */
  scales?: number[];
}

export const SIZE_WEIGHTS = { upper: 0.4, lower: 0.35, inside: 0.25 } as const;

/** The sizes for a program's symbols: upper bounds, lower bounds, one point inside (merged where they coincide). */
export function measuredSizes(symbols: SymbolTable, seed: number): Omit<MeasuredSizes, 'scales'> {
  const rng = new Rng(`run-sizes:${seed}`);
  const range = (s: string) => symbols.ranges.get(s)!;
  const inside = symbols.names.map((s) => {
    const [lo, hi] = range(s);
    // strictly between the bounds where the range allows
    return hi - lo >= 2 ? lo + 1 + rng.int(hi - lo - 1) : hi;
  });
  const out: Omit<MeasuredSizes, 'scales'> = { values: [], weights: [], labels: [] };
  const add = (values: number[], label: keyof typeof SIZE_WEIGHTS) => {
    const at = out.values.findIndex((v) => v.every((x, i) => x === values[i]));
    if (at >= 0) out.weights[at] += SIZE_WEIGHTS[label];
    else {
      out.values.push(values);
      out.weights.push(SIZE_WEIGHTS[label]);
      out.labels.push(label);
    }
  };
  add(
    symbols.names.map((s) => range(s)[1]),
    'upper',
  );
  add(
    symbols.names.map((s) => range(s)[0]),
    'lower',
  );
  add(inside, 'inside');
  return out;
}

/** The scales of the sizes from a measurement's times at each (`sizeCosts[size][round]`; the first size the upper bounds). */
export function sizeScales(sizeCosts: readonly (readonly number[])[]): number[] {
  const med = sizeCosts.map((c) => median(c));
  return med.map((m) => (m > 0 && Number.isFinite(m) && med[0] > 0 ? med[0] / m : 0));
}

/** Each round's cost: the weighted sum over sizes of the time at each, scaled. */
export function combineSizeCosts(sizes: MeasuredSizes, sizeCosts: readonly (readonly number[])[]): number[] {
  const scales = sizes.scales ?? sizeScales(sizeCosts);
  const rounds = Math.min(...sizeCosts.map((c) => c.length));
  return Array.from({ length: rounds }, (_, r) =>
    sizeCosts.reduce((sum, c, k) => sum + sizes.weights[k] * scales[k] * c[r], 0),
  );
}

/** "batch=8 sequence=128" */
export const formatSize = (symbols: readonly string[], values: readonly number[]): string =>
  symbols.map((s, i) => `${s}=${values[i]}`).join(' ');
