// The ATen converter registry: one converter per ATen operator (keyed by its name without the overload, e.g.
// 'convolution', 'add'; a converter sees the overload and the arguments by their schema names), and the context
// a converter works in. Arguments torch.export leaves out because they have their default value are read with
// the default the converter gives.
import { type DType, isFloat } from '../../runtime/dtype.js';
import { type Tensor, tensor } from '../../runtime/tensor.js';
import { type GExpr, gconst } from '../../relay-ir/expr.js';
import type { AttrValue } from '../../relay-ir/op.js';
import type { Dim, TensorType } from '../../relay-ir/types.js';
import { dimSymbols } from '../../relay-ir/sym-dim.js';
import { KilnError } from '../../runtime/errors.js';
import { fixDimsHint } from '../dims.js';

export interface AtenCtx {
  /** The full target, e.g. 'aten.convolution.default'. */
  readonly target: string;
  /** The overload, e.g. 'default', 'Tensor', 'dim_IntList'. */
  readonly overload: string;
  /** The node's name in the exported graph. */
  readonly name: string;
  /** Whether argument `name` was given (and is not None). */
  has(name: string): boolean;
  /** Whether argument `name` is a tensor (not a Python number). */
  isTensor(name: string): boolean;
  /** A tensor argument. */
  tensor(name: string): GExpr;
  /** A tensor argument that may be None or left out. */
  optTensor(name: string): GExpr | undefined;
  /** A list of tensors (cat's `tensors`). */
  tensors(name: string): GExpr[];
  /** A list of tensors and Nones (index's `indices`: None keeps a dim whole). */
  optTensors(name: string): (GExpr | undefined)[];
  /** A tensor or a Python number (add's `other`): a number becomes a scalar constant of `like`'s dtype. */
  tensorOrScalar(name: string, like: GExpr): GExpr;
  int(name: string, dflt?: number): number;
  /** An int list; a single int is repeated `n` times (PyTorch's `int[2]` arguments accept `3` for `[3, 3]`). */
  ints(name: string, dflt?: number[], n?: number): number[];
  /** An int list that may be None or left out. */
  optInts(name: string): number[] | undefined;
  /**
   * A number or a size: a symbolic dim where a torch.export program with dynamic shapes computes it from its
   * symbols (slice's end, arange's end), else the number (which may be fractional where the schema says Scalar).
   */
  dim(name: string, dflt?: number): Dim;
  /** A list of sizes, each an int or a symbolic dim; a single one is repeated `n` times, as in `ints`. */
  dims(name: string, dflt?: number[], n?: number): Dim[];
  float(name: string, dflt?: number): number;
  /** A number or None (clamp's min/max). */
  optFloat(name: string): number | undefined;
  /** A float list, or undefined when None or left out (upsample's scale_factors). */
  optFloats(name: string): number[] | undefined;
  bool(name: string, dflt?: boolean): boolean;
  string(name: string, dflt?: string): string;
  /** A dtype argument (as_scalar_type), or undefined when None or left out. */
  optDType(name: string): import('../../runtime/dtype.js').DType | undefined;
  type(e: GExpr): TensorType;
  /** Calls a Kiln graph operator (type inference runs here). */
  call(op: string, args: readonly GExpr[], attrs?: Record<string, AttrValue>): GExpr;
  constant(t: Tensor): GExpr;
  unsupported(what: string): never;
}

/** One GExpr, or one per output of the ATen op (undefined for an output Kiln does not compute). */
export type AtenFn = (c: AtenCtx) => GExpr | readonly (GExpr | undefined)[];

/**
 * A Python scalar argument as a 0-d constant of the tensor operand's dtype (`like`): a bool as 0/1, and a
 * fractional number beside an integer tensor as float32, which type promotion then takes.
 */
export function scalarLike(n: number, like: DType): GExpr {
  const isInt = !isFloat(like);
  if (isInt && !Number.isInteger(n)) return gconst(tensor('float32', [], [n]));
  return gconst(tensor(like, [], [like === 'bool' ? Number(n !== 0) : n]));
}

/** x's shape, which must be static (symbolic dims are fixed at import with `dims`). */
export function staticShape(c: AtenCtx, x: GExpr): number[] {
  const s = c.type(x).shape;
  if (s.some((d) => typeof d !== 'number')) symbolicDims(c, s);
  return s as number[];
}

/** Dim `axis` of x, which must be a number (the converter needs it to lay out its result). */
export function staticDim(c: AtenCtx, x: GExpr, axis: number): number {
  const d = c.type(x).shape[axis];
  if (typeof d !== 'number') symbolicDims(c, c.type(x).shape, axis);
  return d as number;
}

function symbolicDims(c: AtenCtx, shape: readonly Dim[], axis?: number): never {
  const symbols = [
    ...new Set(
      shape.flatMap((d, i) => (typeof d === 'number' || (axis !== undefined && i !== axis) ? [] : dimSymbols(d))),
    ),
  ];
  throw new KilnError(
    'E_DYNAMIC',
    `${c.target}: ${axis === undefined ? `an input of symbolic shape [${shape}]` : `dim ${axis} of an input of shape [${shape}]`} needs fixed sizes here`,
    { hint: fixDimsHint(symbols) },
  );
}

const table = new Map<string, AtenFn>();

/** Registers the converter for ATen op(s) `name` (without 'aten.' and the overload). */
export function aten(name: string | readonly string[], fn: AtenFn): void {
  for (const n of typeof name === 'string' ? [name] : name) table.set(n, fn);
}

/** 'torch.ops.aten.add.Tensor' -> { namespace: 'aten', op: 'add', overload: 'Tensor' }. */
export function parseTarget(target: string): { namespace: string; op: string; overload: string } {
  const t = target.replace(/^torch\.ops\./, '');
  const parts = t.split('.');
  if (parts.length === 3) return { namespace: parts[0], op: parts[1], overload: parts[2] };
  if (parts.length === 2) return { namespace: parts[0], op: parts[1], overload: 'default' };
  return { namespace: '', op: t, overload: '' };
}

/** The short name used in messages: 'aten.add.Tensor'. */
export const shortTarget = (target: string): string => target.replace(/^torch\.ops\./, '');

export function lookupAten(target: string): AtenFn | undefined {
  const { namespace, op } = parseTarget(target);
  return namespace === 'aten' ? table.get(op) : undefined;
}

export const supportedAtenOps = (): string[] => [...table.keys()].sort();
