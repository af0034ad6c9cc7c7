// Field-by-field check of an artifact header, after its checksum: a header edited and re-hashed (or written by a
// buggy tool) is rejected here with the field that is wrong, instead of reaching typed-array constructors,
// WebAssembly.Memory or the kernels as a negative offset, a string or an index past an array.
import { KilnError } from './errors.js';
import { BYTES, DTYPES, type DType } from './dtype.js';
import type { ArtifactHeader } from './artifact-format.js';
import { sizeOf } from './tensor.js';
import { WEBGPU_LIMIT_NAMES } from './webgpu-limits.js';

export const damaged = (what: string): KilnError =>
  new KilnError('E_ARTIFACT', `artifact is damaged: ${what}`, {
    hint: 'recompile the model with kiln compile; do not edit or truncate .kiln files',
  });

type Obj = Record<string, unknown>;
const shown = (v: unknown): string =>
  typeof v === 'string'
    ? `'${v.slice(0, 40)}'`
    : Array.isArray(v)
      ? 'an array'
      : v === null
        ? 'null'
        : typeof v === 'object'
          ? 'an object'
          : String(v);

function obj(v: unknown, path: string): Obj {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw damaged(`${path} is ${shown(v)}, not an object`);
  return v as Obj;
}
function arr(v: unknown, path: string): unknown[] {
  if (!Array.isArray(v)) throw damaged(`${path} is ${shown(v)}, not an array`);
  return v;
}
function str(v: unknown, path: string): string {
  if (typeof v !== 'string' || v.length === 0) throw damaged(`${path} is ${shown(v)}, not a name`);
  return v;
}
/** A non-negative safe integer, at most `max`. */
function uint(v: unknown, path: string, max = Number.MAX_SAFE_INTEGER, what = ''): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
    throw damaged(`${path} is ${shown(v)}, not a non-negative integer`);
  if (v > max) throw damaged(`${path} is ${v}, past ${what || max}`);
  return v;
}
function num(v: unknown, path: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0)
    throw damaged(`${path} is ${shown(v)}, not a non-negative number`);
  return v;
}
function dtype(v: unknown, path: string): DType {
  if (typeof v !== 'string' || !DTYPES.includes(v as DType))
    throw damaged(`${path} is ${shown(v)}, not a dtype (${DTYPES.join(', ')})`);
  return v as DType;
}
function shape(v: unknown, path: string): number[] {
  const s = arr(v, path).map((d, i) => uint(d, `${path}[${i}]`));
  if (!Number.isSafeInteger(sizeOf(s))) throw damaged(`${path} [${s}] has more elements than an array can hold`);
  return s;
}
function triple(v: unknown, path: string): void {
  const a = arr(v, path);
  if (a.length !== 3) throw damaged(`${path} has ${a.length} entries, not 3`);
  a.forEach((x, i) => uint(x, `${path}[${i}]`));
}

/** A section of the file: inside it, after the header. */
function section(v: unknown, path: string, bodyStart: number, fileBytes: number): void {
  const s = obj(v, path);
  const offset = uint(s.offset, `${path}.offset`),
    length = uint(s.length, `${path}.length`);
  if (offset < bodyStart) throw damaged(`${path}.offset ${offset} lies inside the header (which ends at ${bodyStart})`);
  if (offset + length > fileBytes)
    throw damaged(`${path} [${offset}, ${offset + length}) lies outside the file of ${fileBytes} bytes`);
}

/**
 * Checks every field the runtime reads. `bodyStart` is where the header JSON ends, `fileBytes` the artifact's size.
 * Throws E_ARTIFACT "artifact is damaged: <field> ..." at the first wrong field.
 */
export function checkHeader(h: unknown, bodyStart: number, fileBytes: number): asserts h is ArtifactHeader {
  const head = obj(h, 'the header');
  if (head.target !== undefined && head.target !== 'wasm') throw damaged(`target is ${shown(head.target)}, not 'wasm'`);
  const sections = obj(head.sections, 'sections');
  section(sections.wasm, 'sections.wasm', bodyStart, fileBytes);
  section(sections.weights, 'sections.weights', bodyStart, fileBytes);
  if (sections.wasmRelaxed !== undefined) section(sections.wasmRelaxed, 'sections.wasmRelaxed', bodyStart, fileBytes);
  if (sections.native !== undefined) section(sections.native, 'sections.native', bodyStart, fileBytes);
  if ((sections.native === undefined) !== (head.native === undefined))
    throw damaged(sections.native === undefined ? 'native has no sections.native' : 'sections.native has no native');
  const weightBytes = (sections.weights as { length: number }).length;

  const memoryBytes = uint(head.memoryBytes, 'memoryBytes');
  const weightsAt = uint(head.weightsAt, 'weightsAt');
  if (weightsAt + weightBytes > memoryBytes)
    throw damaged(
      `the weights (${weightBytes} bytes at weightsAt ${weightsAt}) do not fit in memoryBytes ${memoryBytes}`,
    );

  const sizes = checkSymbols(head, memoryBytes);
  const io = (list: unknown, path: string) => {
    const names = new Set<string>();
    arr(list, path).forEach((b, i) => {
      const p = `${path}[${i}]`,
        o = obj(b, p);
      const name = str(o.name, `${p}.name`);
      if (names.has(name)) throw damaged(`${p}.name '${name}' appears twice`);
      names.add(name);
      const t = dtype(o.dtype, `${p}.dtype`);
      const bound = shape(o.shape, `${p}.shape`);
      const n = sizeOf(bound);
      if (o.dims !== undefined) sizes.checkDims(o.dims, bound, `${p}.dims`);
      const offset = uint(o.offset, `${p}.offset`);
      // the executor views it as a typed array of its dtype, which must start at a multiple of the element size
      if (offset % BYTES[t] !== 0)
        throw damaged(`${p}.offset ${offset} is not a multiple of ${BYTES[t]}, the size of ${t}`);
      if (offset + n * BYTES[t] > memoryBytes)
        throw damaged(
          `${p} ('${name}', ${n * BYTES[t]} bytes at offset ${offset}) lies outside memoryBytes ${memoryBytes}`,
        );
    });
  };
  io(head.inputs, 'inputs');
  io(head.outputs, 'outputs');

  const kernels = arr(head.kernels, 'kernels').map((k, i) => {
    const p = `kernels[${i}]`,
      o = obj(k, p);
    str(o.name, `${p}.name`);
    arr(o.phases, `${p}.phases`).forEach((ph, j) => {
      if (typeof ph !== 'boolean') throw damaged(`${p}.phases[${j}] is ${shown(ph)}, not true or false`);
    });
    num(o.flops, `${p}.flops`);
    num(o.bytes, `${p}.bytes`);
    if (o.ops !== undefined) arr(o.ops, `${p}.ops`);
    return o;
  });
  arr(head.calls, 'calls').forEach((c, i) => {
    const p = `calls[${i}]`,
      o = obj(c, p);
    uint(o.kernel, `${p}.kernel`, kernels.length - 1, `the last of ${kernels.length} kernels`);
    arr(o.args, `${p}.args`).forEach((a, j) => uint(a, `${p}.args[${j}]`, memoryBytes, `memoryBytes ${memoryBytes}`));
    if (o.origin !== undefined) arr(o.origin, `${p}.origin`);
  });

  if (head.control !== undefined) checkControl(head.control, 'control', head.calls as unknown[], memoryBytes, 0);
  if (head.webgpu !== undefined) checkWebGpu(obj(head.webgpu, 'webgpu'), weightBytes, sizes);
  if (head.cuda !== undefined) checkCuda(obj(head.cuda, 'cuda'), weightsAt + weightBytes, sizes);
  if (head.native !== undefined) {
    const n = obj(head.native, 'native');
    str(n.triple, 'native.triple');
    str(n.cpu, 'native.cpu');
    str(n.entry, 'native.entry');
    uint(n.llvm, 'native.llvm');
    if (n.threads !== undefined && typeof n.threads !== 'boolean') throw damaged('native.threads is not a boolean');
    if (n.perCall !== undefined && typeof n.perCall !== 'boolean') throw damaged('native.perCall is not a boolean');
    if (n.perCall === true && head.control === undefined) throw damaged('native.perCall without a control program');
    if (n.callEntry !== undefined && (typeof n.callEntry !== 'string' || n.perCall === true))
      throw damaged('native.callEntry is not a name beside a whole-run entry');
    arr(n.features, 'native.features').forEach((f, i) => str(f, `native.features[${i}]`));
  }
}

/**
 * The run-time sizes: symbols with ranges, their int32 region inside memory, and dim expressions whose values at
 * the upper bounds are the layouts' shapes. Returns the check of a binding's dims.
 */
function checkSymbols(head: Obj, memoryBytes: number) {
  const bounds = new Map<string, number>();
  if (head.symbols !== undefined) {
    arr(head.symbols, 'symbols').forEach((x, i) => {
      const p = `symbols[${i}]`,
        o = obj(x, p);
      const name = str(o.name, `${p}.name`);
      const lo = uint(o.min, `${p}.min`);
      if (o.counted !== undefined && typeof o.counted !== 'boolean') throw damaged(`${p}.counted is not a boolean`);
      bounds.set(name, uint(o.max, `${p}.max`));
      if (lo > bounds.get(name)!) throw damaged(`${p}.min ${lo} is past its max ${o.max}`);
      if (o.declared !== undefined) {
        const d = arr(o.declared, `${p}.declared`);
        if (o.counted !== true || d.length !== 2) throw damaged(`${p}.declared is not the range of a counted size`);
        const [dlo, dhi] = [uint(d[0], `${p}.declared[0]`), uint(d[1], `${p}.declared[1]`)];
        if (dlo > dhi || dhi + 1 !== bounds.get(name))
          throw damaged(`${p}.declared ${dlo}..${dhi} does not end one below its max ${o.max}`);
      }
    });
    const at = uint(head.symbolsAt, 'symbolsAt', memoryBytes - 4 * bounds.size, `memoryBytes ${memoryBytes}`);
    if (at % 4) throw damaged(`symbolsAt ${at} is not a multiple of 4`);
  }
  const exprs = head.dimExprs === undefined ? {} : obj(head.dimExprs, 'dimExprs');
  // operands inside a tree may be negative (`n - 1` is ['+', 'n', -1]); a dim's value is checked against its shape
  const valueAtBounds = (e: unknown, path: string, operand = false): number => {
    if (typeof e === 'number') {
      if (operand && Number.isSafeInteger(e)) return e;
      return uint(e, path);
    }
    if (typeof e === 'string') {
      if (!bounds.has(e)) throw damaged(`${path} names '${e}', which is no symbol`);
      return bounds.get(e)!;
    }
    const a = arr(e, path);
    if (a.length !== 3) throw damaged(`${path} has ${a.length} entries, not 3`);
    const x = valueAtBounds(a[1], `${path}[1]`, true);
    if (a[0] === 'floordiv') return Math.floor(x / Math.max(1, uint(a[2], `${path}[2]`)));
    const y = valueAtBounds(a[2], `${path}[2]`, true);
    if (a[0] === '+') return x + y;
    if (a[0] === '*') return x * y;
    if (a[0] === 'min') return Math.min(x, y);
    if (a[0] === 'max') return Math.max(x, y);
    throw damaged(`${path}[0] is ${shown(a[0])}, not an operator of dims`);
  };
  return {
    /** A GPU launch's run ids (and its foldedX flag): three dim trees of the symbols. */
    checkRunIds(launch: Obj, path: string): void {
      if (launch.foldedX !== undefined && launch.foldedX !== true)
        throw damaged(`${path}.foldedX is ${shown(launch.foldedX)}, not true`);
      if (launch.runIds === undefined) return;
      const ids = arr(launch.runIds, `${path}.runIds`);
      if (ids.length !== 3) throw damaged(`${path}.runIds has ${ids.length} entries, not 3`);
      ids.forEach((e, t) => valueAtBounds(e, `${path}.runIds[${t}]`, true));
    },
    checkDims(dims: unknown, bound: readonly number[], path: string): void {
      const d = arr(dims, path);
      if (d.length !== bound.length) throw damaged(`${path} has ${d.length} dims, the shape ${bound.length}`);
      d.forEach((x, i) => {
        const at =
          typeof x === 'string'
            ? valueAtBounds(bounds.has(x) ? x : exprs[x], `dimExprs['${x}']`)
            : uint(x, `${path}[${i}]`);
        if (at !== bound[i]) throw damaged(`${path}[${i}] is ${at} at the symbols' bounds, the shape ${bound[i]}`);
      });
    },
  };
}

/** Deepest nesting of control steps a header may have (a model nests a few If / Loop levels). */
const MAX_CONTROL_DEPTH = 64;

/** The control program (If / Loop / Scan): calls that exist, addresses inside memory, nesting that ends. */
function checkControl(v: unknown, path: string, calls: unknown[], memoryBytes: number, depth: number): void {
  if (depth > MAX_CONTROL_DEPTH) throw damaged(`${path} nests more than ${MAX_CONTROL_DEPTH} levels`);
  const at = (x: unknown, p: string, bytes: number) => {
    const a = uint(x, p, memoryBytes, `memoryBytes ${memoryBytes}`);
    if (a + bytes > memoryBytes) throw damaged(`${p} ${a} + ${bytes} bytes lies outside memoryBytes ${memoryBytes}`);
    return a;
  };
  const stride = (x: unknown, p: string) => {
    if (x !== undefined && !(typeof x === 'number' && Number.isSafeInteger(x)))
      throw damaged(`${p} is ${shown(x)}, not an integer`);
  };
  arr(v, path).forEach((step, i) => {
    const p = `${path}[${i}]`,
      o = obj(step, p);
    switch (o.op) {
      case 'call':
        uint(o.call, `${p}.call`, calls.length - 1, `the last of ${calls.length} calls`);
        break;
      case 'copy': {
        const bytes = uint(o.bytes, `${p}.bytes`, memoryBytes);
        at(o.from, `${p}.from`, bytes);
        at(o.to, `${p}.to`, bytes);
        stride(o.fromStride, `${p}.fromStride`);
        stride(o.toStride, `${p}.toStride`);
        break;
      }
      case 'if':
        at(o.cond, `${p}.cond`, 1);
        checkControl(o.then, `${p}.then`, calls, memoryBytes, depth + 1);
        checkControl(o.else, `${p}.else`, calls, memoryBytes, depth + 1);
        break;
      case 'loop':
        if (typeof o.trip === 'number') {
          if (!Number.isSafeInteger(o.trip) || o.trip < -1) throw damaged(`${p}.trip is ${o.trip}, not a trip count`);
        } else at(obj(o.trip, `${p}.trip`).at, `${p}.trip.at`, 8);
        if (o.cond !== undefined) at(o.cond, `${p}.cond`, 1);
        if (o.condFrom !== undefined) at(o.condFrom, `${p}.condFrom`, 1);
        if (o.iter !== undefined) at(o.iter, `${p}.iter`, 8);
        if (o.fullTrip !== undefined && typeof o.fullTrip !== 'boolean')
          throw damaged(`${p}.fullTrip is ${shown(o.fullTrip)}, not true or false`);
        str(o.name, `${p}.name`);
        checkControl(o.body, `${p}.body`, calls, memoryBytes, depth + 1);
        break;
      default:
        throw damaged(`${p}.op is ${shown(o.op)}, not 'call', 'copy', 'if' or 'loop'`);
    }
  });
}

function checkWebGpu(g: Obj, weightBytes: number, sizes: ReturnType<typeof checkSymbols>): void {
  const values = arr(g.values, 'webgpu.values');
  values.forEach((v, i) => {
    const p = `webgpu.values[${i}]`,
      o = obj(v, p);
    const t = dtype(o.dtype, `${p}.dtype`);
    const size = uint(o.size, `${p}.size`);
    if (!['input', 'output', 'intermediate', 'weight', 'symbols'].includes(o.kind as string))
      throw damaged(`${p}.kind is ${shown(o.kind)}`);
    if (o.kind === 'weight') {
      const w = obj(o.weight, `${p}.weight`);
      const off = uint(w.offset, `${p}.weight.offset`),
        len = uint(w.length, `${p}.weight.length`);
      if (off + len > weightBytes)
        throw damaged(`${p}.weight [${off}, ${off + len}) lies outside the weights section of ${weightBytes} bytes`);
      if (len < size * BYTES[t])
        throw damaged(`${p}.weight holds ${len} bytes, ${size} ${t} values need ${size * BYTES[t]}`);
    }
    if (o.window !== undefined && uint(o.window, `${p}.window`) === 0) throw damaged(`${p}.window is 0`);
  });
  if (g.limits !== undefined) {
    const l = obj(g.limits, 'webgpu.limits');
    for (const name of WEBGPU_LIMIT_NAMES) uint(l[name], `webgpu.limits.${name}`);
  }
  const value = (v: unknown, path: string) => uint(v, path, values.length - 1, `the last of ${values.length} values`);
  if (g.symbols !== undefined) {
    const v = obj(values[value(g.symbols, 'webgpu.symbols')], 'webgpu.symbols');
    if (v.kind !== 'symbols' || v.dtype !== 'int32')
      throw damaged('webgpu.symbols names a value that is not the symbols');
  }
  for (const side of ['inputs', 'outputs'] as const) {
    arr(g[side], `webgpu.${side}`).forEach((b, i) => {
      const o = obj(b, `webgpu.${side}[${i}]`);
      str(o.name, `webgpu.${side}[${i}].name`);
      value(o.value, `webgpu.${side}[${i}].value`);
    });
  }
  const kernels = arr(g.kernels, 'webgpu.kernels').map((k, i) => {
    const p = `webgpu.kernels[${i}]`,
      o = obj(k, p);
    str(o.name, `${p}.name`);
    arr(o.ops, `${p}.ops`);
    const temps = arr(o.temps, `${p}.temps`);
    temps.forEach((t, j) => {
      const to = obj(t, `${p}.temps[${j}]`);
      dtype(to.dtype, `${p}.temps[${j}].dtype`);
      uint(to.size, `${p}.temps[${j}].size`);
      if (to.window !== undefined && uint(to.window, `${p}.temps[${j}].window`) === 0)
        throw damaged(`${p}.temps[${j}].window is 0`);
    });
    return { o, temps: temps.length };
  });
  arr(g.calls, 'webgpu.calls').forEach((c, i) => {
    const p = `webgpu.calls[${i}]`,
      o = obj(c, p);
    const k = kernels[uint(o.kernel, `${p}.kernel`, kernels.length - 1, `the last of ${kernels.length} kernels`)];
    const args = arr(o.args, `${p}.args`);
    if (args.length === 0) throw damaged(`${p}.args is empty`);
    args.forEach((a, j) => value(a, `${p}.args[${j}]`));
    if (o.symbol !== undefined) {
      const symbols = g.symbols === undefined ? undefined : obj(values[g.symbols as number], 'webgpu.symbols');
      const out = obj(values[args[args.length - 1] as number], 'value');
      uint(o.symbol, `${p}.symbol`, ((symbols?.size as number) ?? 0) - 1, 'the symbols value');
      if (out.dtype !== 'int32' || out.size !== 1)
        throw damaged(`${p} counts a size but its output is no int32 scalar`);
    }
    const params = args.length + k.temps;
    arr(k.o.stages, `webgpu.kernels[${o.kernel}].stages`).forEach((s, j) => {
      const sp = `webgpu.kernels[${o.kernel}].stages[${j}]`,
        so = obj(s, sp);
      if (typeof so.code !== 'string') throw damaged(`${sp}.code is ${shown(so.code)}, not WGSL text`);
      uint(so.workgroupSize, `${sp}.workgroupSize`);
      triple(so.grid, `${sp}.grid`);
      sizes.checkRunIds(so, sp);
      const bindings = arr(so.bindings, `${sp}.bindings`);
      bindings.forEach((b, n) => uint(b, `${sp}.bindings[${n}]`, params - 1, `the ${params} parameters of a call`));
      if (so.windows !== undefined) {
        const windows = arr(so.windows, `${sp}.windows`);
        if (windows.length !== bindings.length)
          throw damaged(`${sp}.windows has ${windows.length} entries for ${bindings.length} bindings`);
        // a window past the value's last buffer
        windows.forEach((w, n) => {
          const wi = uint(w, `${sp}.windows[${n}]`);
          const p = bindings[n] as number;
          const t = p < args.length ? obj(values[args[p] as number], 'value') : undefined;
          const words = t ? (t.size as number) * (t.dtype === 'int64' || t.dtype === 'uint64' ? 2 : 1) : undefined;
          if (t && wi > 0 && (!t.window || wi * (t.window as number) >= words!))
            throw damaged(`${sp}.windows[${n}] is ${wi}, past the buffers of value ${args[p]}`);
        });
      }
      if (so.uniforms !== undefined)
        arr(so.uniforms, `${sp}.uniforms`).forEach((u, n) => uint(u, `${sp}.uniforms[${n}]`, 2 ** 32 - 1));
    });
  });
}

function checkCuda(c: Obj, weightsEnd: number, sizes: ReturnType<typeof checkSymbols>): void {
  const memoryBytes = uint(c.memoryBytes, 'cuda.memoryBytes');
  if (weightsEnd > memoryBytes)
    throw damaged(`cuda.memoryBytes ${memoryBytes} does not hold the weights (which end at ${weightsEnd})`);
  uint(c.scratchAt, 'cuda.scratchAt', memoryBytes, `cuda.memoryBytes ${memoryBytes}`);
  uint(c.sm, 'cuda.sm');
  if (typeof c.ptx !== 'string') throw damaged(`cuda.ptx is ${shown(c.ptx)}, not PTX text`);
  arr(c.kernels, 'cuda.kernels').forEach((k, i) => {
    const p = `cuda.kernels[${i}]`,
      o = obj(k, p);
    str(o.name, `${p}.name`);
    arr(o.params, `${p}.params`).forEach((q, j) => {
      const qo = obj(q, `${p}.params[${j}]`);
      if (!['input', 'output', 'scratch'].includes(qo.role as string))
        throw damaged(`${p}.params[${j}].role is ${shown(qo.role)}`);
      uint(qo.bytes, `${p}.params[${j}].bytes`, memoryBytes, `cuda.memoryBytes ${memoryBytes}`);
    });
    arr(o.launches, `${p}.launches`).forEach((l, j) => {
      const lp = `${p}.launches[${j}]`,
        lo = obj(l, lp);
      str(lo.entry, `${lp}.entry`);
      triple(lo.grid, `${lp}.grid`);
      triple(lo.block, `${lp}.block`);
      uint(lo.sharedBytes, `${lp}.sharedBytes`);
      sizes.checkRunIds(lo, lp);
    });
  });
}
