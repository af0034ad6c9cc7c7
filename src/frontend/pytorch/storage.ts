// Tensors as PyTorch stores them: a view (sizes, strides, storage offset) of a flat storage of raw little-endian
// bytes. Shared by the .pt2 reader (JSON tensor metadata) and the pickle-based readers (TorchScript, torch.save).
import { KilnError } from '../../runtime/errors.js';
import { ARRAY, BYTES, type DType } from '../../runtime/dtype.js';
import { type Tensor, sizeOf } from '../../runtime/tensor.js';
import type { PickledTensor } from './pickle.js';

/** Storage classes a pickle names -> Kiln dtypes. */
export const STORAGE_DTYPES: Record<string, DType | undefined> = {
  FloatStorage: 'float32',
  DoubleStorage: 'float64',
  LongStorage: 'int64',
  IntStorage: 'int32',
  ShortStorage: 'int16',
  CharStorage: 'int8',
  ByteStorage: 'uint8',
  BoolStorage: 'bool',
  HalfStorage: 'float16',
  BFloat16Storage: 'bfloat16',
  // quantized tensors' integers (their scale and zero point are in the pickle)
  QInt8Storage: 'int8',
  QUInt8Storage: 'uint8',
  QInt32Storage: 'int32',
};

/**
 * A contiguous copy of the view (sizes, strides, storage offset) of a storage; `what` names the tensor in
 * messages. Shared by the .pt2 and TorchScript readers.
 */
export function viewOfStorage(
  what: string,
  dtype: DType,
  shape: number[],
  strides: number[],
  offset: number,
  storage: () => ArrayLike<number | bigint>,
  hint: { hint: string },
): Tensor {
  const n = sizeOf(shape);
  const out = new ARRAY[dtype](n);
  if (n === 0) return { dtype, shape, data: out };
  if (strides.length !== shape.length) {
    throw new KilnError('E_MODEL_INVALID', `${what} has ${shape.length} sizes but ${strides.length} strides`, hint);
  }
  const data = storage();
  const last = shape.reduce((a, d, i) => a + (d - 1) * strides[i], offset);
  const first = shape.reduce((a, d, i) => a + Math.min(0, (d - 1) * strides[i]), offset);
  if (first < 0 || last >= data.length) {
    throw new KilnError(
      'E_MODEL_INVALID',
      `${what} (sizes [${shape}], strides [${strides}], offset ${offset}) reads past its storage of ${data.length} elements`,
      hint,
    );
  }
  const contiguous = strides.every((s, i) => shape[i] === 1 || s === sizeOf(shape.slice(i + 1)));
  if (contiguous) {
    (out as { set(a: ArrayLike<number | bigint>): void }).set(
      (data as unknown as { subarray(a: number, b: number): ArrayLike<number | bigint> }).subarray(offset, offset + n),
    );
    return { dtype, shape, data: out };
  }
  const idx = new Array<number>(shape.length).fill(0);
  const o = out as unknown as (number | bigint)[];
  for (let k = 0; k < n; k++) {
    let p = offset;
    for (let i = 0; i < shape.length; i++) p += idx[i] * strides[i];
    o[k] = data[p];
    for (let i = shape.length - 1; i >= 0; i--) {
      if (++idx[i] < shape[i]) break;
      idx[i] = 0;
    }
  }
  return { dtype, shape, data: out };
}

/**
 * Reads pickled tensors from the zip entries `files` whose root folder is `root` (a storage's key is its entry
 * under the root, e.g. 'data/3'); each storage is decoded once per element type. `again` ends the hints
 * ('save it again with torch.jit.save').
 */
export function pickledTensorReader(
  files: Record<string, Uint8Array>,
  root: string,
  again: string,
): (t: PickledTensor, name: string) => Tensor {
  const storages = new Map<string, ArrayLike<number | bigint>>();
  return (t, name) => {
    const dtype = STORAGE_DTYPES[t.storageType];
    if (!dtype) {
      throw new KilnError(
        'E_UNSUPPORTED',
        `tensor ${name} is stored as ${t.storageType}, an element type Kiln does not handle`,
        { hint: 'convert the model to float32 before saving (model.float())' },
      );
    }
    const storage = () => {
      const cacheKey = `${t.key}:${dtype}`;
      const have = storages.get(cacheKey);
      if (have) return have;
      const raw = files[root + t.key];
      if (!raw) {
        throw new KilnError('E_MODEL_INVALID', `tensor ${name} is stored in ${t.key}, which the archive lacks`, {
          hint: `the archive is incomplete or was altered; ${again}`,
        });
      }
      if (raw.byteLength < t.numel * BYTES[dtype]) {
        throw new KilnError(
          'E_MODEL_INVALID',
          `storage ${t.key} of tensor ${name} has ${raw.byteLength} bytes, the pickle says ${t.numel} ${dtype} elements`,
          { hint: `the archive is truncated or was altered; ${again}` },
        );
      }
      const copy = raw.slice(0, t.numel * BYTES[dtype]); // aligned, and independent of the zip's buffer
      const data = new ARRAY[dtype](copy.buffer, 0, t.numel);
      storages.set(cacheKey, data);
      return data;
    };
    return viewOfStorage(`tensor ${name}`, dtype, t.sizes, t.strides, t.offset, storage, {
      hint: `the archive is truncated or was altered; ${again}`,
    });
  };
}
