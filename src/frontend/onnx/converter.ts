// The converter registry: one converter per ONNX op and version, chosen by the model's opset
// (the newest version <= opset), and the context a converter works in.
import { KilnError } from '../../runtime/errors.js';
import type { Tensor } from '../../runtime/tensor.js';
import type { FuncNode, GExpr } from '../../relay-ir/expr.js';
import type { AttrValue } from '../../relay-ir/op.js';
import type { Dim, TensorType } from '../../relay-ir/types.js';
import type { OnnxAttr } from './attributes.js';
import { isHalf } from '../../runtime/dtype.js';
import { halfValues } from '../../runtime/half.js';
import { countedSymbol, dimBounds } from '../../relay-ir/sym-dim.js';

export interface ConvertCtx {
  readonly opType: string;
  readonly name: string;
  readonly opset: number;
  /** Number of inputs given (trailing omitted ones not counted). */
  readonly numInputs: number;
  readonly numOutputs: number;
  /** The node's output names (unique in the model, unlike node names). */
  readonly outputNames: readonly string[];
  /** A required input. */
  input(i: number): GExpr;
  /** An optional input: undefined when absent or given as ''. */
  optInput(i: number): GExpr | undefined;
  type(e: GExpr): TensorType;
  attr(name: string): OnnxAttr | undefined;
  int(name: string, dflt?: number): number;
  float(name: string, dflt?: number): number;
  ints(name: string, dflt?: number[]): number[];
  floats(name: string, dflt?: number[]): number[];
  string(name: string, dflt?: string): string;
  /** Calls a Kiln graph operator (type inference runs here). */
  call(op: string, args: readonly GExpr[], attrs?: Record<string, AttrValue>): GExpr;
  constant(t: Tensor): GExpr;
  /** The value of `e`, which must be computable at compile time (constant folding runs here). */
  constValue(e: GExpr, what: string): Tensor;
  /**
   * The elements of a shape-like integer input as dims: numbers where known at compile time, symbolic dims where
   * they follow from the model's symbolic dims (a Shape -> Gather -> Concat chain); else E_DYNAMIC.
   */
  dims(e: GExpr, what: string): Dim[];
  /** As `dims`, or undefined where the elements are known only at run time (no error). */
  knownDims(e: GExpr): Dim[] | undefined;
  unsupported(what: string): never;
  /**
   * Converts the graph held by attribute `name` applied to `args` (its inputs, in order) into this graph and
   * returns its outputs; undefined when the node has no such attribute. Outer-scope values are visible inside.
   */
  subgraph(name: string, args: readonly GExpr[]): GExpr[] | undefined;
  /**
   * The graph held by attribute `name` as a function of the graph IR: params are its inputs (of `inputTypes`), then
   * the outer-scope values it uses (`captures`, in the order of the params they become). For If, Loop and Scan.
   */
  subgraphFunction(name: string, inputTypes: readonly TensorType[]): { func: FuncNode; captures: GExpr[] };
  /** The value of `e` where it is computable at compile time, else undefined (no error). */
  knownValue(e: GExpr): Tensor | undefined;
}

export type ConvertFn = (c: ConvertCtx) => GExpr | readonly GExpr[];

/** The numbers of a compile-time input (int64 data arrives as bigint); `what` names it in the error. */
export function constNumbers(c: ConvertCtx, e: GExpr, what: string): number[] {
  const t = c.constValue(e, what);
  return isHalf(t.dtype)
    ? Array.from(halfValues(t.dtype, t.data))
    : Array.from(t.data as ArrayLike<number | bigint>, Number);
}

/**
 * A size counted while the model runs (tensor-expr/ops/counted.ts): a new symbol named from `base`, ranging up to
 * `bound` at its symbols' upper bounds, and the value_dim call that computes it from `n` (an integer tensor whose
 * elements sum to it). The op whose output has the size takes `count` as an argument, so it runs after it.
 */
export function countedSize(c: ConvertCtx, base: string, bound: Dim, n: GExpr): { symbol: string; count: GExpr } {
  const hi = dimBounds(bound)[1];
  const symbol = countedSymbol(base, hi);
  return { symbol, count: c.call('value_dim', [n], { symbol, max: hi }) };
}

interface Entry {
  since: number;
  fn: ConvertFn;
}
const table = new Map<string, Entry[]>();

const key = (domain: string, opType: string) => `${domain === 'ai.onnx' ? '' : domain}::${opType}`;

/** Registers the converter for `opType` valid from opset `since` until the next registered version. */
export function converter(opType: string | readonly string[], since: number, fn: ConvertFn, domain = ''): void {
  for (const op of typeof opType === 'string' ? [opType] : opType) {
    const list = table.get(key(domain, op)) ?? [];
    list.push({ since, fn });
    list.sort((a, b) => b.since - a.since);
    table.set(key(domain, op), list);
  }
}

/** The converter for `opType` at `opset`, or why there is none: no converter at all, or only from opset `since`. */
export function lookupConverter(domain: string, opType: string, opset: number): { fn?: ConvertFn; since?: number } {
  const list = table.get(key(domain, opType));
  if (!list) return {};
  const e = list.find((x) => x.since <= opset);
  return e ? { fn: e.fn } : { since: list[list.length - 1].since };
}

export function findConverter(domain: string, opType: string, opset: number, node: string): ConvertFn {
  const { fn, since } = lookupConverter(domain, opType, opset);
  if (fn) return fn;
  if (since === undefined) {
    throw new KilnError('E_UNSUPPORTED_OP', `operator ${domain ? `${domain}.` : ''}${opType} is not supported`, {
      node,
      op: opType,
      opset,
      hint: 'see README "Operator coverage"; rewrite the model without it or open an issue',
    });
  }
  throw new KilnError(
    'E_UNSUPPORTED_OPSET',
    `${opType} is supported from opset ${since}, the model uses opset ${opset}`,
    {
      node,
      op: opType,
      opset,
      hint: 'upgrade the model with onnx.version_converter.convert_version',
    },
  );
}

export const supportedOps = (): string[] => [...table.keys()].map((k) => k.replace(/^::/, '')).sort();
