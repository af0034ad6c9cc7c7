// The graph IR's view of an operator: name, fusion pattern kind and type rule. Operators register themselves
// here from their single definition in src/tensor-expr/ops (which adds the compute).
import type { Tensor } from '../runtime/tensor.js';
import { KilnError } from '../runtime/errors.js';
import type { TensorType } from './types.js';

/** TVM's op-pattern kinds: fusion rules compare them (lower is easier to fuse). */
export enum OpPattern {
  ElemWise = 0,
  Broadcast = 1,
  Injective = 2,
  CommReduce = 3,
  OutEWiseFusable = 4,
  Opaque = 8,
}

export type AttrValue = number | string | boolean | readonly number[] | readonly string[] | null;
export type Attrs = Readonly<Record<string, AttrValue>>;

export interface OpSpec {
  readonly name: string;
  readonly pattern: OpPattern;
  /** Output type from argument types and attributes; throws KilnError('E_SHAPE') on a mismatch. */
  readonly inferType: (args: readonly TensorType[], attrs: Attrs) => TensorType;
  /** A value known from types alone (Shape, Size): lets constant folding skip evaluating the argument. */
  readonly foldFromType?: (args: readonly TensorType[], attrs: Attrs) => Tensor | undefined;
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
