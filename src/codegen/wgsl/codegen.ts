// Loop IR -> WGSL compute shaders plus launch metadata. One shader per top-level statement of a kernel (one per
// materialized stage under the default GPU schedule): the dispatch boundary is the global barrier between stages.
//
// Thread binding: the leading perfect nest of loops bound to 'blockIdx.*' / 'threadIdx.*' becomes the dispatch.
// All block-bound loops form one row-major linear workgroup index (split across dispatch x and y when it exceeds
// the 65535 workgroups per dimension every device allows), all thread-bound loops one linear local index (the
// workgroup size). Loops below that nest run serially in each invocation.
//
// Types: float32 -> f32; int32 -> i32; uint32 -> u32. Narrow integers and bool are stored one per 32-bit word
// (int8/int16 as i32, uint8/uint16/bool as u32); the runtime widens inputs and weights on upload and narrows
// outputs on download. Arithmetic on narrow integers wraps to their width as on the WebAssembly target.
// WGSL has no 64-bit types. int64 buffers are kept as i32 when a kernel only reads them converted to another
// type (Gather indices, token ids) or only writes 32-bit values widened to int64 (ArgMax): exact as long as the
// values fit in 32 bits, which the runtime checks on upload. Any other int64 arithmetic, and float64 and uint64,
// is rejected with E_UNSUPPORTED (in models int64 mostly lives in shape subgraphs, which constant folding removes).
// Shapes are static in the loop IR, so they are baked into the shader text (no uniforms are needed yet).
import type { DType } from '../../runtime/dtype.js';
import { KilnError } from '../../runtime/errors.js';
import type { Expr, Var } from '../../tensor-expr/expr.js';
import type { Buffer, PrimFunc, Stmt } from '../../schedule/loop-ir.js';

/** One dispatch: WGSL source, workgroup size, workgroup grid, and the kernel parameters it binds, in binding order. */
export interface WgslStage {
  code: string;
  workgroupSize: number;
  grid: [number, number, number];
  /** Kernel parameter index per binding: inputs, then outputs, then temps. */
  bindings: number[];
  /** Bindings the shader writes (read_write storage). */
  writes: number[];
}

export const MAX_WORKGROUPS_PER_DIM = 65535;

const UNSUPPORTED_DTYPES: ReadonlySet<DType> = new Set(['float64', 'int64', 'uint64']);
/** Types whose every value fits in an i32 (int64 values converted from them survive the round trip). */
const FITS_I32: ReadonlySet<DType> = new Set(['int32', 'int16', 'int8', 'uint16', 'uint8', 'bool']);

/** WGSL value type of a loop-IR dtype. */
export function valueType(t: DType): string {
  switch (t) {
    case 'float32': return 'f32';
    case 'int32': case 'int16': case 'int8': return 'i32';
    case 'uint32': case 'uint16': case 'uint8': return 'u32';
    case 'bool': return 'bool';
    default: throw unsupported(t);
  }
}

/** WGSL element type of a storage buffer holding `t`. */
export function storageType(t: DType): string {
  return t === 'bool' ? 'u32' : t === 'int64' ? 'i32' : valueType(t);
}

function unsupported(t: DType): KilnError {
  const what = t === 'int64' ? 'int64 arithmetic (int64 works only as indices read into 32 bits, or 32-bit results widened)' : t;
  return new KilnError('E_UNSUPPORTED', `the WebGPU target has no ${what} (WGSL lacks 64-bit types)`,
    { hint: "compile for target 'wasm', or keep 64-bit values in shape computations that fold to constants" });
}

const isThread = (k: string) => k.startsWith('threadIdx');
const isBlock = (k: string) => k.startsWith('blockIdx');

/** Compiles a kernel to one WGSL shader per top-level statement. */
export function emitWgslKernel(f: PrimFunc): WgslStage[] {
  for (const b of [...f.inputs, ...f.outputs, ...f.temps]) if (UNSUPPORTED_DTYPES.has(b.dtype) && b.dtype !== 'int64') throw unsupported(b.dtype);
  const params = [...f.inputs, ...f.outputs, ...f.temps];
  const body = f.body.k === 'seq' ? f.body.body : [f.body];
  return body.map((s) => new StageEmitter(params).emit(s)).filter((s): s is WgslStage => s !== undefined);
}

class StageEmitter {
  private readonly lines: string[] = [];
  private readonly helpers = new Set<string>();
  private readonly used = new Map<Buffer, boolean>(); // buffer -> written
  private readonly names = new Map<Var, string>();
  private readonly shared: Buffer[] = [];

  constructor(private readonly params: readonly Buffer[]) {}

  emit(s: Stmt): WgslStage | undefined {
    // the leading perfect nest of GPU-bound loops
    const blocks: { v: Var; extent: number }[] = [], threads: { v: Var; extent: number }[] = [];
    let inner = s;
    while (inner.k === 'for' && (isThread(inner.kind) || isBlock(inner.kind))) {
      (isThread(inner.kind) ? threads : blocks).push({ v: inner.v, extent: inner.extent });
      inner = inner.body;
    }
    const nBlocks = blocks.reduce((a, b) => a * b.extent, 1), wg = threads.reduce((a, b) => a * b.extent, 1);
    if (nBlocks === 0 || wg === 0) return undefined; // nothing to compute
    let bad: string | undefined;
    const visitBound = (x: Stmt): void => {
      if (x.k === 'for') { if (isThread(x.kind) || isBlock(x.kind)) bad = x.kind; visitBound(x.body); }
      else if (x.k === 'seq') x.body.forEach(visitBound);
      else if (x.k === 'if') { visitBound(x.then); if (x.else) visitBound(x.else); }
      else if (x.k === 'decl' || x.k === 'alloc') visitBound(x.body);
    };
    visitBound(inner);
    if (bad) throw new KilnError('E_INTERNAL', `wgsl: a loop bound to ${bad} is not in the leading nest of GPU-bound loops`);
    if (wg > 256) throw new KilnError('E_UNSUPPORTED', `wgsl: workgroup of ${wg} invocations exceeds the 256 every WebGPU device allows`);
    const gx = Math.min(nBlocks, MAX_WORKGROUPS_PER_DIM), gy = Math.ceil(nBlocks / gx);
    if (gy > MAX_WORKGROUPS_PER_DIM) throw new KilnError('E_UNSUPPORTED', `wgsl: ${nBlocks} workgroups exceed the dispatch limit`);

    const pre: string[] = [];
    pre.push(`  let kiln_block = i32(wid.x + wid.y * ${gx}u);`);
    if (gx * gy !== nBlocks) pre.push(`  if (kiln_block >= ${nBlocks}i) { return; }`);
    pre.push('  let kiln_thread = i32(lidx);');
    const decompose = (loops: { v: Var; extent: number }[], lin: string) => {
      let stride = 1;
      for (let i = loops.length - 1; i >= 0; i--) {
        const { v, extent } = loops[i];
        let e = stride === 1 ? lin : `(${lin} / ${stride}i)`;
        if (i > 0) e = `(${e} % ${extent}i)`;
        pre.push(`  let ${this.varName(v)}: i32 = ${e};`);
        stride *= extent;
      }
    };
    decompose(blocks, 'kiln_block');
    decompose(threads, 'kiln_thread');
    this.stmt(inner, '  ');

    const bindings: number[] = [], writes: number[] = [], decls: string[] = [];
    this.params.forEach((b, i) => {
      const written = this.used.get(b);
      if (written === undefined) return;
      decls.push(`@group(0) @binding(${bindings.length}) var<storage, ${written ? 'read_write' : 'read'}> ${this.bufName(b)}: array<${storageType(b.dtype)}>;`);
      if (written) writes.push(i);
      bindings.push(i);
    });
    for (const b of this.shared) decls.push(`var<workgroup> ${this.bufName(b)}: array<${storageType(b.dtype)}, ${b.size}>;`);
    const code = [
      ...decls,
      ...[...this.helpers].map((h) => HELPERS[h]),
      `@compute @workgroup_size(${wg})`,
      'fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lidx: u32) {',
      ...pre,
      ...this.lines,
      '}',
      '',
    ].join('\n');
    return { code, workgroupSize: wg, grid: [gx, gy, 1], bindings, writes };
  }

  private bufName(b: Buffer): string { return `b_${b.name.replace(/\W/g, '_')}`; }

  private varName(v: Var): string {
    let n = this.names.get(v);
    if (!n) { n = `v_${v.name.replace(/\W/g, '_')}`; this.names.set(v, n); }
    return n;
  }

  private helper(name: string): string {
    const h = HELPERS[name];
    if (!h) throw new KilnError('E_INTERNAL', `wgsl: no helper ${name}`);
    for (const dep of HELPER_DEPS[name] ?? []) this.helpers.add(dep);
    this.helpers.add(name);
    return name;
  }

  private useBuf(b: Buffer, write: boolean): void {
    if (b.scope === 'global') {
      if (!this.params.includes(b)) throw new KilnError('E_INTERNAL', `wgsl: buffer ${b.name} is not a kernel parameter`);
      this.used.set(b, (this.used.get(b) ?? false) || write);
    }
  }

  private stmt(s: Stmt, ind: string): void {
    const L = this.lines;
    switch (s.k) {
      case 'seq': s.body.forEach((b) => this.stmt(b, ind)); return;
      case 'for': {
        if (isThread(s.kind) || isBlock(s.kind)) throw new KilnError('E_INTERNAL', `wgsl: nested ${s.kind} loop`);
        if (s.extent <= 0) return;
        const v = this.varName(s.v);
        L.push(`${ind}for (var ${v}: i32 = 0i; ${v} < ${s.extent}i; ${v}++) {`);
        this.stmt(s.body, ind + '  ');
        L.push(`${ind}}`);
        return;
      }
      case 'store': {
        this.useBuf(s.buf, true);
        const idx = this.expr(s.index);
        if (s.buf.dtype === 'int64') {
          // a 32-bit value widened to int64, kept as i32
          if (s.value.k !== 'cast' || !FITS_I32.has(s.value.a.dtype)) throw unsupported('int64');
          L.push(`${ind}${this.bufName(s.buf)}[${idx}] = ${this.cast(this.expr(s.value.a), s.value.a.dtype, 'int32')};`);
          return;
        }
        const val = this.expr(s.value);
        L.push(`${ind}${this.bufName(s.buf)}[${idx}] = ${s.buf.dtype === 'bool' ? `select(0u, 1u, ${val})` : val};`);
        return;
      }
      case 'if':
        L.push(`${ind}if (${this.expr(s.cond)}) {`);
        this.stmt(s.then, ind + '  ');
        if (s.else) { L.push(`${ind}} else {`); this.stmt(s.else, ind + '  '); }
        L.push(`${ind}}`);
        return;
      case 'decl':
        this.checkType(s.v.dtype);
        L.push(`${ind}var ${this.varName(s.v)}: ${valueType(s.v.dtype)} = ${this.expr(s.init)};`);
        this.stmt(s.body, ind);
        return;
      case 'assign': L.push(`${ind}${this.varName(s.v)} = ${this.expr(s.value)};`); return;
      case 'alloc':
        this.checkType(s.buf.dtype);
        if (s.buf.scope === 'local') L.push(`${ind}var ${this.bufName(s.buf)}: array<${storageType(s.buf.dtype)}, ${s.buf.size}>;`);
        else if (s.buf.scope === 'shared') this.shared.push(s.buf);
        else throw new KilnError('E_INTERNAL', `wgsl: global allocation ${s.buf.name} inside a kernel`);
        this.stmt(s.body, ind);
        return;
      case 'barrier': L.push(`${ind}workgroupBarrier();`); return;
    }
  }

  private checkType(t: DType): void { if (UNSUPPORTED_DTYPES.has(t)) throw unsupported(t); }

  private lit(value: number | bigint, t: DType): string {
    const v = Number(value);
    switch (t) {
      case 'float32': {
        if (Number.isNaN(v)) return `${this.helper('kiln_nan')}()`;
        if (!Number.isFinite(v)) return v > 0 ? `${this.helper('kiln_inf')}()` : `(-${this.helper('kiln_inf')}())`;
        if (Object.is(v, -0)) return '(-0.0f)';
        const s = String(Math.abs(v));
        return v < 0 ? `(-${s}f)` : `${s}f`;
      }
      case 'int32': case 'int16': case 'int8': {
        const i = v | 0;
        if (i === -2147483648) return '(-2147483647i - 1i)';
        return i < 0 ? `(${i}i)` : `${i}i`;
      }
      case 'uint32': case 'uint16': case 'uint8': return `${v >>> 0}u`;
      case 'bool': return v ? 'true' : 'false';
      default: throw unsupported(t);
    }
  }

  /** Keeps a narrow integer within its width (as i32/u32) after arithmetic that may overflow it. */
  private narrow(x: string, t: DType): string {
    switch (t) {
      case 'int8': return `((${x} << 24u) >> 24u)`;
      case 'int16': return `((${x} << 16u) >> 16u)`;
      case 'uint8': return `(${x} & 0xffu)`;
      case 'uint16': return `(${x} & 0xffffu)`;
      default: return x;
    }
  }

  expr(e: Expr): string {
    switch (e.k) {
      case 'const': return this.lit(e.value, e.dtype);
      case 'var': this.checkType(e.dtype); return this.varName(e);
      case 'load': {
        const b = e.buf as Buffer;
        this.checkType(b.dtype);
        this.useBuf(b, false);
        const x = `${this.bufName(b)}[${this.expr(e.idx[0])}]`;
        return b.dtype === 'bool' ? `(${x} != 0u)` : x;
      }
      case 'cast':
        if (e.a.k === 'load' && e.a.dtype === 'int64' && !UNSUPPORTED_DTYPES.has(e.dtype)) {
          // an int64 buffer read as an index: stored as i32
          const b = e.a.buf as Buffer;
          this.useBuf(b, false);
          return this.cast(`${this.bufName(b)}[${this.expr(e.a.idx[0])}]`, 'int32', e.dtype);
        }
        return this.cast(this.expr(e.a), e.a.dtype, e.dtype);
      case 'select': return `select(${this.expr(e.b)}, ${this.expr(e.a)}, ${this.expr(e.c)})`;
      case 'un': return this.unary(e.op, e.a, e.dtype);
      case 'bin': return this.binary(e.op, e.a, e.b, e.dtype);
      case 'reduce': throw new KilnError('E_INTERNAL', 'wgsl: reduction left in loop IR');
    }
  }

  private cast(x: string, from: DType, to: DType): string {
    this.checkType(from); this.checkType(to);
    if (from === to) return x;
    if (to === 'bool') return from === 'bool' ? x : `(${x} != ${this.lit(0, from)})`;
    if (from === 'bool') return `select(${this.lit(0, to)}, ${this.lit(1, to)}, ${x})`;
    const vt = valueType(to);
    if (to === 'float32') return `f32(${x})`;
    if (from === 'float32') {
      // float -> narrow unsigned goes through i32 so that negative values wrap like a C cast
      if (to === 'uint8' || to === 'uint16') return this.narrow(`u32(i32(${x}))`, to);
      return this.narrow(`${vt}(${x})`, to);
    }
    return this.narrow(valueType(from) === vt ? x : `${vt}(${x})`, to);
  }

  private unary(op: string, a: Expr, t: DType): string {
    const x = this.expr(a);
    const float = a.dtype === 'float32', unsigned = valueType(a.dtype) === 'u32';
    switch (op) {
      case 'neg': return float ? `(-${x})` : this.narrow(unsigned ? `(0u - ${x})` : `(-${x})`, t);
      case 'abs': return unsigned ? x : float ? `abs(${x})` : this.narrow(`abs(${x})`, t);
      case 'sqrt': case 'floor': case 'ceil': case 'round': return float ? `${op}(${x})` : x;
      case 'not': return `(!${x})`;
      case 'bitnot': return this.narrow(`(~${x})`, t);
      case 'isnan': return float ? `${this.helper('kiln_isnan')}(${x})` : 'false';
      case 'sign': return float ? `sign(${x})` : unsigned ? `select(0u, 1u, ${x} != 0u)` : `sign(${x})`;
      case 'erf': return `${this.helper('kiln_erf')}(${x})`;
      case 'tanh': return `${this.helper('kiln_tanh')}(${x})`;
      case 'exp': case 'log': case 'sin': case 'cos': case 'tan': case 'asin': case 'acos': case 'atan':
      case 'sinh': case 'cosh': case 'asinh': case 'acosh': case 'atanh':
        if (!float) throw new KilnError('E_UNSUPPORTED', `wgsl: ${op} on ${a.dtype}`);
        return `${op}(${x})`;
    }
    throw new KilnError('E_UNSUPPORTED', `wgsl: unary ${op} on ${t}`);
  }

  private binary(op: string, ea: Expr, eb: Expr, t: DType): string {
    const at = ea.dtype;
    const a = this.expr(ea), b = this.expr(eb);
    const float = at === 'float32', bool = at === 'bool', unsigned = valueType(at) === 'u32';
    const infix = (o: string) => `(${a} ${o} ${b})`;
    switch (op) {
      case 'add': return float ? infix('+') : this.narrow(infix('+'), t);
      case 'sub': return float ? infix('-') : this.narrow(infix('-'), t);
      case 'mul': return float ? infix('*') : this.narrow(infix('*'), t);
      case 'div': return infix('/');
      case 'mod': return infix('%');
      case 'min': return bool ? infix('&&') : `min(${a}, ${b})`;
      case 'max': return bool ? infix('||') : `max(${a}, ${b})`;
      case 'pow':
        if (float) return `${this.helper('kiln_pow')}(${a}, ${b})`;
        return this.narrow(`${this.helper(unsigned ? 'kiln_ipow_u' : 'kiln_ipow_i')}(${a}, ${b})`, t);
      case 'and': return bool ? infix('&&') : infix('&');
      case 'or': return bool ? infix('||') : infix('|');
      case 'xor': return bool ? infix('!=') : infix('^');
      case 'shl': return this.narrow(`(${a} << u32(${b}))`, t);
      case 'shr': return `(${a} >> u32(${b}))`;
      case 'eq': return infix('==');
      case 'ne': return infix('!=');
      case 'lt': return infix('<');
      case 'le': return infix('<=');
      case 'gt': return infix('>');
      case 'ge': return infix('>=');
      case 'floordiv': return unsigned ? infix('/') : `${this.helper('kiln_floordiv')}(${a}, ${b})`;
      case 'floormod': return unsigned ? infix('%') : `${this.helper('kiln_floormod')}(${a}, ${b})`;
    }
    throw new KilnError('E_UNSUPPORTED', `wgsl: ${op} on ${at}`);
  }
}

/** Helper functions a shader includes when it uses them. */
const HELPERS: Record<string, string> = {
  // `var` keeps these out of constant evaluation, where infinities and NaNs are errors
  kiln_inf: 'fn kiln_inf() -> f32 { var b = 0x7f800000u; return bitcast<f32>(b); }',
  kiln_nan: 'fn kiln_nan() -> f32 { var b = 0x7fc00000u; return bitcast<f32>(b); }',
  kiln_isnan: 'fn kiln_isnan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }',
  kiln_floordiv: `fn kiln_floordiv(a: i32, b: i32) -> i32 {
  let q = a / b; let r = a % b;
  return select(q, q - 1i, r != 0i && ((r ^ b) < 0i));
}`,
  kiln_floormod: `fn kiln_floormod(a: i32, b: i32) -> i32 {
  let r = a % b;
  return select(r, r + b, r != 0i && ((r ^ b) < 0i));
}`,
  // pow with C semantics: negative bases with integral exponents, pow(x, 0) = 1, pow(0, y)
  kiln_pow: `fn kiln_pow(a: f32, b: f32) -> f32 {
  if (b == 0.0f) { return 1.0f; }
  if (a == 0.0f) { return select(kiln_inf(), 0.0f, b > 0.0f); }
  let r = pow(abs(a), b);
  if (a > 0.0f) { return r; }
  if (floor(b) != b) { return kiln_nan(); }
  return select(r, -r, floor(b * 0.5f) != b * 0.5f);
}`,
  kiln_ipow_i: `fn kiln_ipow_i(a: i32, b: i32) -> i32 {
  if (b < 0i) { return select(0i, select(1i, select(1i, -1i, (b & 1i) != 0i), a == -1i), a == 1i || a == -1i); }
  var r = 1i; var x = a; var e = b;
  loop { if (e == 0i) { break; } if ((e & 1i) != 0i) { r = r * x; } x = x * x; e = e >> 1u; }
  return r;
}`,
  kiln_ipow_u: `fn kiln_ipow_u(a: u32, b: u32) -> u32 {
  var r = 1u; var x = a; var e = b;
  loop { if (e == 0u) { break; } if ((e & 1u) != 0u) { r = r * x; } x = x * x; e = e >> 1u; }
  return r;
}`,
  // tanh through exp(-2|x|): no overflow for large |x|
  kiln_tanh: `fn kiln_tanh(x: f32) -> f32 {
  let t = exp(-2.0f * abs(x));
  let y = select((1.0f - t) / (1.0f + t), x * (1.0f - x * x / 3.0f), abs(x) < 0.0004f);
  return select(y, -y, x < 0.0f && abs(x) >= 0.0004f);
}`,
  // erf with fractional error below 1.2e-7 (Chebyshev fit of erfc, Numerical Recipes erfcc), as src/runtime/math.ts
  kiln_erf: `fn kiln_erf(x: f32) -> f32 {
  let z = abs(x);
  let t = 1.0f / (1.0f + 0.5f * z);
  let r = t * exp(-z * z - 1.26551223f + t * (1.00002368f + t * (0.37409196f + t * (0.09678418f +
    t * (-0.18628806f + t * (0.27886807f + t * (-1.13520398f + t * (1.48851587f + t * (-0.82215223f + t * 0.17087277f)))))))));
  return select(r - 1.0f, 1.0f - r, x >= 0.0f);
}`,
};
const HELPER_DEPS: Record<string, string[]> = { kiln_pow: ['kiln_inf', 'kiln_nan'] };

/** WGSL of every stage of a kernel, for `kiln inspect --level wgsl`. */
export function printWgslKernel(f: PrimFunc): string {
  return emitWgslKernel(f).map((s, i) =>
    `// ${f.name} stage ${i}: workgroup ${s.workgroupSize}, grid [${s.grid}], bindings [${s.bindings.map((b) => [...f.inputs, ...f.outputs, ...f.temps][b].name)}]\n${s.code}`).join('\n');
}
