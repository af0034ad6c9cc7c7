// Checking run-time inputs against the artifact's bindings (shared by every executor). Every field of every feed is
// checked before a byte reaches the model: the feeds object, each feed's dtype, shape and data (a typed array of
// exactly the dtype's kind, or a plain array whose every element fits the dtype), and the data's length.
import { KilnError } from './errors.js';
import type { IOBinding } from './artifact-format.js';
import { ARRAY, DTYPES, type DType, type TypedArray, isHalf, isView } from './dtype.js';
import { halfData } from './half.js';
import { type Tensor, formatShape, sizeOf } from './tensor.js';

const FEED_HINT =
  "pass feeds as { [inputName]: { dtype, shape, data } }, e.g. { x: { dtype: 'float32', shape: [1, 3], data: new Float32Array(3) } }";

/** What a value is, for messages: 'null', 'a string', 'a Float64Array', 'an array', ... */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (Array.isArray(v)) return 'a plain array';
  if (isView(v)) return `a ${typedArrayKind(v) ?? 'DataView'}`;
  if (typeof v === 'object') return 'an object';
  const t = typeof v;
  return `${/^[aeiou]/.test(t) ? 'an' : 'a'} ${t} (${String(v).slice(0, 40)})`;
}

/** The typed array's class name ('Float32Array', ...), also for arrays made in another realm (a worker, a vm context). */
function typedArrayKind(v: unknown): string | undefined {
  if (!isView(v)) return undefined;
  const tag = (v as { [Symbol.toStringTag]?: unknown })[Symbol.toStringTag];
  return typeof tag === 'string' ? tag : undefined;
}

const arrayName = (t: DType): string => (ARRAY[t] as unknown as { name: string }).name;

/** Integer ranges of the narrow integer dtypes (plain-array elements must fit, not wrap). */
const RANGE: Partial<Record<DType, [number, number]>> = {
  int8: [-128, 127],
  uint8: [0, 255],
  int16: [-32768, 32767],
  uint16: [0, 65535],
  int32: [-(2 ** 31), 2 ** 31 - 1],
  uint32: [0, 2 ** 32 - 1],
  bool: [0, 1],
};
const WIDE_RANGE: Partial<Record<DType, [bigint, bigint]>> = {
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
  uint64: [0n, 2n ** 64n - 1n],
};

/** The element at `i` of a plain array is wrong: the message says which, what it is, and what the dtype takes. */
function elementError(name: string, dtype: DType, i: number, v: unknown, wants: string): KilnError {
  return new KilnError(
    'E_INPUT',
    `input '${name}' (${dtype}): element ${i} is ${describe(v)}; ${dtype} takes ${wants}`,
    {
      hint: `pass data as a ${arrayName(dtype)}${dtype === 'bool' ? ' of 0 and 1' : ''}`,
    },
  );
}

/** A plain array's elements, each checked, copied into the dtype's typed array. */
function fromPlainArray(name: string, dtype: DType, a: readonly unknown[]): TypedArray {
  const out = isHalf(dtype) ? new Float64Array(a.length) : new ARRAY[dtype](a.length);
  const o = out as unknown as (number | bigint)[];
  const wide = WIDE_RANGE[dtype],
    narrow = RANGE[dtype];
  for (let i = 0; i < a.length; i++) {
    const v = a[i];
    if (wide) {
      let b: bigint;
      if (typeof v === 'bigint') b = v;
      else if (typeof v === 'number' && Number.isSafeInteger(v)) b = BigInt(v);
      else throw elementError(name, dtype, i, v, 'bigints (or safe integer numbers)');
      if (b < wide[0] || b > wide[1]) throw elementError(name, dtype, i, v, `integers from ${wide[0]} to ${wide[1]}`);
      o[i] = b;
    } else if (narrow) {
      const n = dtype === 'bool' && typeof v === 'boolean' ? Number(v) : v;
      if (typeof n !== 'number' || !Number.isInteger(n) || n < narrow[0] || n > narrow[1]) {
        throw elementError(
          name,
          dtype,
          i,
          v,
          dtype === 'bool' ? '0, 1, true or false' : `integers from ${narrow[0]} to ${narrow[1]}`,
        );
      }
      o[i] = n;
    } else {
      // floats: any number, NaN and the infinities included (a typed array holds them too)
      if (typeof v !== 'number') throw elementError(name, dtype, i, v, 'numbers');
      o[i] = v;
    }
  }
  // 16-bit floats: the numbers rounded to nearest even, as their bits (or a Float16Array)
  return isHalf(dtype) ? halfData(dtype, out as Float64Array) : out;
}

/** `dims`: where a dim is a run-time size (a string), any size passes here (its range is checked with the others). */
function checkShape(
  name: string,
  shape: unknown,
  want: readonly number[],
  dims?: readonly (number | string)[],
): number[] {
  if (!Array.isArray(shape)) {
    throw new KilnError('E_INPUT', `input '${name}': shape is ${describe(shape)}, not an array of dimensions`, {
      hint: `pass shape: ${formatShape(want)}`,
    });
  }
  shape.forEach((d, i) => {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw new KilnError(
        'E_INPUT',
        `input '${name}': dimension ${i} of the shape is ${describe(d)}; dimensions are non-negative integers`,
        { hint: `pass shape: ${formatShape(want)}` },
      );
    }
  });
  const s = shape as number[];
  if (s.length !== want.length || s.some((d, i) => d !== want[i] && typeof dims?.[i] !== 'string')) {
    throw new KilnError(
      'E_INPUT',
      `input '${name}' has shape ${formatShape(s)}, the model was compiled for ${dims ? `[${dims.join(', ')}]` : formatShape(want)}`,
      { hint: 'reshape the data, or recompile with --input-shape for this shape' },
    );
  }
  return s;
}

function checkData(name: string, dtype: DType, data: unknown): TypedArray {
  const want = arrayName(dtype);
  if (Array.isArray(data)) return fromPlainArray(name, dtype, data);
  const kind = typedArrayKind(data);
  if (kind === undefined || kind === 'DataView') {
    throw new KilnError('E_INPUT', `input '${name}' (${dtype}): data is ${describe(data)}, not a ${want}`, {
      hint: `pass data as a ${want}`,
    });
  }
  const ok =
    kind === want ||
    ((dtype === 'uint8' || dtype === 'bool') && kind === 'Uint8ClampedArray') ||
    (dtype === 'float16' && kind === 'Uint16Array'); // the bits, where the engine has a Float16Array too
  if (!ok) {
    throw new KilnError('E_INPUT', `input '${name}' (${dtype}): data is a ${kind}; ${dtype} data is a ${want}`, {
      hint: `convert it: ${want}.from(data)${dtype === 'int64' || dtype === 'uint64' ? ' with bigint elements' : ''}`,
    });
  }
  const arr = data as TypedArray;
  if (dtype === 'bool') {
    const b = arr as Uint8Array;
    for (let i = 0; i < b.length; i++) if (b[i] > 1) throw elementError(name, dtype, i, b[i], '0 and 1');
  }
  return arr;
}

/**
 * Checks the feeds against the model's inputs and returns them with every data a typed array of its dtype's kind
 * (plain arrays converted). Every problem is an E_INPUT KilnError naming the input.
 */
export function checkInputs(inputs: readonly IOBinding[], feeds: Record<string, Tensor>): Record<string, Tensor> {
  const names = inputs.map((i) => i.name);
  if (feeds === null || typeof feeds !== 'object' || Array.isArray(feeds) || isView(feeds)) {
    throw new KilnError(
      'E_INPUT',
      `feeds are ${describe(feeds)}, not an object of named inputs (the model's inputs: ${names.join(', ') || '(none)'})`,
      { hint: FEED_HINT },
    );
  }
  for (const k of Object.keys(feeds)) {
    if (!names.includes(k))
      throw new KilnError('E_INPUT', `unknown input '${k}'`, {
        hint: `the model's inputs are: ${names.join(', ') || '(none)'}`,
      });
  }
  const out: Record<string, Tensor> = {};
  for (const inp of inputs) {
    const t = (feeds as Record<string, unknown>)[inp.name] as Partial<Tensor> | null | undefined;
    if (t === undefined)
      throw new KilnError('E_INPUT', `missing input '${inp.name}' (${inp.dtype}${formatShape(inp.shape)})`, {
        hint: `pass every input: ${names.join(', ')}`,
      });
    if (t === null || typeof t !== 'object' || Array.isArray(t) || isView(t)) {
      throw new KilnError('E_INPUT', `input '${inp.name}' is ${describe(t)}, not a tensor { dtype, shape, data }`, {
        hint: `pass { dtype: '${inp.dtype}', shape: ${formatShape(inp.shape)}, data: new ${arrayName(inp.dtype)}(${sizeOf(inp.shape)}) }`,
      });
    }
    if (typeof t.dtype !== 'string')
      throw new KilnError('E_INPUT', `input '${inp.name}': dtype is ${describe(t.dtype)}, not a dtype name`, {
        hint: `pass dtype: '${inp.dtype}'`,
      });
    if (!DTYPES.includes(t.dtype))
      throw new KilnError('E_INPUT', `input '${inp.name}' has unknown dtype '${t.dtype}'`, {
        hint: `the model expects '${inp.dtype}'; Kiln's dtypes are ${DTYPES.join(', ')}`,
      });
    if (t.dtype !== inp.dtype)
      throw new KilnError('E_INPUT', `input '${inp.name}' has dtype ${t.dtype}, the model expects ${inp.dtype}`, {
        hint: 'convert the data to the expected type',
      });
    const shape = checkShape(inp.name, t.shape, inp.shape, inp.dims);
    const data = checkData(inp.name, inp.dtype, t.data);
    const n = sizeOf(shape);
    if (data.length !== n) {
      throw new KilnError(
        'E_INPUT',
        `input '${inp.name}' holds ${data.length} values; shape ${formatShape(shape)} has ${n}`,
        { hint: `pass exactly ${n} values (row-major)` },
      );
    }
    out[inp.name] = data === t.data ? (t as Tensor) : { dtype: inp.dtype, shape, data };
  }
  return out;
}
