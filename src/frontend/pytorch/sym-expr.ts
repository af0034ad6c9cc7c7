// Symbolic sizes of a torch.export program. The JSON records each SymInt as sympy's `srepr` text, e.g.
// `Mul(Integer(2), Symbol('s17', positive=True, integer=True))` (older versions: a bare symbol name). Kiln reads
// them to evaluate a program's sizes once its symbols have values (the `dims` option, or an input's shape).
import { KilnError } from '../../runtime/errors.js';
import { dimAdd, dimExactDiv, dimFloorDiv, dimMax, dimMin, dimMod, dimMul } from '../../relay-ir/sym-dim.js';
import type { Dim } from '../../relay-ir/types.js';

export type SymExpr =
  | { readonly k: 'int'; readonly value: number }
  | { readonly k: 'sym'; readonly name: string }
  | { readonly k: 'fn'; readonly fn: string; readonly args: readonly SymExpr[] };

/** What each sympy function computes on integers (FloorDiv/Mod as Python's // and %). */
const FUNCTIONS: Readonly<Record<string, (xs: number[]) => number>> = {
  Add: (xs) => xs.reduce((a, b) => a + b, 0),
  Mul: (xs) => xs.reduce((a, b) => a * b, 1),
  Max: (xs) => Math.max(...xs),
  Min: (xs) => Math.min(...xs),
  Pow: ([a, b]) => a ** b,
  FloorDiv: ([a, b]) => Math.floor(a / b),
  CleanDiv: ([a, b]) => Math.floor(a / b),
  Mod: ([a, b]) => a - b * Math.floor(a / b),
  PythonMod: ([a, b]) => a - b * Math.floor(a / b),
};

const malformed = (text: string, why: string) =>
  new KilnError('E_MODEL_INVALID', `cannot read the symbolic size '${text}': ${why}`, {
    hint: 'the exported program is malformed, or from a torch version whose size expressions Kiln does not read',
  });

/** Parses a SymInt expression: sympy srepr, a bare symbol name, or an integer. */
export function parseSymExpr(text: string): SymExpr {
  const tokens = text.match(/'[^']*'|"[^"]*"|-?\d+|[A-Za-z_]\w*|[(),=]|\S/g) ?? [];
  let at = 0;
  const expect = (t: string) => {
    if (tokens[at] !== t) throw malformed(text, `expected '${t}' at token ${at}`);
    at++;
  };
  const expr = (): SymExpr => {
    const t = tokens[at++];
    if (t === undefined) throw malformed(text, 'it ends early');
    if (/^-?\d+$/.test(t)) return { k: 'int', value: Number(t) };
    if (!/^[A-Za-z_]\w*$/.test(t)) throw malformed(text, `unexpected '${t}'`);
    if (tokens[at] !== '(') return { k: 'sym', name: t };
    at++;
    const args: SymExpr[] = [];
    while (tokens[at] !== ')') {
      if (args.length || tokens[at] === ',') expect(',');
      if (/^[A-Za-z_]\w*$/.test(tokens[at] ?? '') && tokens[at + 1] === '=')
        at += 3; // keyword: positive=True
      else if (/^['"]/.test(tokens[at] ?? '')) args.push({ k: 'sym', name: tokens[at++].slice(1, -1) });
      else args.push(expr());
    }
    at++;
    if (t === 'Symbol') {
      if (args.length !== 1 || args[0].k !== 'sym') throw malformed(text, 'Symbol without a name');
      return args[0];
    }
    if (t === 'Integer') {
      if (args.length !== 1 || args[0].k !== 'int') throw malformed(text, 'Integer without a value');
      return args[0];
    }
    return { k: 'fn', fn: t, args };
  };
  const e = expr();
  if (at !== tokens.length) throw malformed(text, `unexpected '${tokens[at]}'`);
  return e;
}

const INFIX: Readonly<Record<string, string>> = {
  Add: ' + ',
  Mul: '*',
  FloorDiv: ' // ',
  Mod: ' % ',
  PythonMod: ' % ',
};

/** Python-like text for messages: `2*s17`, `s0 + 1`. */
export function printSymExpr(e: SymExpr): string {
  if (e.k === 'int') return String(e.value);
  if (e.k === 'sym') return e.name;
  const args = e.args.map((a) => (a.k === 'fn' && INFIX[a.fn] ? `(${printSymExpr(a)})` : printSymExpr(a)));
  return INFIX[e.fn] ? args.join(INFIX[e.fn]) : `${e.fn}(${args.join(', ')})`;
}

/** The symbols an expression reads, each once. */
export function symbolsIn(e: SymExpr): string[] {
  if (e.k === 'int') return [];
  if (e.k === 'sym') return [e.name];
  return [...new Set(e.args.flatMap(symbolsIn))];
}

/** The value of an expression, or undefined where a symbol it reads has none. */
export function evaluateSymExpr(e: SymExpr, values: ReadonlyMap<string, number>): number | undefined {
  if (e.k === 'int') return e.value;
  if (e.k === 'sym') return values.get(e.name);
  const args = e.args.map((a) => evaluateSymExpr(a, values));
  if (args.some((a) => a === undefined)) return undefined;
  const f = FUNCTIONS[e.fn];
  if (!f)
    throw new KilnError('E_UNSUPPORTED', `the symbolic size function ${e.fn} is not supported`, {
      hint: `supported: ${Object.keys(FUNCTIONS).join(', ')}; or export with static shapes`,
    });
  const v = f(args as number[]);
  if (!Number.isSafeInteger(v))
    throw new KilnError('E_INPUT', `the symbolic size ${e.fn}(${args.join(', ')}) is ${v}, not a whole number`, {
      hint: 'check the sizes given with --dim / --input-shape against the ones the model was exported for',
    });
  return v;
}

/** A positive whole constant divisor (sympy's FloorDiv/Mod by a size expression of symbols are not sizes Kiln keeps). */
function constDivisor(fn: string, b: Dim): number {
  if (typeof b === 'number' && Number.isInteger(b) && b > 0) return b;
  throw new KilnError('E_UNSUPPORTED', `the symbolic size ${fn}(..., ${b}) divides by a size that is not a constant`, {
    hint: 'fix the symbols it reads with --dim NAME=N (API: dims), or export with static shapes',
  });
}

/**
 * The expression as a graph-IR dim (relay-ir/sym-dim.ts): symbols with a value in `values` become that number, the
 * others stay symbols, and sympy's functions become the dim arithmetic (sums and products as polynomials, floors
 * and mins that the ranges in force cannot decide as opaque atoms).
 */
export function symExprToDim(e: SymExpr, values: ReadonlyMap<string, number>): Dim {
  if (e.k === 'int') return e.value;
  if (e.k === 'sym') return values.get(e.name) ?? e.name;
  const args = e.args.map((a) => symExprToDim(a, values));
  if (args.every((a) => typeof a === 'number'))
    return evaluateSymExpr({ k: 'fn', fn: e.fn, args: args.map((value) => ({ k: 'int', value })) }, values)!;
  switch (e.fn) {
    case 'Add':
      return args.reduce((a, b) => dimAdd(a, b), 0);
    case 'Mul':
      return args.reduce((a, b) => dimMul(a, b), 1);
    case 'Max':
      return args.reduce((a, b) => dimMax(a, b));
    case 'Min':
      return args.reduce((a, b) => dimMin(a, b));
    case 'Pow': {
      const [a, b] = args;
      if (typeof b === 'number' && Number.isInteger(b) && b >= 0)
        return Array.from({ length: b }, () => a).reduce((p, q) => dimMul(p, q), 1);
      break;
    }
    case 'CleanDiv': {
      const q = dimExactDiv(args[0], args[1]);
      if (q !== undefined) return q;
      return dimFloorDiv(args[0], constDivisor(e.fn, args[1]));
    }
    case 'FloorDiv':
      return dimFloorDiv(args[0], constDivisor(e.fn, args[1]));
    case 'Mod':
    case 'PythonMod':
      return dimMod(args[0], constDivisor(e.fn, args[1]));
  }
  throw new KilnError(
    'E_UNSUPPORTED',
    `the symbolic size ${printSymExpr(e)} (sympy ${e.fn}) has no symbolic form in Kiln`,
    {
      hint: `fix the symbols it reads (${symbolsIn(e).join(', ')}) with --dim NAME=N (API: dims), or export with static shapes`,
    },
  );
}
