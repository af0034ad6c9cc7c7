import { KilnError } from '../runtime/errors.js';
import type { Dim, TensorType } from './types.js';

/** TVM's op-pattern kinds: fusion rules compare them (lower is easier to fuse). */
export enum OpPattern {
  ElemWise = 0,
  Broadcast = 1,
  Injective = 2,
  CommReduce = 3,
  OutEWiseFusable = 4,
  Opaque = 8,
}

/** Attribute values; a list of dims (numbers and symbolic dims' texts) is a shape that depends on symbolic dims. */
export type AttrValue = number | string | boolean | readonly number[] | readonly string[] | readonly Dim[] | null;
export type Attrs = Readonly<Record<string, AttrValue>>;

export interface OpSpec {
  readonly name: string;
  readonly pattern: OpPattern;
  /** Output type from argument types and attributes; throws KilnError('E_SHAPE') on a mismatch. */
  readonly inferType: (args: readonly TensorType[], attrs: Attrs) => TensorType;
  /**
   * The elements of an int64 value known from types alone (Shape, Size), symbolic where the dims are: constant
   * folding and symbolic shape arithmetic take it without evaluating the argument.
   */
  readonly dimsFromType?: (args: readonly TensorType[], attrs: Attrs) => Dim[];
  /** Its value is known only while the model runs (a size counted from data): never evaluated at compile time. */
  readonly runTimeOnly?: boolean;
  /**
   * Dims that give its kernel its structure rather than a loop's extent (ScatterND's index length: how many leading
   * dims each index names), each with what it is: a kernel for run-time sizes needs them fixed.
   */
  readonly structuralDims?: (args: readonly TensorType[], attrs: Attrs) => [Dim, string][];
}

const registry = new Map<string, OpSpec>();

export function registerOp(spec: OpSpec): void {
  if (registry.has(spec.name))
    throw new KilnError('E_INTERNAL', `operator ${spec.name} defined twice`, { hint: 'please report this' });
  registry.set(spec.name, spec);
}

export function getOp(name: string): OpSpec {
  const op = registry.get(name);
  if (!op)
    throw new KilnError('E_INTERNAL', `unknown graph operator ${name}`, { hint: 'please report this with the model' });
  return op;
}

export const allOps = (): OpSpec[] => [...registry.values()];
