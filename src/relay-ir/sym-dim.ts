// Symbolic dimensions: a dim that is not a number is the canonical text of an integer expression over the model's
// symbols (`batch`, `sequence`, `2*sequence`, `batch*sequence`, `past + sequence`, `min(sequence, 512)`). The text
// is the identity: two dims are the same size when their texts are equal, so types compare and print as before.
// Arithmetic works on polynomials (sums of integer multiples of products of atoms); what polynomials cannot say
// exactly (a floor division that does not divide, a min that the symbols' ranges do not decide) becomes an opaque
// atom. Every text this module prints is remembered with its structure; any other text is a plain symbol.
// Symbols are sizes, so they are >= 0; a compile may narrow them with ranges (`--dim sequence=1..512`), which
// decide comparisons such as `min(sequence, 512) = sequence`.
import { KilnError } from '../runtime/errors.js';
import type { Dim } from './types.js';

/** Sum of terms: monomial (atom texts sorted, joined by `*`; '' for the constant) -> integer coefficient. */
type Poly = ReadonlyMap<string, number>;

/** An atom that is not a plain symbol: its printed text stands for it inside monomials. */
type Composite =
  | { readonly kind: 'floordiv'; readonly a: Poly; readonly b: number }
  | { readonly kind: 'min' | 'max'; readonly a: Poly; readonly b: Poly };

const composites = new Map<string, Composite>();
/** Poly of every composite text that toDim printed. */
const printed = new Map<string, Poly>();

/** The range [lo, hi] of each symbol in the current compile (hi may be Infinity); a symbol not listed is [0, ∞). */
export type DimRanges = ReadonlyMap<string, readonly [number, number]>;
const noRanges: DimRanges = new Map();
let ranges: DimRanges = noRanges;

/** Runs `fn` with the symbols' ranges in force (type inference and folding inside it use them). */
export function withDimRanges<T>(r: DimRanges, fn: () => T): T {
  const outer = ranges;
  ranges = r;
  try {
    return fn();
  } finally {
    ranges = outer;
  }
}

export const isSymbolic = (d: Dim): d is string => typeof d === 'string';

/**
 * A new symbol for a size counted from data while the model runs (NonZero's count, TopK's K from a tensor), with
 * the range [0, hi], added to the ranges in force (the import's own map, which the compile keeps). `base` starts
 * its name; a number makes it unique among the symbols in force.
 */
export function countedSymbol(base: string, hi: number): string {
  if (!(ranges instanceof Map) || ranges === noRanges)
    throw new KilnError('E_INTERNAL', 'a counted size needs the ranges of an import in force', {
      hint: 'please report this with the model',
    });
  if (!Number.isFinite(hi))
    throw new KilnError('E_DYNAMIC', `the size ${base} counts from a tensor of unbounded size`, {
      hint: 'give every symbolic input dim a range: --dim NAME=LO..HI (API: dims: { NAME: [LO, HI] })',
    });
  let k = 0;
  while (ranges.has(`${base}_${k}`)) k++;
  const name = `${base}_${k}`;
  (ranges as Map<string, readonly [number, number]>).set(name, [0, hi]);
  return name;
}

/**
 * Counted sizes with no bound in the model (a Range whose start, limit or delta are data): the user declares the
 * bound as a dim named `${base}_K` (range_0, range_1, ... in the order the model's nodes count them).
 */
export const DECLARED_COUNTED = /^range_\d+$/;
const claimed = new WeakMap<DimRanges, Set<string>>();

/**
 * The next declared counted size of `base` (`${base}_K`, K from 0 in conversion order) and the range [lo, hi] the
 * user gave it. In force from then on: the range [0, hi + 1], so that kernels stay inside a layout one element
 * larger even when the data asks for more than hi, which the run then reports (SymbolInfo.declared).
 */
export function declaredCountedSymbol(base: string, what: string): { symbol: string; declared: [number, number] } {
  if (!(ranges instanceof Map) || ranges === noRanges)
    throw new KilnError('E_INTERNAL', 'a counted size needs the ranges of an import in force', {
      hint: 'please report this with the model',
    });
  const taken = claimed.get(ranges) ?? new Set<string>();
  claimed.set(ranges, taken);
  let k = 0;
  while (taken.has(`${base}_${k}`)) k++;
  const symbol = `${base}_${k}`;
  const r = ranges.get(symbol);
  if (!r)
    throw new KilnError('E_DYNAMIC', `${what}: its length is counted from the data, and nothing bounds it`, {
      hint: `give its largest length: kiln compile --dim ${symbol}=0..N (API: dims: { ${symbol}: [0, N] }); or bake the inputs it reads in: --specialize NAME=FILE`,
    });
  taken.add(symbol);
  const declared: [number, number] = [r[0], r[1]];
  (ranges as Map<string, readonly [number, number]>).set(symbol, [0, r[1] + 1]);
  return { symbol, declared };
}

/** Declared counted sizes (DECLARED_COUNTED) in `r` that no node claimed: names the model does not count. */
export function unclaimedCounted(r: DimRanges): string[] {
  const taken = claimed.get(r);
  return [...r.keys()].filter((s) => DECLARED_COUNTED.test(s) && !taken?.has(s));
}

// --- polynomials --------------------------------------------------------------------------------------------------

const constPoly = (c: number): Poly => new Map(c === 0 ? [] : [['', c]]);
const atomPoly = (atom: string): Poly => new Map([[atom, 1]]);

function polyOf(d: Dim): Poly {
  if (typeof d === 'number') return constPoly(d);
  return printed.get(d) ?? atomPoly(d);
}

function addInto(out: Map<string, number>, p: Poly, scale: number): void {
  for (const [m, c] of p) {
    const v = (out.get(m) ?? 0) + c * scale;
    if (v === 0) out.delete(m);
    else out.set(m, v);
  }
}
const plus = (a: Poly, b: Poly, scaleB = 1): Poly => {
  const out = new Map(a);
  addInto(out, b, scaleB);
  return out;
};
/** The atoms of a monomial's text: split at the `*`s outside parentheses (a composite atom has its own inside). */
function atomsOf(m: string): string[] {
  if (m === '') return [];
  if (!m.includes('(')) return m.split('*');
  const out: string[] = [];
  let depth = 0,
    from = 0;
  for (let i = 0; i < m.length; i++) {
    if (m[i] === '(') depth++;
    else if (m[i] === ')') depth--;
    else if (m[i] === '*' && depth === 0) {
      out.push(m.slice(from, i));
      from = i + 1;
    }
  }
  out.push(m.slice(from));
  return out;
}
const monoTimes = (x: string, y: string): string =>
  x === '' ? y : y === '' ? x : [...atomsOf(x), ...atomsOf(y)].sort().join('*');
function times(a: Poly, b: Poly): Poly {
  const out = new Map<string, number>();
  for (const [ma, ca] of a) for (const [mb, cb] of b) addInto(out, new Map([[monoTimes(ma, mb), ca * cb]]), 1);
  return out;
}
const constantOf = (p: Poly): number | undefined =>
  p.size === 0 ? 0 : p.size === 1 && p.has('') ? p.get('')! : undefined;

function printPoly(p: Poly): string {
  const terms = [...p].sort(([x], [y]) => (x === '' ? 1 : y === '' ? -1 : x < y ? -1 : x > y ? 1 : 0));
  let s = '';
  for (const [m, c] of terms) {
    const mag = Math.abs(c);
    const body = m === '' ? String(mag) : mag === 1 ? m : `${mag}*${m}`;
    s += s === '' ? (c < 0 ? `-${body}` : body) : c < 0 ? ` - ${body}` : ` + ${body}`;
  }
  return s === '' ? '0' : s;
}

/** The dim of a polynomial: a number, or its canonical text (remembered, so polyOf reads it back). */
function toDim(p: Poly): Dim {
  const c = constantOf(p);
  if (c !== undefined) return c;
  const text = printPoly(p);
  if (!printed.has(text)) printed.set(text, p);
  return text;
}

function compositeAtom(c: Composite): Poly {
  const inner = (p: Poly) => printPoly(p);
  const text = c.kind === 'floordiv' ? `floor((${inner(c.a)})/${c.b})` : `${c.kind}(${inner(c.a)}, ${inner(c.b)})`;
  if (!composites.has(text)) composites.set(text, c);
  return atomPoly(text);
}

// --- ranges -------------------------------------------------------------------------------------------------------

type Interval = readonly [number, number];
const mulBound = (x: number, y: number) => (x === 0 || y === 0 ? 0 : x * y);
function mulInterval(a: Interval, b: Interval): Interval {
  const c = [mulBound(a[0], b[0]), mulBound(a[0], b[1]), mulBound(a[1], b[0]), mulBound(a[1], b[1])];
  return [Math.min(...c), Math.max(...c)];
}

function atomInterval(atom: string): Interval {
  const c = composites.get(atom);
  if (!c) return ranges.get(atom) ?? [0, Number.POSITIVE_INFINITY];
  if (c.kind === 'floordiv') {
    const [lo, hi] = polyInterval(c.a);
    return [Math.floor(lo / c.b), Math.floor(hi / c.b)];
  }
  const a = polyInterval(c.a),
    b = polyInterval(c.b);
  return c.kind === 'min' ? [Math.min(a[0], b[0]), Math.min(a[1], b[1])] : [Math.max(a[0], b[0]), Math.max(a[1], b[1])];
}

function polyInterval(p: Poly): Interval {
  let lo = 0,
    hi = 0;
  for (const [m, c] of p) {
    const mono = m === '' ? ([1, 1] as Interval) : atomsOf(m).map(atomInterval).reduce(mulInterval);
    const [x, y] = mulInterval(mono, [c, c]);
    lo += x;
    hi += y;
  }
  return [lo, hi];
}

/** The least and greatest value `d` may take under the current ranges (hi may be Infinity). */
export const dimBounds = (d: Dim): Interval => polyInterval(polyOf(d));

// --- arithmetic ---------------------------------------------------------------------------------------------------

export const dimAdd = (a: Dim, b: Dim): Dim =>
  typeof a === 'number' && typeof b === 'number' ? a + b : toDim(plus(polyOf(a), polyOf(b)));
export const dimSub = (a: Dim, b: Dim): Dim =>
  typeof a === 'number' && typeof b === 'number' ? a - b : toDim(plus(polyOf(a), polyOf(b), -1));
export const dimMul = (a: Dim, b: Dim): Dim =>
  typeof a === 'number' && typeof b === 'number' ? a * b : toDim(times(polyOf(a), polyOf(b)));
/** The product of dims (the element count of a shape). */
export const dimProduct = (dims: readonly Dim[]): Dim => dims.reduce<Dim>((p, d) => dimMul(p, d), 1);

/** floor(a / b) for a constant b > 0: exact where b divides every coefficient, else an opaque atom. */
export function dimFloorDiv(a: Dim, b: number): Dim {
  if (!Number.isInteger(b) || b <= 0)
    throw new KilnError('E_INTERNAL', `symbolic floor division by ${b}`, { hint: 'please report this with the model' });
  if (typeof a === 'number') return Math.floor(a / b);
  if (b === 1) return a;
  const p = polyOf(a);
  // a = b*q + r with r the constant part: floor(a/b) = q + floor(r/b) when b divides all the other coefficients
  const rest = p.get('') ?? 0;
  if ([...p].every(([m, c]) => m === '' || c % b === 0)) {
    const q = new Map<string, number>();
    for (const [m, c] of p) if (m !== '') q.set(m, c / b);
    return toDim(plus(q, constPoly(Math.floor(rest / b))));
  }
  const [lo, hi] = polyInterval(p);
  if (Math.floor(lo / b) === Math.floor(hi / b)) return Math.floor(lo / b);
  return toDim(compositeAtom({ kind: 'floordiv', a: p, b }));
}

/** a mod b (floor semantics) for a constant b > 0. */
export const dimMod = (a: Dim, b: number): Dim =>
  typeof a === 'number' ? a - b * Math.floor(a / b) : dimSub(a, dimMul(b, dimFloorDiv(a, b)));

/** a / b when b divides a exactly (as polynomials), else undefined: what Reshape's -1 needs. */
export function dimExactDiv(a: Dim, b: Dim): Dim | undefined {
  if (typeof b === 'number') {
    if (b === 0) return undefined;
    if (typeof a === 'number') return a % b === 0 ? a / b : undefined;
    const p = polyOf(a);
    return [...p.values()].every((c) => c % b === 0) ? toDim(new Map([...p].map(([m, c]) => [m, c / b]))) : undefined;
  }
  const q = polyOf(b);
  if (q.size !== 1) return dimEquals(a, b) ? 1 : undefined;
  const [[mono, coef]] = q;
  const atoms = atomsOf(mono);
  const out = new Map<string, number>();
  for (const [m, c] of polyOf(a)) {
    const rest = atomsOf(m);
    for (const x of atoms) {
      const i = rest.indexOf(x);
      if (i < 0) return undefined;
      rest.splice(i, 1);
    }
    if (c % coef !== 0) return undefined;
    out.set(rest.join('*'), c / coef);
  }
  return toDim(out);
}

/** Whether a <= b holds for every value of the symbols in range. */
export const dimProvedLE = (a: Dim, b: Dim): boolean =>
  typeof a === 'number' && typeof b === 'number' ? a <= b : polyInterval(polyOf(dimSub(b, a) as Dim))[0] >= 0;
/** Whether a and b are the same size for every value of the symbols in range. */
export const dimEquals = (a: Dim, b: Dim): boolean => a === b || (dimProvedLE(a, b) && dimProvedLE(b, a));

/** Whether a and b are different sizes for every value of the symbols in range. */
export function dimsDiffer(a: Dim, b: Dim): boolean {
  if (typeof a === 'number' && typeof b === 'number') return a !== b;
  const [lo, hi] = dimBounds(dimSub(a, b));
  return lo > 0 || hi < 0;
}

function minMax(kind: 'min' | 'max', a: Dim, b: Dim): Dim {
  if (typeof a === 'number' && typeof b === 'number') return kind === 'min' ? Math.min(a, b) : Math.max(a, b);
  if (dimProvedLE(a, b)) return kind === 'min' ? a : b;
  if (dimProvedLE(b, a)) return kind === 'min' ? b : a;
  const [x, y] = [polyOf(a), polyOf(b)].sort((p, q) => (printPoly(p) < printPoly(q) ? -1 : 1));
  return toDim(compositeAtom({ kind, a: x, b: y }));
}
export const dimMin = (a: Dim, b: Dim): Dim => minMax('min', a, b);
export const dimMax = (a: Dim, b: Dim): Dim => minMax('max', a, b);

// --- binding symbols to values ----------------------------------------------------------------------------------

/** `d` with the symbols of `values` replaced by their values (a number once no symbol is left). */
export function substituteDim(d: Dim, values: ReadonlyMap<string, number>): Dim {
  if (typeof d === 'number') return d;
  let out: Dim = 0;
  for (const [m, c] of polyOf(d)) {
    let term: Dim = c;
    for (const atom of atomsOf(m)) term = dimMul(term, substituteAtom(atom, values));
    out = dimAdd(out, term);
  }
  return out;
}

function substituteAtom(atom: string, values: ReadonlyMap<string, number>): Dim {
  const c = composites.get(atom);
  if (!c) return values.get(atom) ?? atom;
  const a = substituteDim(toDim(c.a), values);
  if (c.kind === 'floordiv') return dimFloorDiv(a, c.b);
  const b = substituteDim(toDim(c.b), values);
  return c.kind === 'min' ? dimMin(a, b) : dimMax(a, b);
}

/** The plain symbols `d` is built from. */
export function dimSymbols(d: Dim): string[] {
  if (typeof d === 'number') return [];
  const out = new Set<string>();
  const visit = (p: Poly) => {
    for (const m of p.keys())
      for (const atom of atomsOf(m)) {
        const c = composites.get(atom);
        if (!c) out.add(atom);
        else {
          visit(c.a);
          if (c.kind !== 'floordiv') visit(c.b);
        }
      }
  };
  visit(polyOf(d));
  return [...out];
}

/** How `foldDim` builds each part of a dim's expression. */
export interface DimAlgebra<T> {
  num(n: number): T;
  symbol(name: string): T;
  add(a: T, b: T): T;
  mul(a: T, b: T): T;
  /** floor(a / b) for a constant b > 0. */
  floorDiv(a: T, b: number): T;
  min(a: T, b: T): T;
  max(a: T, b: T): T;
}

/** `d` rebuilt bottom-up in another form (a loop-IR expression, the runtime's JSON tree). */
export function foldDim<T>(d: Dim, alg: DimAlgebra<T>): T {
  if (typeof d === 'number') return alg.num(d);
  const poly = (p: Poly): T => {
    let sum: T | undefined;
    for (const [m, c] of p) {
      let term: T | undefined = c === 1 && m !== '' ? undefined : alg.num(c);
      for (const atom of atomsOf(m)) {
        const a = atomOf(atom);
        term = term === undefined ? a : alg.mul(term, a);
      }
      sum = sum === undefined ? term! : alg.add(sum, term!);
    }
    return sum ?? alg.num(0);
  };
  const atomOf = (atom: string): T => {
    const c = composites.get(atom);
    if (!c) return alg.symbol(atom);
    if (c.kind === 'floordiv') return alg.floorDiv(poly(c.a), c.b);
    return alg[c.kind](poly(c.a), poly(c.b));
  };
  return poly(polyOf(d));
}
