// Types of the graph IR: tensors with static or symbolic dims, and tuples of them.
import type { DType } from '../runtime/dtype.js';
import { KilnError } from '../runtime/errors.js';

/** A dimension: a number when known at compile time, a name (e.g. "batch") when symbolic. */
export type Dim = number | string;

export interface TensorType {
  readonly kind: 'tensor';
  readonly dtype: DType;
  readonly shape: readonly Dim[];
}
export interface TupleType {
  readonly kind: 'tuple';
  readonly fields: readonly Type[];
}
export type Type = TensorType | TupleType;

export const tensorType = (shape: readonly Dim[], dtype: DType): TensorType => ({
  kind: 'tensor',
  dtype,
  shape: [...shape],
});
export const tupleType = (fields: readonly Type[]): TupleType => ({ kind: 'tuple', fields });

export const isStatic = (t: TensorType): boolean => t.shape.every((d) => typeof d === 'number');
export const staticShape = (t: TensorType): number[] => t.shape as number[];
/** The symbolic dims of a type, in order, each once. */
export const symbolsOf = (t: Type): string[] => [
  ...new Set(t.kind === 'tuple' ? t.fields.flatMap(symbolsOf) : t.shape.filter((d) => typeof d === 'string')),
];
/** The element count of a static shape: runtime/tensor.ts sizeOf under its graph-IR name (callers can use sizeOf). */
export { sizeOf as numel } from '../runtime/tensor.js';

export function printType(t: Type): string {
  if (t.kind === 'tuple') return `(${t.fields.map(printType).join(', ')})`;
  return `${t.dtype}[${t.shape.join(',')}]`;
}

export function asTensor(t: Type, what: string): TensorType {
  if (t.kind !== 'tensor')
    throw new KilnError('E_INTERNAL', `${what}: expected a tensor, got a tuple`, {
      hint: 'please report this with the model',
    });
  return t;
}
