// The KServe v2 / Triton inference protocol's request and response bodies: JSON tensors, and the binary-data
// extension (a JSON header of `Inference-Header-Content-Length` bytes, then each binary tensor's raw little-endian
// bytes in order). Everything a client can get wrong here is a KilnError E_INPUT naming the field.
import { ARRAY, BYTES, type DType, type TypedArray, isHalf } from '../runtime/dtype.js';
import { KilnError } from '../runtime/errors.js';
import { halfBits, halfBitsOf, halfValue } from '../runtime/half.js';
import { type Tensor, sizeOf } from '../runtime/tensor.js';

/** KServe v2 datatype names and Kiln's dtypes (the protocol names no 8-bit float: Kiln's names for them). */
export const V2_DATATYPE: Record<DType, string> = {
  bool: 'BOOL',
  uint8: 'UINT8',
  uint16: 'UINT16',
  uint32: 'UINT32',
  uint64: 'UINT64',
  int8: 'INT8',
  int16: 'INT16',
  int32: 'INT32',
  int64: 'INT64',
  float16: 'FP16',
  float32: 'FP32',
  float64: 'FP64',
  bfloat16: 'BF16',
  float8e4m3fn: 'FP8E4M3FN',
  float8e4m3fnuz: 'FP8E4M3FNUZ',
  float8e5m2: 'FP8E5M2',
  float8e5m2fnuz: 'FP8E5M2FNUZ',
};
const DTYPE_OF: Record<string, DType> = Object.fromEntries(
  Object.entries(V2_DATATYPE).map(([d, v]) => [v, d as DType]),
);

export const HEADER_LENGTH = 'inference-header-content-length';

export interface InferRequest {
  id?: string;
  /** Input tensors by name, in the request's order. */
  inputs: Map<string, Tensor>;
  /** Outputs asked for (all when absent), and whether each comes back as binary data. */
  outputs?: { name: string; binary: boolean }[];
  /** The request-level `binary_data_output` parameter: every output as binary unless it says otherwise. */
  binaryOutput: boolean;
  /** Triton's per-request `timeout` parameter, in microseconds. */
  timeoutUs?: number;
}

const inputError = (message: string, hint: string) => new KilnError('E_INPUT', message, { hint });

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** The body of POST /v2/models/NAME/infer: JSON, or a JSON header and binary tensors after it. */
export function parseInferRequest(body: Buffer, headerLength: string | undefined): InferRequest {
  let json: Buffer = body;
  let binary: Buffer | undefined;
  if (headerLength !== undefined) {
    const n = Number(headerLength);
    if (!/^\d+$/.test(headerLength.trim()) || n < 2 || n > body.length)
      throw inputError(
        `Inference-Header-Content-Length is '${headerLength}', not a length within the ${body.length}-byte body`,
        'set it to the byte length of the JSON header that starts the body (the binary tensors follow it)',
      );
    json = body.subarray(0, n);
    binary = body.subarray(n);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(json.toString('utf8'));
  } catch (e) {
    throw inputError(
      `the request's JSON ${binary ? 'header ' : ''}does not parse: ${(e as Error).message}`,
      binary
        ? 'check Inference-Header-Content-Length: the JSON header must be exactly that many bytes'
        : 'send a KServe v2 inference request: {"inputs": [{"name", "shape", "datatype", "data"}]}',
    );
  }
  if (!isObject(raw) || !Array.isArray(raw.inputs) || raw.inputs.length === 0)
    throw inputError(
      'the request has no "inputs" list',
      'send {"inputs": [{"name": ..., "shape": [...], "datatype": "FP32", "data": [...]}]}',
    );
  const params = isObject(raw.parameters) ? raw.parameters : {};
  const req: InferRequest = {
    inputs: new Map(),
    binaryOutput: params.binary_data_output === true,
  };
  if (raw.id !== undefined) req.id = String(raw.id);
  if (params.timeout !== undefined) {
    const t = params.timeout;
    if (typeof t !== 'number' || !Number.isInteger(t) || t < 0)
      throw inputError(`parameters.timeout is ${JSON.stringify(t)}`, 'give the timeout in microseconds (an integer)');
    if (t > 0) req.timeoutUs = t;
  }
  let offset = 0;
  for (const [i, entry] of raw.inputs.entries()) {
    const where = `inputs[${i}]`;
    if (!isObject(entry) || typeof entry.name !== 'string')
      throw inputError(`${where} has no name`, 'each input is {"name", "shape", "datatype", "data"}');
    const name = entry.name;
    if (req.inputs.has(name)) throw inputError(`input '${name}' is given twice`, 'give each input once');
    const dtype = typeof entry.datatype === 'string' ? DTYPE_OF[entry.datatype] : undefined;
    if (!dtype)
      throw inputError(
        `input '${name}' has datatype ${JSON.stringify(entry.datatype)}`,
        `use one of ${Object.values(V2_DATATYPE).join(', ')}`,
      );
    const shape = entry.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0))
      throw inputError(`input '${name}' has shape ${JSON.stringify(shape)}`, 'give the shape as a list of sizes');
    const count = sizeOf(shape as number[]);
    const p = isObject(entry.parameters) ? entry.parameters : {};
    let data: TypedArray;
    if (p.binary_data_size !== undefined) {
      const size = p.binary_data_size;
      if (!binary)
        throw inputError(
          `input '${name}' has binary_data_size but the request has no Inference-Header-Content-Length`,
          'send the JSON header length in the Inference-Header-Content-Length header',
        );
      if (typeof size !== 'number' || !Number.isInteger(size) || size < 0 || offset + size > binary.length)
        throw inputError(
          `input '${name}': binary_data_size ${JSON.stringify(size)} runs past the ${binary.length} bytes of binary data`,
          'each binary_data_size must be its tensor`s byte length, and they must add up to the bytes after the header',
        );
      if (size !== count * BYTES[dtype])
        throw inputError(
          `input '${name}': binary_data_size is ${size} bytes, but ${V2_DATATYPE[dtype]}${JSON.stringify(shape)} takes ${count * BYTES[dtype]}`,
          'send the tensor as raw little-endian elements in row-major order',
        );
      const bytes = new Uint8Array(size);
      bytes.set(binary.subarray(offset, offset + size));
      offset += size;
      data = new ARRAY[dtype](bytes.buffer, 0, count);
    } else {
      if (entry.data === undefined)
        throw inputError(`input '${name}' has no data`, 'give "data" (a flat or nested list), or binary data');
      data = jsonData(entry.data, dtype, count, name);
    }
    req.inputs.set(name, { dtype, shape: shape as number[], data });
  }
  if (binary && offset !== binary.length)
    throw inputError(
      `${binary.length - offset} bytes after the JSON header belong to no input`,
      "give each binary input's byte length in its parameters.binary_data_size",
    );
  if (raw.outputs !== undefined) {
    if (!Array.isArray(raw.outputs))
      throw inputError('"outputs" is not a list', 'give [{"name": ..., "parameters": {"binary_data": true}}]');
    req.outputs = raw.outputs.map((o, i) => {
      if (!isObject(o) || typeof o.name !== 'string')
        throw inputError(`outputs[${i}] has no name`, 'each requested output is {"name": ...}');
      const op = isObject(o.parameters) ? o.parameters : {};
      return { name: o.name, binary: op.binary_data === undefined ? req.binaryOutput : op.binary_data === true };
    });
  }
  return req;
}

/** JSON data, flat or nested, as a typed array of `dtype`. */
function jsonData(v: unknown, dtype: DType, count: number, name: string): TypedArray {
  const flat = Array.isArray(v) ? (v.flat(Number.POSITIVE_INFINITY) as unknown[]) : [v];
  if (flat.length !== count)
    throw inputError(
      `input '${name}' has ${flat.length} values in "data", but its shape holds ${count}`,
      'make "data" hold one value per element of "shape"',
    );
  const out = new ARRAY[dtype](count);
  const bits = isHalf(dtype) ? halfBitsOf(out) : undefined;
  const wide = dtype === 'int64' || dtype === 'uint64';
  const integer = !/^float|^bfloat/.test(dtype) && dtype !== 'bool';
  for (let i = 0; i < count; i++) {
    const x = flat[i];
    const ok = dtype === 'bool' ? typeof x === 'boolean' : typeof x === 'number' && (!integer || Number.isInteger(x));
    if (!ok)
      throw inputError(
        `input '${name}': data[${i}] is ${JSON.stringify(x)}, not ${dtype === 'bool' ? 'true or false' : integer ? 'an integer' : 'a number'}`,
        `send ${V2_DATATYPE[dtype]} values`,
      );
    if (bits) bits[i] = halfBits(dtype, x as number);
    else if (wide) (out as BigInt64Array)[i] = BigInt(x as number);
    else out[i] = dtype === 'bool' ? Number(x) : (x as number);
  }
  return out;
}

/** One output of a response: JSON numbers, or binary bytes referenced by size. */
interface OutputEntry {
  name: string;
  datatype: string;
  shape: number[];
  data?: (number | boolean)[];
  parameters?: { binary_data_size: number };
}

/** The response body: JSON alone, or a JSON header then binary outputs (with its length to put in the header). */
export function inferResponse(
  model: string,
  id: string | undefined,
  outputs: { name: string; tensor: Tensor; binary: boolean }[],
): { body: Buffer; headerLength?: number } {
  const entries: OutputEntry[] = [];
  const blobs: Buffer[] = [];
  for (const { name, tensor, binary } of outputs) {
    const e: OutputEntry = { name, datatype: V2_DATATYPE[tensor.dtype], shape: tensor.shape };
    const data = tensor.data as TypedArray;
    if (binary) {
      const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      e.parameters = { binary_data_size: bytes.length };
      blobs.push(bytes);
    } else {
      const n = data.length;
      const values: (number | boolean)[] = new Array(n);
      const bits = isHalf(tensor.dtype) ? halfBitsOf(data) : undefined;
      for (let i = 0; i < n; i++)
        values[i] = bits ? halfValue(tensor.dtype, bits[i]) : tensor.dtype === 'bool' ? data[i] !== 0 : Number(data[i]);
      e.data = values;
    }
    entries.push(e);
  }
  const header = Buffer.from(
    JSON.stringify({ model_name: model, ...(id !== undefined ? { id } : {}), outputs: entries }),
  );
  if (blobs.length === 0) return { body: header };
  return { body: Buffer.concat([header, ...blobs]), headerLength: header.length };
}
