// The `dims` option: values for a model's symbolic input dims by name (ONNX dim_params such as `batch`, unnamed
// dims named `<input>_d<i>`, torch.export's `s0`, `s1`...). A symbol fixed here, or by an `inputShapes` entry of an
// input that declares it, takes that value in every input that declares it, so `--dim batch=8` fixes the batch of
// all inputs at once and two inputs cannot disagree on it. A name range_K bounds a size counted from the data (a
// Range over run-time values), which no input declares.
import { DECLARED_COUNTED, type DimRanges, unclaimedCounted } from '../relay-ir/sym-dim.js';
import { KilnError } from '../runtime/errors.js';

/** A dim's value, or the range [lo, hi] it may take at run time. */
export type DimValue = number | readonly [number, number];
export type DimOptions = Readonly<Record<string, DimValue>>;

/** One input as the model declares it: a number, a symbol's name, or undefined (unknown, no name). */
export interface DeclaredInput {
  readonly name: string;
  readonly dims: readonly (number | string | undefined)[];
}

const isDimCount = (d: unknown): d is number => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0;
const showValue = (v: unknown) => (Array.isArray(v) ? `${v[0]}..${v[1]}` : String(v));

/** The symbols of the inputs, in order of appearance, with where each first appears ("input 'x' dim 0"). */
export function inputSymbols(inputs: readonly DeclaredInput[]): Map<string, string> {
  const symbols = new Map<string, string>();
  for (const vi of inputs)
    vi.dims.forEach((d, i) => {
      if (typeof d === 'string' && !symbols.has(d)) symbols.set(d, `input '${vi.name}' dim ${i}`);
    });
  return symbols;
}

/** What the options say of the symbols: a value for those they fix, a range for those left symbolic. */
export interface BoundSymbols {
  readonly values: Map<string, number>;
  readonly ranges: Map<string, readonly [number, number]>;
}

/**
 * The value of each symbol that the options fix (from `dims`, and from the `inputShapes` entries of inputs that
 * declare the symbol) and the range of each that `dims` bounds. Unknown names, malformed values and disagreements
 * are E_INPUT.
 */
export function bindSymbols(
  inputs: readonly DeclaredInput[],
  dims: DimOptions | undefined,
  inputShapes: Readonly<Record<string, readonly number[]>> | undefined,
): BoundSymbols {
  const symbols = inputSymbols(inputs);
  if (dims !== undefined && (typeof dims !== 'object' || dims === null || Array.isArray(dims)))
    throw new KilnError('E_INPUT', 'dims must map dim names to values', { hint: 'e.g. { batch: 1, sequence: 128 }' });
  const listing = symbols.size
    ? `the model's symbolic dims are ${[...symbols].map(([s, where]) => `'${s}' (${where})`).join(', ')}`
    : 'the model has no symbolic input dims';
  const bound = new Map<string, { value: number; from: string }>();
  const ranges = new Map<string, readonly [number, number]>();
  const bind = (symbol: string, value: number, from: string) => {
    const was = bound.get(symbol);
    if (was && was.value !== value)
      throw new KilnError('E_INPUT', `dim '${symbol}' is ${was.value} in ${was.from} but ${value} in ${from}`, {
        hint: `inputs that declare the same symbolic dim must agree on it; fix it once with --dim ${symbol}=N`,
      });
    if (!was) bound.set(symbol, { value, from });
  };
  for (const [name, value] of Object.entries(dims ?? {})) {
    // (range_K: the bound of a size counted from the data, claimed by the node that counts it: checkCountedClaimed)
    const counted = !symbols.has(name) && DECLARED_COUNTED.test(name);
    if (!symbols.has(name) && !counted)
      throw new KilnError('E_INPUT', `dims names '${name}', which no input declares; ${listing}`, {
        hint: 'check the spelling (names are case-sensitive); fixed dims need no option',
      });
    const range = Array.isArray(value) ? (value as readonly unknown[]) : undefined;
    if (range ? range.length !== 2 || !range.every(isDimCount) || range[0] > range[1] : !isDimCount(value))
      throw new KilnError('E_INPUT', `dims['${name}'] = ${showValue(value)} is not a size or a range of sizes`, {
        hint: `give a whole number >= 0 or a range lo <= hi: --dim ${name}=8 or --dim ${name}=1..16 (API: { ${name}: 8 } or { ${name}: [1, 16] })`,
      });
    const [lo, hi] = range ? (range as [number, number]) : [value as number, value as number];
    if (lo === hi && !counted) bind(name, lo, `dims['${name}']`);
    else ranges.set(name, [lo, hi]);
  }
  for (const vi of inputs) {
    const given = inputShapes?.[vi.name];
    if (!given || given.length !== vi.dims.length) continue; // rank mismatches are the input-shape check's
    vi.dims.forEach((d, i) => {
      if (typeof d !== 'string') return;
      const r = ranges.get(d);
      if (r && (given[i] < r[0] || given[i] > r[1]))
        throw new KilnError(
          'E_INPUT',
          `inputShapes['${vi.name}'] gives dim ${i} ('${d}') the size ${given[i]}, outside dims['${d}'] = ${r[0]}..${r[1]}`,
          { hint: 'give a size inside the range, or widen the range' },
        );
      bind(d, given[i], `inputShapes['${vi.name}'] (dim ${i})`);
    });
  }
  for (const s of bound.keys()) ranges.delete(s); // an input shape that fixes a ranged symbol wins
  return { values: new Map([...bound].map(([s, b]) => [s, b.value])), ranges };
}

/** After an import: every declared bound of a counted size (dims: { range_0: ... }) belongs to a node that counts. */
export function checkCountedClaimed(ranges: DimRanges): void {
  const extra = unclaimedCounted(ranges);
  if (extra.length)
    throw new KilnError(
      'E_INPUT',
      `dims names ${extra.map((s) => `'${s}'`).join(', ')}, which no input declares and no Range of the model counts`,
      {
        hint: 'range_K bounds the K-th Range (from 0, in node order) whose length comes from the data; drop the others',
      },
    );
}

/** The E_DYNAMIC hint for inputs whose dims are still symbolic: the flag that fixes each. */
export function fixDimsHint(symbols: readonly string[]): string {
  const flags = symbols.map((s) => `--dim ${s}=N`).join(' ');
  const api = symbols.map((s) => `${/^[A-Za-z_$][\w$]*$/.test(s) ? s : `'${s}'`}: N`).join(', ');
  return `fix the symbolic dims to the sizes you will run: kiln compile ${flags} (API: dims: { ${api} })`;
}
