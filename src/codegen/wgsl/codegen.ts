// Loop IR -> WGSL compute shaders plus launch metadata. One shader per top-level statement of a kernel (one per
// materialized stage under the default GPU schedule): the dispatch boundary is the global barrier between stages.
//
// Thread binding: the launch binder (common/launch.ts, the last loop pass) has replaced the loops bound to
// 'blockIdx.*' / 'threadIdx.*' by indices computed from the GPU index variables and given each stage its launch.
// blockIdx.x is the linear workgroup id wid.x + wid.y * nwg.x (the binder folds more than 65535 workgroups into
// dispatch y), threadIdx.x the local invocation index; the dispatch and @workgroup_size are the launch's.
//
// Types: float32 -> f32; int32 -> i32; uint32 -> u32. Narrow integers and bool are stored one per 32-bit word
// (int8/int16 as i32, uint8/uint16/bool as u32); the runtime widens inputs and weights on upload and narrows
// outputs on download. Arithmetic on narrow integers is i32/u32 arithmetic, wrapped to their width by the shared
// lowering (common/narrow.ts).
// WGSL has no 64-bit integers: the shared lowering (common/int64-pairs.ts, pass split-int64) has made every int64
// and uint64 value a pair of u32 words and every such buffer an array<u32> of twice the elements (the bytes of the
// host's BigInt64Array, so the runtime uploads and downloads them unchanged), with the WebAssembly target's
// semantics; the emitter sees no 64-bit value.
// float64 tensors are rejected with E_UNSUPPORTED (in models they mostly live in shape subgraphs, which constant
// folding removes); a float32 kernel whose operator computes in float64 internally does so in f32 (demoteF64).
//
// Uniforms: shapes are static in the loop IR, and a kernel compiled alone has every constant in its text. Across a
// model, shareWgslStages() finds stages whose text differs only in i32/u32/f32 literals (extents, strides, bounds,
// element counts, scalar arguments: the emitter writes each literal as a numbered slot and names variables and
// local buffers canonically) and gives each such group one shader: literals that are equal across the group stay
// inline (so a divisor that never varies stays a constant the shader compiler can strength-reduce), the others
// move to one uniform struct (`kiln_u`, after the storage bindings) whose values each stage carries. The runtime
// caches pipelines by text, so a group costs one pipeline. A stage without a twin keeps everything inline.
//
// vec4: four consecutive float32s move as one vec4<f32> where the loop IR proves it (src/codegen/lanes.ts: the index
// advances by one per lane and is a multiple of 4 at lane 0; every binding starts at its buffer's start, which
// WebGPU aligns to 256 bytes, and workgroup arrays of vec4 are 16-byte aligned). Two places carry such accesses:
//  - a 'vectorized' loop of 4 around one float32 store (the shared-memory fetch of a tiled matmul/conv, an
//    elementwise stage under the vec4 GPU schedule): its lane-consecutive aligned loads become vec4 loads, the four
//    lane values are computed (lane-invariant loads once), and the store is one vec4 store;
//  - four nested float32 locals initialized from one buffer at base+0..3 with base a multiple of 4 (the register
//    tile's preloads from shared memory): one vec4 load.
// WGSL cannot view an array<f32> binding as array<vec4<f32>>, so a buffer is declared array<vec4<f32>> when every
// access of the stage is such a vec4 (and its size a multiple of 4); a read-only storage buffer with scalar accesses
// too gets a second read-only binding of vec4 type on the same buffer (read-only aliasing is valid WebGPU), while
// the stage stays within the 8 storage bindings every device has. Otherwise its vec4 accesses stay scalar: a vec4
// store becomes four stores, a vec4 load four loads. All of it is decided at compile time from the loop IR.
import { BYTES, type DType } from '../../runtime/dtype.js';
import { TARGET_CAPS } from '../common/target-caps.js';
import { windowWords } from '../common/webgpu-profile.js';
import { WEBGPU_SPEC_DEFAULTS } from '../../runtime/webgpu-limits.js';
import { floorDivPass } from '../common/legalize.js';
import { mathExpandPass } from '../common/math-expand.js';
import { ExprIds, csePass, repeatedSubexpressions } from '../common/cse.js';
import { narrowPass } from '../common/narrow.js';
import { halfFloatPass } from '../common/half-float.js';
import { int64PairsPass } from '../common/int64-pairs.js';
import { LoopEmitter, type SelectExpr } from '../common/emitter.js';
import { bindLaunchPass } from '../common/launch.js';
import { KilnError } from '../../runtime/errors.js';
import { type BinOp, type Expr, type UnOp, type Var, mapExpr, printExpr, visitExpr } from '../../tensor-expr/expr.js';
import { fixVar } from '../../tensor-expr/simplify.js';
import {
  type Buffer,
  GPU_INDEX_VARS,
  type GpuLaunch,
  type PrimFunc,
  type Stmt,
  type ThreadTag,
  THREAD_TAGS,
  isThreadTag,
  kernelStages,
  mapStmtParts,
  visitStmt,
  visitStmtExprs,
  type AllocStmt,
  type AssignStmt,
  type DeclStmt,
  type ForStmt,
  type IfStmt,
  type StoreStmt,
} from '../../schedule/loop-ir.js';
import { type LoopPass, type LoopPassRun, runLoopPasses } from '../../schedule/loop-passes.js';
import { WEBGPU_LAUNCH_LIMITS } from '../../schedule/verify.js';
import { aligned4, alignedLaneBase, laneCoef } from '../lanes.js';

/** One dispatch: WGSL source, workgroup size, workgroup grid, and the kernel parameters it binds, in binding order. */
export interface WgslStage {
  code: string;
  workgroupSize: number;
  grid: [number, number, number];
  /** Kernel parameter index per binding: inputs, then outputs, then temps. */
  bindings: number[];
  /**
   * Window of the parameter per binding, where some parameter is larger than one binding may view: such a value
   * lives in several GPU buffers of `windowWords` words each, one binding apiece (absent: every binding window 0).
   */
  windows?: number[];
  /** Bindings the shader writes (read_write storage). */
  writes: number[];
  /** Values of the shader's uniform struct (binding `bindings.length`) as u32 words; absent when it has none. */
  uniforms?: number[];
  /** Bytes of workgroup memory the shader declares (its var<workgroup> arrays). */
  workgroupBytes?: number;
  /** The launch binder's: ids a run needs per block index (kernels for run-time sizes), x folded into y. */
  runIds?: GpuLaunch['runIds'];
  foldedX?: boolean;
}

/** A literal of a stage's text: the inline WGSL and its 32-bit value as a uniform word. */
interface Slot {
  text: string;
  type: 'i32' | 'u32' | 'f32';
  word: number;
}

/** A stage whose literals are numbered slots (`$n$` in `template`), before sharing decides which become uniforms. */
export interface WgslTemplate extends Omit<WgslStage, 'code' | 'uniforms'> {
  template: string;
  slots: Slot[];
}

const SLOT = /\$(\d+)\$/g;
const U_DECL = '$uniform-decl$',
  U_LETS = '$uniform-lets$';

/** The shader of a template with the slots in `lifted` (slot index -> uniform index) read from the uniform struct. */
function instantiate(t: WgslTemplate, lifted: ReadonlyMap<number, number>): WgslStage {
  const firstSlot = new Map<number, number>(); // uniform -> a slot it stands for
  for (const [slot, u] of lifted) if (!firstSlot.has(u)) firstSlot.set(u, slot);
  const n = firstSlot.size;
  const decl = n
    ? `struct KilnUniforms { v: array<vec4<u32>, ${Math.ceil(n / 4)}> }\n@group(0) @binding(${t.bindings.length}) var<uniform> kiln_u: KilnUniforms;`
    : '';
  const lets = [...firstSlot]
    .map(([u, slot]) => {
      const word = `kiln_u.v[${u >> 2}].${'xyzw'[u & 3]}`;
      const type = t.slots[slot].type;
      return `  let kiln_u${u}: ${type} = ${type === 'u32' ? word : `bitcast<${type}>(${word})`};`;
    })
    .join('\n');
  const code = t.template
    .replace(`${U_DECL}\n`, decl ? `${decl}\n` : '')
    .replace(`${U_LETS}\n`, lets ? `${lets}\n` : '')
    .replace(SLOT, (_, i) => {
      const u = lifted.get(Number(i));
      return u === undefined ? t.slots[Number(i)].text : `kiln_u${u}`;
    });
  const { template: _t, slots: _s, ...rest } = t;
  const stage: WgslStage = { ...rest, code };
  if (n) stage.uniforms = [...firstSlot.values()].map((slot) => t.slots[slot].word);
  return stage;
}

/** Every literal inline: the shader of a kernel compiled on its own. */
const inline = (t: WgslTemplate) => instantiate(t, new Map());

/**
 * Shaders for the stages of a whole program (any nesting, e.g. per kernel): stages whose templates are equal share
 * one shader text, with the literals that differ between them lifted into uniforms. Same shape as the input.
 */
export function shareWgslStages(kernels: readonly (readonly WgslTemplate[])[]): WgslStage[][] {
  const groups = new Map<string, WgslTemplate[]>();
  for (const t of kernels.flat()) {
    const g = groups.get(t.template);
    if (g) g.push(t);
    else groups.set(t.template, [t]);
  }
  const lifting = new Map<string, Map<number, number>>();
  for (const [key, g] of groups) {
    // slot -> uniform; slots whose values agree in every member (an extent and the stride it becomes) share one
    const lifted = new Map<number, number>(),
      byValues = new Map<string, number>();
    g[0].slots.forEach((s, i) => {
      if (g.every((t) => t.slots[i].text === s.text)) return;
      const values = `${s.type}:${g.map((t) => t.slots[i].text).join(',')}`;
      let u = byValues.get(values);
      if (u === undefined) {
        u = byValues.size;
        byValues.set(values, u);
      }
      lifted.set(i, u);
    });
    lifting.set(key, lifted);
  }
  return kernels.map((k) => k.map((t) => instantiate(t, lifting.get(t.template)!)));
}

/** Bits of a finite f32 as a u32 word. */
function f32Word(v: number): number {
  const f = new Float32Array([v]);
  return new Uint32Array(f.buffer)[0];
}

const CAPS = TARGET_CAPS.webgpu;

/** Tensor types the WebGPU target lacks (float64 intermediates of a kernel are computed in f32: demoteF64). */
const UNSUPPORTED_DTYPES: ReadonlySet<DType> = new Set(
  (Object.keys(BYTES) as DType[]).filter((t) => !CAPS.tensorDtypes.includes(t)),
);

/** WGSL value type of a loop-IR dtype. */
export function valueType(t: DType): string {
  switch (t) {
    case 'float32':
      return 'f32';
    case 'int32':
    case 'int16':
    case 'int8':
      return 'i32';
    case 'uint32':
    case 'uint16':
    case 'uint8':
      return 'u32';
    case 'bool':
      return 'bool';
    default:
      throw unsupported(t);
  }
}

/** WGSL element type of a storage buffer holding `t`. */
export function storageType(t: DType): string {
  return t === 'bool' ? 'u32' : valueType(t);
}

function unsupported(t: DType): KilnError {
  if (t === 'int64' || t === 'uint64') return new KilnError('E_INTERNAL', `wgsl: ${t} left after split-int64`);
  return new KilnError('E_UNSUPPORTED', `the WebGPU target has no ${t} (WGSL lacks 64-bit floats)`, {
    hint: "compile for target 'wasm', or keep float64 values in shape computations that fold to constants",
  });
}

/** What a WGSL kernel must fit: the storage bindings of one stage, and the words one binding may view. */
export interface WgslBindingLimits {
  /**
   * Storage buffers one stage may bind (maxStorageBuffersPerShaderStage), windows included: a vec4 alias binding is
   * added only within it. The program builder refits kernels whose stages bind more.
   */
  maxStorageBindings: number;
  /** A buffer of more words than this is bound as windows of this many words (see windowWords()). */
  windowWords: number;
}

/** The spec's defaults: what every WebGPU device allows. */
const DEFAULT_BINDING_LIMITS: WgslBindingLimits = {
  maxStorageBindings: WEBGPU_SPEC_DEFAULTS.maxStorageBuffersPerShaderStage,
  windowWords: windowWords(WEBGPU_SPEC_DEFAULTS),
};

/** Compiles a kernel to one WGSL shader per top-level statement, every constant inline. */
export function emitWgslKernel(f: PrimFunc, limits = DEFAULT_BINDING_LIMITS): WgslStage[] {
  return emitWgslTemplates(f, limits).map(inline);
}

/** A kernel's stages with numbered literal slots, for shareWgslStages(). */
export function emitWgslTemplates(f: PrimFunc, limits = DEFAULT_BINDING_LIMITS): WgslTemplate[] {
  for (const b of [...f.inputs, ...f.outputs]) if (UNSUPPORTED_DTYPES.has(b.dtype)) throw unsupported(b.dtype);
  f = runLoopPasses(f, WGSL_LOOP_PASSES, WGSL_LOOP_RUN);
  const params = [...f.inputs, ...f.outputs, ...f.temps];
  const launches = f.launches;
  if (!launches) throw new KilnError('E_INTERNAL', `wgsl: kernel ${f.name} has no launches (bind-launch)`);
  return kernelStages(f)
    .map((s, i) => new StageEmitter(params, limits).emit(s, launches[i]))
    .filter((s): s is WgslTemplate => s !== undefined);
}

/**
 * WGSL has no f64. A kernel whose tensors are narrower but whose operator computes in float64 internally (Resize
 * and GridSample coordinates, log-sum-exp, cumulative sums, Einsum accumulators) computes those intermediates, and
 * float64 temporaries between its stages, in f32, as WebGPU backends do; float64 tensors are rejected above.
 */
function demoteF64(f: PrimFunc): PrimFunc {
  const vars = new Map<Var, Var>(),
    bufs = new Map<Buffer, Buffer>();
  const T = (t: DType): DType => (t === 'float64' ? 'float32' : t);
  const v = (x: Var): Var => {
    if (x.dtype !== 'float64') return x;
    let y = vars.get(x);
    if (!y) {
      y = { ...x, dtype: 'float32' };
      vars.set(x, y);
    }
    return y;
  };
  const b = (x: Buffer): Buffer => {
    if (x.dtype !== 'float64') return x;
    let y = bufs.get(x);
    if (!y) {
      y = { ...x, dtype: 'float32' };
      bufs.set(x, y);
    }
    return y;
  };
  const e = (x: Expr): Expr => {
    switch (x.k) {
      case 'const':
        return x.dtype === 'float64' ? { ...x, dtype: 'float32' } : x;
      case 'var':
        return v(x);
      case 'bin':
        return { ...x, a: e(x.a), b: e(x.b), dtype: T(x.dtype) };
      case 'un':
        return { ...x, a: e(x.a), dtype: T(x.dtype) };
      case 'select':
        return { ...x, c: e(x.c), a: e(x.a), b: e(x.b), dtype: T(x.dtype) };
      case 'cast': {
        const a = e(x.a);
        return a.dtype === T(x.dtype) ? a : { ...x, a, dtype: T(x.dtype) };
      }
      case 'load':
        return { ...x, buf: b(x.buf as Buffer), idx: x.idx.map(e), dtype: T(x.dtype) };
      case 'reduce':
        return x;
    }
  };
  // inputs and outputs are not float64 here: they stay the same objects, which the emitter's parameters are
  return { ...f, temps: f.temps.map(b), body: mapStmtParts(f.body, { expr: e, buf: b, v }) };
}

/**
 * The loop-IR passes the WGSL backend runs before it emits: float64 demoted, then the shared lowering (common/).
 * split-int64 runs after narrow-integers (on WebGPU its float -> narrow casts go through int32: no new int64),
 * legalize-floordiv (which turns int64 floor division into div/mod for it to expand) and expand-math, and before cse
 * (which then shares what the words repeat across a statement) and bind-launch (last: it only replaces bound loops).
 */
export const WGSL_LOOP_PASSES: readonly LoopPass[] = [
  halfFloatPass(CAPS),
  { name: 'demote-float64', run: demoteF64 },
  narrowPass(CAPS),
  floorDivPass(CAPS),
  mathExpandPass(CAPS),
  int64PairsPass(CAPS),
  csePass(CAPS),
  bindLaunchPass(CAPS, { code: 'E_UNSUPPORTED', prefix: 'wgsl', block: 'workgroup', grid: 'dispatch' }),
];
/** What the verifier checks of a WGSL kernel (KILN_DEBUG=verify): register tiles indexed by constants, launch limits. */
export const WGSL_LOOP_RUN: LoopPassRun = {
  input: 'as lowered',
  check: { localIndex: 'constant', launch: WEBGPU_LAUNCH_LIMITS },
};

type Load = Extract<Expr, { k: 'load' }>;

/**
 * A 'vectorized' loop of 4 around one float32 store whose index is lane-consecutive and aligned at lane 0, possibly
 * under a condition that does not depend on the lane (a partial tile's bound on an outer axis).
 */
interface VecSite {
  lane: Var;
  guard?: Expr;
  store: StoreStmt;
  loads: Set<Load>;
}

const isF32Memory = (b: Buffer) => b.dtype === 'float32' && b.scope !== 'local';
/** Whether index `i` of a float32 buffer reads 4 consecutive elements from a multiple of 4 across `lane`. */
const vecIndex = (i: Expr, lane: Var) => alignedLaneBase(i, lane) !== undefined;

function vecSite(s: ForStmt): VecSite | undefined {
  if (s.kind !== 'vectorized' || s.extent !== 4) return undefined;
  let st = s.body,
    guard: Expr | undefined;
  if (st.k === 'if' && !st.else && laneCoef(st.cond, s.v) === 0) {
    guard = st.cond;
    st = st.then;
  }
  if (st.k !== 'store' || !isF32Memory(st.buf) || !vecIndex(st.index, s.v)) return undefined;
  const loads = new Set<Load>();
  visitExpr(st.value, (x) => {
    if (x.k === 'load' && isF32Memory(x.buf as Buffer) && x.idx.length === 1 && vecIndex(x.idx[0], s.v)) loads.add(x);
  });
  return { lane: s.v, ...(guard ? { guard } : {}), store: st, loads };
}

/** `e` as rest + constant (rest undefined: 0). */
function peelConst(e: Expr): { rest?: Expr; c: number } {
  if (e.k === 'const') return { c: Number(e.value) };
  if (e.k === 'bin' && e.op === 'add' && e.dtype === 'int32' && e.b.k === 'const')
    return { rest: e.a, c: Number(e.b.value) };
  return { rest: e, c: 0 };
}

/** Four nested float32 locals loaded from one buffer at base+0..3, base a multiple of 4 (register-tile preloads). */
function declGroup(s: DeclStmt): { decls: DeclStmt[]; buf: Buffer; base: Expr } | undefined {
  const decls: DeclStmt[] = [];
  let x: Stmt = s;
  for (let k = 0; k < 4; k++) {
    if (x.k !== 'decl' || x.init.k !== 'load' || x.v.dtype !== 'float32' || x.init.idx.length !== 1) return undefined;
    decls.push(x);
    x = x.body;
  }
  const loads = decls.map((d) => d.init as Load),
    buf = loads[0].buf as Buffer;
  if (!isF32Memory(buf) || loads.some((l) => l.buf !== buf)) return undefined;
  const parts = loads.map((l) => peelConst(l.idx[0]));
  const rest = parts[0].rest && printExpr(parts[0].rest);
  if (parts[0].c % 4 !== 0 || (parts[0].rest && !aligned4(parts[0].rest))) return undefined;
  if (parts.some((p, k) => (p.rest && printExpr(p.rest)) !== rest || p.c !== parts[0].c + k)) return undefined;
  return { decls, buf, base: loads[0].idx[0] };
}

class StageEmitter extends LoopEmitter<string, void> {
  protected readonly backend = 'wgsl';
  protected readonly caps = CAPS;
  /** Indentation of the lines being emitted. */
  private ind = '  ';
  private readonly lines: string[] = [];
  private readonly helpers = new Set<string>();
  private readonly used = new Map<Buffer, boolean>(); // buffer -> written
  private readonly names = new Map<Var, string>();
  private readonly shared: Buffer[] = [];
  private readonly slots: Slot[] = [];
  private readonly localNames = new Map<Buffer, string>();
  // inside a vec4 site: values its four lanes share, held in lets (by structural id)
  private readonly ids = new ExprIds();
  private readonly hoisted = new Map<number, string>();
  /** Variables some `assign` writes (a decl of any other is a `let`). */
  private readonly assigned = new Set<Var>();
  private lets = 0;
  // vec4: the buffers viewed as array<vec4<f32>> (their own binding, or a read-only alias binding)
  private readonly vecView = new Map<Buffer, 'own' | 'alias'>();

  constructor(
    private readonly params: readonly Buffer[],
    private readonly limits: WgslBindingLimits,
  ) {
    super();
  }

  /** Windows of a parameter larger than one binding may view (1: bound whole). */
  private windowCount(b: Buffer): number {
    return b.scope === 'global' && b.size > this.limits.windowWords ? Math.ceil(b.size / this.limits.windowWords) : 1;
  }

  /** `b[i]` as WGSL: a windowed buffer through its load helper. */
  private loadText(b: Buffer, i: string): string {
    return this.windowCount(b) > 1 ? `${this.bufName(b)}_ld(${i})` : `${this.bufName(b)}[${i}]`;
  }

  /** `b[i] = v;` as WGSL: a windowed buffer through its store helper. */
  private storeText(b: Buffer, i: string, v: string): string {
    return this.windowCount(b) > 1 ? `${this.bufName(b)}_st(${i}, ${v});` : `${this.bufName(b)}[${i}] = ${v};`;
  }

  /** The load (and, if written, store) functions of a windowed buffer: window w holds words [w*W, (w+1)*W). */
  private windowHelpers(b: Buffer, n: number, written: boolean): string[] {
    const W = this.limits.windowWords,
      name = this.bufName(b),
      t = storageType(b.dtype);
    const arm = (w: number, body: (x: string) => string) =>
      w === n - 1
        ? `  ${body(`${name}_w${w}[i - ${w * W}]`)}`
        : `  if (i < ${(w + 1) * W}) { ${body(`${name}_w${w}[i - ${w * W}]`)} }`;
    const arms = (body: (x: string) => string) => Array.from({ length: n }, (_, w) => arm(w, body));
    const out = [`fn ${name}_ld(i: i32) -> ${t} {`, ...arms((x) => `return ${x};`), '}'];
    if (written) out.push(`fn ${name}_st(i: i32, v: ${t}) {`, ...arms((x) => `${x} = v; return;`), '}');
    return out.map((l) => l.replace('[i - 0]', '[i]'));
  }

  emit(s: Stmt, launch: GpuLaunch): WgslTemplate | undefined {
    const { grid, block } = launch;
    if (grid.some((n) => n === 0)) return undefined; // nothing to compute
    const wg = block[0] * block[1] * block[2];
    // the GPU index variables the stage reads; the shape of the grid lives in literals and num_workgroups only, so
    // that stages of other shapes can share the text
    const used = new Set<ThreadTag>();
    visitStmtExprs(s, (e) =>
      visitExpr(e, (x) => {
        if (x.k === 'var' && isThreadTag(x.name) && x === GPU_INDEX_VARS[x.name]) used.add(x.name);
      }),
    );
    const linear = block[1] === 1 && block[2] === 1;
    const builtin: Record<ThreadTag, string> = {
      'blockIdx.x': launch.foldedX || grid[1] === 1 ? 'i32(wid.x + wid.y * nwg.x)' : 'i32(wid.x)',
      'blockIdx.y': 'i32(wid.y)',
      'blockIdx.z': 'i32(wid.z)',
      'threadIdx.x': linear ? 'i32(lidx)' : 'i32(lid.x)',
      'threadIdx.y': 'i32(lid.y)',
      'threadIdx.z': 'i32(lid.z)',
    };
    const pre: string[] = [];
    for (const tag of THREAD_TAGS) {
      if (!used.has(tag)) continue;
      const name =
        tag === 'blockIdx.x' ? 'kiln_block' : tag === 'threadIdx.x' ? 'kiln_thread' : `kiln_${tag.replace('.', '_')}`;
      this.names.set(GPU_INDEX_VARS[tag], name);
      pre.push(`  let ${name} = ${builtin[tag]};`);
    }
    this.planVec4(s);
    visitStmt(s, (x) => {
      if (x.k === 'assign') this.assigned.add(x.v);
    });
    this.stmt(s);

    const bindings: number[] = [],
      windows: number[] = [],
      writes: number[] = [],
      decls: string[] = [],
      windowFns: string[] = [];
    this.params.forEach((b, i) => {
      const written = this.used.get(b);
      if (written === undefined) return;
      const type = this.vecView.get(b) === 'own' ? 'vec4<f32>' : storageType(b.dtype);
      const access = written ? 'read_write' : 'read';
      const n = this.windowCount(b);
      if (written) writes.push(i);
      if (n === 1) {
        decls.push(
          `@group(0) @binding(${bindings.length}) var<storage, ${access}> ${this.bufName(b)}: array<${type}>;`,
        );
        bindings.push(i);
        windows.push(0);
        return;
      }
      for (let w = 0; w < n; w++) {
        decls.push(
          `@group(0) @binding(${bindings.length}) var<storage, ${access}> ${this.bufName(b)}_w${w}: array<${type}>;`,
        );
        bindings.push(i);
        windows.push(w);
      }
      windowFns.push(...this.windowHelpers(b, n, written));
    });
    this.params.forEach((b, i) => {
      if (this.vecView.get(b) !== 'alias' || this.used.get(b) !== false) return;
      decls.push(`@group(0) @binding(${bindings.length}) var<storage, read> ${this.bufName(b)}_v4: array<vec4<f32>>;`);
      bindings.push(i);
      windows.push(0);
    });

    for (const b of this.shared) {
      decls.push(
        this.vecView.get(b) === 'own'
          ? `var<workgroup> ${this.bufName(b)}: array<vec4<f32>, ${b.size / 4}>;`
          : `var<workgroup> ${this.bufName(b)}: array<${storageType(b.dtype)}, ${b.size}>;`,
      );
    }
    const template = [
      ...decls,
      U_DECL,
      ...windowFns,
      ...[...this.helpers].sort().map((h) => HELPERS[h]),
      `@compute @workgroup_size(${linear ? wg : block.join(', ')})`,
      `fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(${linear ? 'local_invocation_index) lidx: u32' : 'local_invocation_id) lid: vec3<u32>'}) {`,
      U_LETS,
      ...pre,
      ...this.lines,
      '}',
      '',
    ].join('\n');
    return {
      template,
      slots: this.slots,
      workgroupBytes: this.shared.reduce((n, b) => n + b.size * 4, 0),
      workgroupSize: wg,
      grid: [grid[0], grid[1], grid[2]],
      bindings,
      ...(windows.some((w) => w > 0) ? { windows } : {}),
      writes,
      ...(launch.runIds ? { runIds: launch.runIds } : {}),
      ...(launch.foldedX ? { foldedX: true } : {}),
    };
  }

  // Names are canonical within the stage (the loop IR's global counters dropped), so that kernels that differ only
  // in constants print the same text. Parameters keep theirs (in0, out0, t0: already positional).
  private bufName(b: Buffer): string {
    if (this.params.includes(b)) return `b_${b.name.replace(/\W/g, '_')}`;
    let n = this.localNames.get(b);
    if (!n) {
      n = `l_${b.name.replace(/\d+$/, '').replace(/\W/g, '_')}${this.localNames.size}`;
      this.localNames.set(b, n);
    }
    return n;
  }

  private varName(v: Var): string {
    let n = this.names.get(v);
    if (!n) {
      n = `v_${v.name.replace(/\d+$/, '').replace(/\W/g, '_')}${this.names.size}`;
      this.names.set(v, n);
    }
    return n;
  }

  /** A literal as a numbered slot: inline or a uniform, decided for the whole program by shareWgslStages(). */
  private slot(text: string, type: Slot['type'], word: number): string {
    this.slots.push({ text, type, word: word >>> 0 });
    return `$${this.slots.length - 1}$`;
  }

  private helper(name: string): string {
    const h = HELPERS[name];
    if (!h) throw new KilnError('E_INTERNAL', `wgsl: no helper ${name}`);
    if (!this.helpers.has(name)) {
      this.helpers.add(name);
      for (const dep of HELPER_DEPS[name] ?? []) this.helper(dep);
    }
    return name;
  }

  private useBuf(b: Buffer, write: boolean): void {
    if (b.scope === 'global') {
      if (!this.params.includes(b))
        throw new KilnError('E_INTERNAL', `wgsl: buffer ${b.name} is not a kernel parameter`);
      this.used.set(b, (this.used.get(b) ?? false) || write);
    }
  }

  /**
   * Decides which float32 buffers get a vec4 view: every access of the stage counted as the emitter will make it
   * (vec4 sites and preload groups as vec4, everything else scalar).
   */
  private planVec4(s: Stmt): void {
    const acc = new Map<Buffer, { vec: number; scalar: number; written: boolean }>();
    const note = (b: Buffer, vec: boolean, write = false) => {
      const a = acc.get(b) ?? { vec: 0, scalar: 0, written: false };
      if (vec) a.vec++;
      else a.scalar++;
      a.written ||= write;
      acc.set(b, a);
    };
    const loads = (e: Expr, skip?: ReadonlySet<Load>) =>
      visitExpr(e, (x) => {
        if (x.k === 'load') note(x.buf as Buffer, !!skip?.has(x));
      });
    const walk = (x: Stmt): void => {
      switch (x.k) {
        case 'seq':
          x.body.forEach(walk);
          return;
        case 'for': {
          const site = vecSite(x);
          if (!site) {
            walk(x.body);
            return;
          }
          note(site.store.buf, true, true);
          if (site.guard) loads(site.guard);
          loads(site.store.index);
          loads(site.store.value, site.loads);
          return;
        }
        case 'store':
          note(x.buf, false, true);
          loads(x.index);
          loads(x.value);
          return;
        case 'if':
          loads(x.cond);
          walk(x.then);
          if (x.else) walk(x.else);
          return;
        case 'decl': {
          const g = declGroup(x);
          if (!g) {
            loads(x.init);
            walk(x.body);
            return;
          }
          note(g.buf, true);
          g.decls.forEach((d) =>
            visitExpr((d.init as Load).idx[0], (y) => {
              if (y.k === 'load') note(y.buf as Buffer, false);
            }),
          );
          walk(g.decls[3].body);
          return;
        }
        case 'assign':
          loads(x.value);
          return;
        case 'alloc':
          walk(x.body);
          return;
        case 'barrier':
          return;
      }
    };
    walk(s);
    let storage = [...acc.keys()].filter((b) => b.scope === 'global').reduce((n, b) => n + this.windowCount(b), 0);
    for (const [b, a] of acc) {
      if (!a.vec || b.size % 4 !== 0 || b.size < 4 || !isF32Memory(b) || this.windowCount(b) > 1) continue;
      if (!a.scalar) this.vecView.set(b, 'own');
      else if (b.scope === 'global' && !a.written && storage < this.limits.maxStorageBindings) {
        this.vecView.set(b, 'alias');
        storage++;
      }
    }
  }

  /** The vec4 view of `b` (an expression to index with i >> 2), or undefined when `b` has none. */
  private vec4Of(b: Buffer): string | undefined {
    const v = this.vecView.get(b);
    if (!v) return undefined;
    this.useBuf(b, false);
    return v === 'own' ? this.bufName(b) : `${this.bufName(b)}_v4`;
  }

  /** A vec4 site: vec4 loads, the four lane values, one vec4 store (or four stores when the target has no vec4 view). */
  private emitVecSite(site: VecSite): void {
    const ind = this.ind,
      L = this.lines,
      { lane, store } = site;
    L.push(site.guard ? `${ind}if (${this.expr(site.guard)}) {` : `${ind}{`);
    const in2 = `${ind}  `;
    // each vec4 load once, its lanes as variables named after the components
    const comps = new Map<Load, Var[]>(),
      byText = new Map<string, Var[]>();
    for (const ld of site.loads) {
      const view = this.vec4Of(ld.buf as Buffer);
      if (!view) continue;
      const i0 = fixVar(ld.idx[0], lane, 0);
      const key = `${this.bufName(ld.buf as Buffer)}[${printExpr(i0)}]`;
      let vs = byText.get(key);
      if (!vs) {
        const q = `q${this.lets++}`;
        L.push(`${in2}let ${q} = ${view}[(${this.expr(i0)}) >> 2u];`);
        vs = [0, 1, 2, 3].map(() => ({ k: 'var', name: q, dtype: 'float32' }) as Var);
        vs.forEach((v, k) => this.names.set(v, `${q}.${'xyzw'[k]}`));
        byText.set(key, vs);
      }
      comps.set(ld, vs);
    }
    const values = [0, 1, 2, 3].map((k) =>
      fixVar(
        mapExpr(store.value, (x) => (x.k === 'load' ? comps.get(x)?.[k] : undefined)),
        lane,
        k,
      ),
    );
    const index0 = fixVar(store.index, lane, 0);
    // loads that do not depend on the lane (a broadcast operand) once
    const laneLoads = new Map<number, { e: Expr; lanes: Set<number> }>();
    values.forEach((v, k) =>
      visitExpr(v, (x) => {
        if (x.k !== 'load') return;
        const id = this.ids.id(x);
        const r = laneLoads.get(id) ?? { e: x, lanes: new Set<number>() };
        r.lanes.add(k);
        laneLoads.set(id, r);
      }),
    );
    const added: number[] = [];
    for (const [id, r] of laneLoads) {
      if (r.lanes.size < 2 || this.hoisted.has(id)) continue;
      const name = `e${this.lets++}`;
      L.push(`${in2}let ${name} = ${this.expr(r.e)};`);
      this.hoisted.set(id, name);
      added.push(id);
    }
    added.push(...this.hoist([...values, index0], in2));
    const target = this.vecView.get(store.buf) === 'own' ? this.vec4Of(store.buf) : undefined;
    this.useBuf(store.buf, true);
    if (target) {
      const texts = values.map((v) => this.expr(v));
      const q = texts[0].endsWith('.x') && texts[0].slice(0, -2);
      const whole = q && texts.every((t, k) => t === `${q}.${'xyzw'[k]}`) ? q : `vec4<f32>(${texts.join(', ')})`;
      L.push(`${in2}${target}[(${this.expr(index0)}) >> 2u] = ${whole};`);
    } else {
      values.forEach((v, k) =>
        L.push(`${in2}${this.storeText(store.buf, this.expr(fixVar(store.index, lane, k)), this.expr(v))}`),
      );
    }
    for (const id of added) this.hoisted.delete(id);
    L.push(`${ind}}`);
  }

  /** Emits lets for the values of a vec4 site's lanes that several of them (or one several times) use. */
  private hoist(roots: Expr[], ind: string): number[] {
    const added: number[] = [];
    for (const e of repeatedSubexpressions(roots, this.ids)) {
      const id = this.ids.id(e);
      if (this.hoisted.has(id)) continue;
      const name = `e${this.lets++}`;
      this.lines.push(`${ind}let ${name} = ${this.expr(e)};`);
      this.hoisted.set(id, name);
      added.push(id);
    }
    return added;
  }

  /** Emits `f`'s lines one level deeper. */
  private nested(f: () => void): void {
    const outer = this.ind;
    this.ind = `${outer}  `;
    f();
    this.ind = outer;
  }

  private line(text: string): void {
    this.lines.push(`${this.ind}${text}`);
  }

  // ---- statements (the walk is LoopEmitter's)
  protected emitSeq(body: readonly Stmt[]): void {
    for (const b of body) this.stmt(b);
  }

  protected emitLoop(s: ForStmt): void {
    if (isThreadTag(s.kind))
      throw new KilnError('E_INTERNAL', `wgsl: loop ${s.v.name} bound to ${s.kind} left after bind-launch`);
    const site = vecSite(s);
    if (site && (this.vecView.has(site.store.buf) || [...site.loads].some((l) => this.vecView.has(l.buf as Buffer)))) {
      this.emitVecSite(site);
      return;
    }
    const v = this.varName(s.v);
    this.line(`for (var ${v}: i32 = 0i; ${v} < ${this.lit(s.extent, 'int32')}; ${v}++) {`);
    this.nested(() => this.stmt(s.body));
    this.line('}');
  }

  protected emitStore(s: StoreStmt): void {
    this.useBuf(s.buf, true);
    if (this.vecView.get(s.buf) === 'own')
      throw new KilnError('E_INTERNAL', `wgsl: scalar store to ${s.buf.name}, which the stage views as vec4`);
    const idx = this.expr(s.index);
    const val = this.expr(s.value);
    this.line(this.storeText(s.buf, idx, s.buf.dtype === 'bool' ? `select(0u, 1u, ${val})` : val));
  }

  protected emitIf(s: IfStmt): void {
    this.line(`if (${this.expr(s.cond)}) {`);
    this.nested(() => this.stmt(s.then));
    if (s.else) {
      const els = s.else;
      this.line('} else {');
      this.nested(() => this.stmt(els));
    }
    this.line('}');
  }

  protected emitDecl(s: DeclStmt): void {
    this.checkType(s.v.dtype);
    const g = declGroup(s),
      view = g && this.vec4Of(g.buf);
    if (g && view) {
      const q = `q${this.lets++}`;
      this.line(`let ${q} = ${view}[(${this.expr(g.base)}) >> 2u];`);
      g.decls.forEach((d, k) => this.line(`var ${this.varName(d.v)}: f32 = ${q}.${'xyzw'[k]};`));
      this.stmt(g.decls[3].body);
      return;
    }
    const kind = this.assigned.has(s.v) ? 'var' : 'let';
    this.line(`${kind} ${this.varName(s.v)}: ${valueType(s.v.dtype)} = ${this.expr(s.init)};`);
    this.stmt(s.body);
  }

  protected emitAssign(s: AssignStmt): void {
    this.line(`${this.varName(s.v)} = ${this.expr(s.value)};`);
  }

  protected emitAlloc(s: AllocStmt): void {
    this.checkType(s.buf.dtype);
    if (s.buf.scope === 'local')
      this.line(`var ${this.bufName(s.buf)}: array<${storageType(s.buf.dtype)}, ${s.buf.size}>;`);
    else this.shared.push(s.buf);
    this.stmt(s.body);
  }

  protected emitBarrier(): void {
    this.line('workgroupBarrier();');
  }

  protected emitNothing(): void {}

  private checkType(t: DType): void {
    if (UNSUPPORTED_DTYPES.has(t)) throw unsupported(t);
  }

  private lit(value: number | bigint, t: DType): string {
    const v = Number(value);
    switch (t) {
      case 'float32': {
        if (Number.isNaN(v)) return `${this.helper('kiln_nan')}()`;
        if (!Number.isFinite(v)) return v > 0 ? `${this.helper('kiln_inf')}()` : `(-${this.helper('kiln_inf')}())`;
        if (Object.is(v, -0)) return '(-0.0f)';
        const s = String(Math.abs(v));
        return this.slot(v < 0 ? `(-${s}f)` : `${s}f`, 'f32', f32Word(v));
      }
      case 'int32':
      case 'int16':
      case 'int8': {
        const i = v | 0;
        return this.slot(i === -2147483648 ? '(-2147483647i - 1i)' : i < 0 ? `(${i}i)` : `${i}i`, 'i32', i);
      }
      case 'uint32':
      case 'uint16':
      case 'uint8':
        return this.slot(`${v >>> 0}u`, 'u32', v >>> 0);
      case 'bool':
        return v ? 'true' : 'false';
      default:
        throw unsupported(t);
    }
  }

  // ---- expressions (the dispatch is LoopEmitter's)
  protected override reuse(e: Expr): string | undefined {
    return this.hoisted.size ? this.hoisted.get(this.ids.id(e)) : undefined;
  }

  protected constant(value: number | bigint, t: DType): string {
    return this.lit(value, t);
  }

  protected variable(v: Var): string {
    this.checkType(v.dtype);
    return this.varName(v);
  }

  protected load(b: Buffer, index: Expr): string {
    this.checkType(b.dtype);
    this.useBuf(b, false);
    if (this.vecView.get(b) === 'own')
      throw new KilnError('E_INTERNAL', `wgsl: scalar load of ${b.name}, which the stage views as vec4`);
    const x = this.loadText(b, this.expr(index));
    return b.dtype === 'bool' ? `(${x} != 0u)` : x;
  }

  /** WGSL evaluates both arms of its select (TargetCaps.speculation 'any': nothing it evaluates traps). */
  protected select(e: SelectExpr): string {
    return `select(${this.expr(e.b)}, ${this.expr(e.a)}, ${this.expr(e.c)})`;
  }

  protected selectByBranch(e: SelectExpr): string {
    return this.select(e);
  }

  protected cast(x: string, from: DType, to: DType): string {
    this.checkType(from);
    this.checkType(to);
    if (from === to) return x;
    if (to === 'bool') return from === 'bool' ? x : `(${x} != ${this.lit(0, from)})`;
    if (from === 'bool') return `select(${this.lit(0, to)}, ${this.lit(1, to)}, ${x})`;
    const vt = valueType(to);
    if (to === 'float32') return `f32(${x})`;
    // narrow integers are in range already (common/narrow.ts): a cast between them and i32/u32 moves bits
    return valueType(from) === vt ? x : `${vt}(${x})`;
  }

  protected unary(op: UnOp, a: Expr, t: DType): string {
    const x = this.expr(a);
    const float = a.dtype === 'float32',
      unsigned = valueType(a.dtype) === 'u32';
    const prefix = PREFIX[op];
    if (prefix && !(op === 'neg' && unsigned)) return `(${prefix}${x})`;
    switch (op) {
      case 'neg':
        return `(0u - ${x})`;
      case 'abs':
        return unsigned ? x : `abs(${x})`;
      case 'sqrt':
      case 'floor':
      case 'ceil':
      case 'round':
        return float ? `${op}(${x})` : x;
      case 'isnan':
        return float ? `${this.helper('kiln_isnan')}(${x})` : 'false';
      case 'bitcast':
        return `bitcast<${valueType(t)}>(${x})`;
      case 'sign':
        return unsigned ? `select(0u, 1u, ${x} != 0u)` : `sign(${x})`;
    }
    // the builtins among the math functions (CAPS.nativeMath); the shared lowering expanded the others
    if (float && (CAPS.nativeMath as readonly string[]).includes(op)) return `${op}(${x})`;
    throw new KilnError('E_UNSUPPORTED', `wgsl: unary ${op} on ${t}`);
  }

  protected binary(op: BinOp, ea: Expr, eb: Expr): string {
    const at = ea.dtype;
    const a = this.expr(ea),
      b = this.expr(eb);
    const float = at === 'float32',
      unsigned = valueType(at) === 'u32';
    if (float && op === 'mod') return `${this.helper('kiln_fmod')}(${a}, ${b})`;
    if (op === 'pow')
      return `${this.helper(float ? 'kiln_pow' : unsigned ? 'kiln_ipow_u' : 'kiln_ipow_i')}(${a}, ${b})`;
    // WGSL shifts by a u32 amount
    if (op === 'shl' || op === 'shr') return `(${a} ${INFIX[op]} u32(${b}))`;
    const o = (at === 'bool' && BOOL_INFIX[op]) || INFIX[op] || (unsigned && UNSIGNED_INFIX[op]);
    if (o) return `(${a} ${o} ${b})`;
    if (op === 'min' || op === 'max') return `${op}(${a}, ${b})`;
    // signed floordiv/floormod: legalized into div/mod before emission (common/legalize.ts)
    throw new KilnError('E_UNSUPPORTED', `wgsl: ${op} on ${at}`);
  }
}

/** Unary ops that are a WGSL prefix operator (unsigned neg is `0u - x`). */
const PREFIX: Partial<Record<UnOp, string>> = { neg: '-', not: '!', bitnot: '~' };
/** Binary ops that are a WGSL infix operator. */
const INFIX: Partial<Record<BinOp, string>> = {
  add: '+',
  sub: '-',
  mul: '*',
  div: '/',
  mod: '%',
  and: '&',
  or: '|',
  xor: '^',
  shl: '<<',
  shr: '>>',
  eq: '==',
  ne: '!=',
  lt: '<',
  le: '<=',
  gt: '>',
  ge: '>=',
};
/**
 * On bool, where they differ: the non-short-circuit forms (`&&`/`||` inside expressions branch, which SwiftShader's
 * compiler takes minutes over in index-heavy kernels).
 */
const BOOL_INFIX: Partial<Record<BinOp, string>> = { min: '&', max: '|', xor: '!=' };
/** Floor division of unsigned integers is truncating division. */
const UNSIGNED_INFIX: Partial<Record<BinOp, string>> = { floordiv: '/', floormod: '%' };

/** Helper functions a shader includes when it uses them. */
const HELPERS: Record<string, string> = {
  // `var` keeps these out of constant evaluation, where infinities and NaNs are errors
  kiln_inf: 'fn kiln_inf() -> f32 { var b = 0x7f800000u; return bitcast<f32>(b); }',
  kiln_nan: 'fn kiln_nan() -> f32 { var b = 0x7fc00000u; return bitcast<f32>(b); }',
  // WGSL's float % is a - b * trunc(a / b): NaN on GPUs for an infinite divisor, where C's fmod gives a
  kiln_fmod: `fn kiln_fmod(a: f32, b: f32) -> f32 {
  let b_inf = (bitcast<u32>(b) & 0x7fffffffu) == 0x7f800000u;
  let a_finite = (bitcast<u32>(a) & 0x7fffffffu) < 0x7f800000u;
  return select(a % b, a, b_inf & a_finite);
}`,
  kiln_isnan: 'fn kiln_isnan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }',
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
  if (b < 0i) { return select(0i, select(1i, select(1i, -1i, (b & 1i) != 0i), a == -1i), (a == 1i) | (a == -1i)); }
  var r = 1i; var x = a; var e = b;
  loop { if (e == 0i) { break; } if ((e & 1i) != 0i) { r = r * x; } x = x * x; e = e >> 1u; }
  return r;
}`,
  kiln_ipow_u: `fn kiln_ipow_u(a: u32, b: u32) -> u32 {
  var r = 1u; var x = a; var e = b;
  loop { if (e == 0u) { break; } if ((e & 1u) != 0u) { r = r * x; } x = x * x; e = e >> 1u; }
  return r;
}`,
};
const HELPER_DEPS: Record<string, string[]> = {
  kiln_pow: ['kiln_inf', 'kiln_nan'],
};

/** WGSL of every stage of a kernel compiled on its own (every constant inline). */
export function printWgslKernel(f: PrimFunc): string {
  return emitWgslKernel(f)
    .map(
      (s, i) =>
        `// ${f.name} stage ${i}: workgroup ${s.workgroupSize}, grid [${s.grid}], bindings [${s.bindings.map((b) => [...f.inputs, ...f.outputs, ...f.temps][b].name)}]\n${s.code}`,
    )
    .join('\n');
}
