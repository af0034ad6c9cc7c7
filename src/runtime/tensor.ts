import { ARRAY, type DType, type TypedArray, isHalf } from './dtype.js';
import { KilnError } from './errors.js';
import { halfData } from './half.js';

/** A dense, row-major tensor as the runtime and the compiler exchange it. */
export interface Tensor {
  dtype: DType;
  shape: number[];
  data: TypedArray;
}

export const sizeOf = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

export function tensor(dtype: DType, shape: number[], values?: ArrayLike<number | bigint> | TypedArray): Tensor {
  const n = sizeOf(shape);
  if (values && values.length !== n)
    throw new KilnError('E_INPUT', `tensor: ${values.length} values for shape [${shape}], which holds ${n}`, {
      hint: 'give one value per element',
    });
  // 16-bit floats from numbers, rounded to nearest even (values are numbers here, never bits)
  if (isHalf(dtype) && values) return { dtype, shape: [...shape], data: halfData(dtype, values as ArrayLike<number>) };
  const data = new ARRAY[dtype](n);
  if (values) {
    const wide = dtype === 'int64' || dtype === 'uint64';
    for (let i = 0; i < n; i++) {
      const v = values[i];
      (data as unknown as (number | bigint)[])[i] = wide ? BigInt(v as number) : Number(v);
    }
  }
  return { dtype, shape: [...shape], data };
}

export const formatShape = (shape: readonly (number | string)[]): string => `[${shape.join(',')}]`;
