// Reading and writing tensors as .npy (NumPy format 1.0/2.0/3.0) or ONNX TensorProto .pb files.
import { readFileSync, writeFileSync, renameSync, unlinkSync } from 'node:fs';
import { ARRAY, BYTES, DTYPES, type DType } from '../runtime/dtype.js';
import { KilnError } from '../runtime/errors.js';
import { type Tensor, sizeOf } from '../runtime/tensor.js';
import { decodeTensorProto, encodeTensorProto } from '../frontend/onnx/tensor-proto.js';
import type { DimValue } from '../frontend/dims.js';

const NPY_DTYPE: Record<string, DType> = {
  '<f4': 'float32',
  '<f8': 'float64',
  '<f2': 'float16',
  '|i1': 'int8',
  '|u1': 'uint8',
  '<i2': 'int16',
  '<u2': 'uint16',
  '<i4': 'int32',
  '<u4': 'uint32',
  '<i8': 'int64',
  '<u8': 'uint64',
  '|b1': 'bool',
};
const NPY_DESCR = Object.fromEntries(Object.entries(NPY_DTYPE).map(([k, v]) => [v, k])) as Record<DType, string>;

export function readNpy(bytes: Uint8Array, what: string): Tensor {
  const bad = (m: string) =>
    new KilnError('E_INPUT', `${what}: ${m}`, { hint: 'save it with numpy.save (little-endian, C order)' });
  if (bytes.length < 10 || bytes[0] !== 0x93 || String.fromCharCode(...bytes.subarray(1, 6)) !== 'NUMPY')
    throw bad('not a .npy file');
  const major = bytes[6];
  if (major !== 1 && major !== 2 && major !== 3) throw bad(`unknown .npy format version ${major}`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const hstart = major === 1 ? 10 : 12;
  if (bytes.length < hstart) throw bad('truncated header');
  const hlen = major === 1 ? dv.getUint16(8, true) : dv.getUint32(8, true);
  if (hstart + hlen > bytes.length) throw bad('truncated header');
  const header = new TextDecoder().decode(bytes.subarray(hstart, hstart + hlen));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*True/.test(header);
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || shapeText === undefined) throw bad('unreadable header');
  const dtype = NPY_DTYPE[descr];
  if (!dtype) throw bad(`unsupported dtype ${descr}`);
  if (fortran) throw bad('Fortran order is not supported');
  const shape = shapeText
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map(Number);
  if (shape.some((d) => !Number.isSafeInteger(d) || d < 0)) throw bad(`bad shape (${shapeText})`);
  const n = sizeOf(shape),
    start = hstart + hlen;
  if (bytes.length - start < n * BYTES[dtype]) throw bad('truncated data');
  const data = new ARRAY[dtype](n);
  new Uint8Array(data.buffer).set(bytes.subarray(start, start + n * BYTES[dtype]));
  return { dtype, shape, data };
}

export function encodeNpy(t: Tensor): Uint8Array {
  if (!NPY_DESCR[t.dtype])
    throw new KilnError('E_USAGE', `a ${t.dtype} tensor has no .npy type`, {
      hint: 'write it as an ONNX TensorProto: --output-format pb',
    });
  const shape = t.shape.length === 1 ? `(${t.shape[0]},)` : `(${t.shape.join(', ')})`;
  let header = `{'descr': '${NPY_DESCR[t.dtype]}', 'fortran_order': False, 'shape': ${shape}, }`;
  const total = 10 + header.length + 1;
  header += `${' '.repeat((64 - (total % 64)) % 64)}\n`;
  const out = new Uint8Array(10 + header.length + t.data.byteLength);
  out.set([0x93, ...'NUMPY'.split('').map((c) => c.charCodeAt(0)), 1, 0]);
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(new TextEncoder().encode(header), 10);
  out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), 10 + header.length);
  return out;
}

export function readTensorFile(path: string): Tensor {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new KilnError('E_IO', `cannot read '${path}': ${(e as Error).message}`);
  }
  return path.endsWith('.npy') ? readNpy(bytes, path) : decodeTensorProto(bytes, path);
}

/** Writes through a temporary file and a rename, so a failure never leaves a partial file. */
export function writeFileAtomic(path: string, bytes: Uint8Array): void {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    writeFileSync(tmp, bytes);
    renameSync(tmp, path);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      /* it may not exist */
    }
    throw new KilnError('E_IO', `cannot write '${path}': ${(e as Error).message}`);
  }
}

export function writeTensorFile(path: string, t: Tensor, name = ''): void {
  writeFileAtomic(path, path.endsWith('.npy') ? encodeNpy(t) : encodeTensorProto(t, name));
}

/** "batch=8" -> ["batch", 8]; "batch=1..16" -> ["batch", [1, 16]] */
export function parseDim(s: string): [string, DimValue] {
  const eq = s.lastIndexOf('=');
  const m = /^(\d+)(?:\.\.(\d+))?$/.exec(s.slice(eq + 1).trim());
  if (eq <= 0 || !m)
    throw new KilnError('E_USAGE', `bad --dim '${s}'`, { hint: 'write name=8, or a range name=1..16' });
  const [lo, hi] = [Number(m[1]), m[2] === undefined ? undefined : Number(m[2])];
  return [s.slice(0, eq), hi === undefined ? lo : [lo, hi]];
}

/** "name=1,3,224,224" -> ["name", [1,3,224,224]] */
/** --input-dtype name=int64: an element type by Kiln's name. */
export function parseNamedDType(s: string): [string, DType] {
  const eq = s.lastIndexOf('=');
  const dtype = s.slice(eq + 1) as DType;
  if (eq <= 0 || !DTYPES.includes(dtype))
    throw new KilnError('E_USAGE', `bad --input-dtype '${s}'`, {
      hint: `write name=TYPE, TYPE one of ${DTYPES.join(', ')}`,
    });
  return [s.slice(0, eq), dtype];
}

export function parseNamedShape(s: string): [string, number[]] {
  const eq = s.lastIndexOf('=');
  const parts = s.slice(eq + 1).split(',');
  const dims = parts.map((d) => (d.trim() === '' ? NaN : Number(d)));
  if (eq <= 0 || dims.some((d) => !Number.isInteger(d) || d < 0))
    throw new KilnError('E_USAGE', `bad --input-shape '${s}'`, { hint: 'write name=1,3,224,224' });
  return [s.slice(0, eq), dims];
}
