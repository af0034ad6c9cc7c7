// Loop IR -> one WebAssembly module through binaryen. Every kernel becomes an exported function taking one i32
// byte address per input and output buffer (and one for its scratch area); memory is imported so the runtime
// owns its layout. Transcendentals come from the "math" import module (src/runtime/math.ts).
import binaryen from 'binaryen';
import { BYTES, type DType, isFloat, isUnsigned, isWide } from '../../runtime/dtype.js';
import { UNARY_MATH, BINARY_MATH } from '../../runtime/math.js';
import { type Expr, type Var, type BinOp, mentions, printExpr } from '../../tensor-expr/expr.js';
import { bound, type Interval } from '../../tensor-expr/simplify.js';
import {
  type Buffer,
  type PrimFunc,
  type Stmt,
  kernelStages,
  parallelLoop,
  type AllocStmt,
  type AssignStmt,
  type DeclStmt,
  type ForStmt,
  type IfStmt,
  type StoreStmt,
} from '../../schedule/loop-ir.js';
import { type LoopPass, type LoopPassRun, runLoopPasses, stagePass } from '../../schedule/loop-passes.js';
import { KilnError } from '../../runtime/errors.js';
import { scratchLayout } from '../../compiler/memory-plan.js';
import { halfFloatPass } from '../common/half-float.js';
import { LoopEmitter, type SelectExpr } from '../common/emitter.js';
import { TARGET_CAPS } from '../common/target-caps.js';
import { type HoistForm, type ScalarEmitter, vectorizeExpr, vectorizeLoop } from './vectorize.js';
import { unrollLoops } from '../../schedule/passes/unroll.js';
import { hoistIndexArithmetic } from '../../schedule/passes/hoist-index.js';
import { hoistLoopInvariantValues } from '../../schedule/passes/hoist-values.js';
import { partitionLoops } from '../../schedule/passes/partition.js';
import { narrowPass } from '../common/narrow.js';
import { floorDivPass } from '../common/legalize.js';
import { INLINE_F32_MATH, type InlineMathFn, inlineF32Math } from './math-inline.js';

type Ref = number;
const B = binaryen;

// Unary and binary ops as binaryen method names (the i64 methods are named as the i32 ones). Signed integer
// floordiv and floormod are legalized to div/mod before emission (common/legalize.ts); pow and float mod are math
// imports.
type F32Ops = binaryen.Module['f32'];
type F64Ops = binaryen.Module['f64'];
type IntOps = binaryen.Module['i32'];
/** The methods of `Ops` that take one expression. */
type UnaryName<Ops> = {
  [K in keyof Ops]: Ops[K] extends (a: Ref) => Ref ? (Parameters<Ops[K]>['length'] extends 1 ? K : never) : never;
}[keyof Ops];
const FLOAT_UNARY: Readonly<Partial<Record<string, UnaryName<F32Ops> & UnaryName<F64Ops>>>> = {
  neg: 'neg',
  abs: 'abs',
  sqrt: 'sqrt',
  floor: 'floor',
  ceil: 'ceil',
  round: 'nearest',
};
/** The methods of `Ops` that take two expressions. */
type BinaryName<Ops> = {
  [K in keyof Ops]: Ops[K] extends (a: Ref, b: Ref) => Ref
    ? Parameters<Ops[K]>['length'] extends 2
      ? K
      : never
    : never;
}[keyof Ops];
const FLOAT_BINARY: Readonly<Partial<Record<BinOp, BinaryName<F32Ops> & BinaryName<F64Ops>>>> = {
  add: 'add',
  sub: 'sub',
  mul: 'mul',
  div: 'div',
  min: 'min',
  max: 'max',
  eq: 'eq',
  ne: 'ne',
  lt: 'lt',
  le: 'le',
  gt: 'gt',
  ge: 'ge',
};
/** [signed, unsigned] */
const INT_BINARY: Readonly<Partial<Record<BinOp, readonly [BinaryName<IntOps> | undefined, BinaryName<IntOps>]>>> = {
  add: ['add', 'add'],
  sub: ['sub', 'sub'],
  mul: ['mul', 'mul'],
  div: ['div_s', 'div_u'],
  mod: ['rem_s', 'rem_u'],
  floordiv: [undefined, 'div_u'],
  floormod: [undefined, 'rem_u'],
  and: ['and', 'and'],
  or: ['or', 'or'],
  xor: ['xor', 'xor'],
  shl: ['shl', 'shl'],
  shr: ['shr_s', 'shr_u'],
  eq: ['eq', 'eq'],
  ne: ['ne', 'ne'],
  lt: ['lt_s', 'lt_u'],
  le: ['le_s', 'le_u'],
  gt: ['gt_s', 'gt_u'],
  ge: ['ge_s', 'ge_u'],
};

export const wasmType = (t: DType): number =>
  t === 'float32' ? B.f32 : t === 'float64' ? B.f64 : isWide(t) ? B.i64 : B.i32;

export interface WasmModuleOptions {
  optimize?: boolean;
  /** Use relaxed-SIMD f32x4.relaxed_madd for vector multiply-adds (engines without relaxed SIMD reject it). */
  relaxed?: boolean;
  /**
   * Per function, whether its calls pass a scratch region (memory-plan.ts kernelScratchBytes: its own, or its native
   * variant's): a function without scratch of its own then takes that parameter unused. Default: where it has scratch.
   */
  scratchParams?: readonly boolean[];
}

export function emitWasmModule(funcs: readonly PrimFunc[], opts: WasmModuleOptions = {}): Uint8Array {
  const m = new B.Module();
  try {
    m.setFeatures(
      B.Features.SIMD128 |
        B.Features.NontrappingFPToInt |
        B.Features.SignExt |
        B.Features.BulkMemory |
        B.Features.MutableGlobals |
        (opts.relaxed ? B.Features.RelaxedSIMD : 0),
    );
    m.setMemory(1, 65536, null, [], false, false, 'mem');
    m.addMemoryImport('mem', 'env', 'memory');
    for (const name of Object.keys(UNARY_MATH)) m.addFunctionImport(`math_${name}`, 'math', name, B.f64, B.f64);
    for (const name of Object.keys(BINARY_MATH))
      m.addFunctionImport(`math_${name}`, 'math', name, B.createType([B.f64, B.f64]), B.f64);
    funcs.forEach((f, i) =>
      new FunctionEmitter(
        m,
        runLoopPasses(f, WASM_LOOP_PASSES, WASM_LOOP_RUN),
        opts.relaxed ?? false,
        opts.scratchParams?.[i] ?? false,
      ).emit(),
    );
    if (!m.validate())
      throw new KilnError('E_INTERNAL', 'generated WebAssembly failed validation', {
        hint: 'please report this with the model',
      });
    if (opts.optimize !== false) {
      B.setOptimizeLevel(2);
      B.setShrinkLevel(0);
      m.optimize();
    }
    return m.emitBinary();
  } finally {
    m.dispose();
  }
}

/**
 * The loop-IR passes the WebAssembly backend runs before it emits, phase by phase (the phases the runtime calls
 * must stay as they are): narrow integers widened to i32 (common/narrow.ts), loops split at padded borders (their
 * interiors lose the bounds checks), then loop-invariant values and index arithmetic hoisted (engines do little
 * loop-invariant code motion on wasm).
 */
export const WASM_LOOP_RUN: LoopPassRun = { input: 'as lowered' };
export const WASM_LOOP_PASSES: readonly LoopPass[] = [
  halfFloatPass(TARGET_CAPS.wasm),
  narrowPass(TARGET_CAPS.wasm),
  floorDivPass(TARGET_CAPS.wasm),
  stagePass('partition-loops', (s) => partitionLoops(s)),
  stagePass('hoist-loop-invariant-values', hoistLoopInvariantValues),
  stagePass('hoist-index-arithmetic', hoistIndexArithmetic),
];

/** Prints the module as WebAssembly text (for `kiln inspect --level wasm`). */
export function wasmText(bytes: Uint8Array): string {
  const m = B.readBinary(bytes);
  try {
    return m.emitText();
  } finally {
    m.dispose();
  }
}

export class FunctionEmitter extends LoopEmitter<Ref, Ref> implements ScalarEmitter {
  protected readonly backend = 'wasm';
  protected readonly caps = TARGET_CAPS.wasm;
  private readonly locals: number[] = [];
  private readonly varLocal = new Map<Var, number>();
  private readonly bufPtr = new Map<Buffer, () => Ref>();
  /** Local-scope buffers live in wasm locals: float32 ones as v128 registers of 4 lanes, others one local each. */
  readonly localBufs = new Map<Buffer, number[]>();
  private readonly nParams: number;
  private labels = 0;
  /** Values hoisted out of a block of register-tile updates: key (lane-vector or scalar + text) -> local. */
  private readonly hoisted = new Map<string, { local: number; type: number }>();
  /** Inside a block of register-tile updates: vector values the updates share, by key (vectorize.ts pairDot). */
  tileValues: Map<string, number> | undefined;
  /** Value ranges of the loop variables and index locals in scope (for speculative vector loads). */
  readonly ranges = new Map<Var, Interval>();

  /** Parameter indices of (phase, chunk, nchunks): see kernelPhases. */
  private readonly phaseParam: number;
  /** The loop whose iterations are cut into chunks in the phase being emitted. */
  private chunkLoop: Stmt | undefined;

  constructor(
    readonly m: binaryen.Module,
    readonly f: PrimFunc,
    readonly relaxed = false,
    /** Take a scratch parameter even without scratch of its own (WasmModuleOptions.scratchParams). */
    scratchParam = false,
  ) {
    super();
    const params = [...f.inputs, ...f.outputs];
    params.forEach((b, i) => this.bufPtr.set(b, () => m.local.get(i, B.i32)));
    const { offsets, bytes, shared, sharedAt, chunkStride } = scratchLayout(f);
    const scratch = params.length;
    this.phaseParam = params.length + (bytes > 0 || scratchParam ? 1 : 0);
    this.nParams = this.phaseParam + 3;
    for (const [t, off] of offsets) this.bufPtr.set(t, () => m.i32.add(m.local.get(scratch, B.i32), m.i32.const(off)));
    // a 'shared' buffer is private to the chunk this call runs: scratch + sharedAt + chunk * stride
    const chunk = () => m.local.get(this.phaseParam + 1, B.i32);
    for (const [t, off] of shared) {
      this.bufPtr.set(t, () =>
        m.i32.add(
          m.i32.add(m.local.get(scratch, B.i32), m.i32.const(sharedAt + off)),
          m.i32.mul(chunk(), m.i32.const(chunkStride)),
        ),
      );
    }
  }

  /**
   * A kernel is called as k(buffers..., [scratch], phase, chunk, nchunks). Each top-level statement is one phase;
   * the runtime runs phases in order with a barrier between them, and cuts a phase's parallel loop into
   * `nchunks` contiguous chunks, each call running chunk `chunk` (threads claim chunks until none is left).
   */
  emit(): void {
    const m = this.m;
    const phase = () => m.local.get(this.phaseParam, B.i32);
    const body = kernelStages(this.f).map((st, p) => {
      this.chunkLoop = parallelLoop(st);
      const code = this.stmt(st);
      this.chunkLoop = undefined;
      return m.if(m.i32.eq(phase(), m.i32.const(p)), code);
    });
    const params = B.createType(new Array(this.nParams).fill(B.i32));
    this.m.addFunction(this.f.name, params, B.none, this.locals, m.block(null, body, B.none));
    this.m.addFunctionExport(this.f.name, this.f.name);
  }

  newLocal(type: number): number {
    this.locals.push(type);
    return this.nParams + this.locals.length - 1;
  }

  local(v: Var): number {
    let i = this.varLocal.get(v);
    if (i === undefined) {
      i = this.newLocal(wasmType(v.dtype));
      this.varLocal.set(v, i);
    }
    return i;
  }

  label(): string {
    return `L${this.labels++}`;
  }

  ptr(b: Buffer): Ref {
    const p = this.bufPtr.get(b);
    if (!p) throw new KilnError('E_INTERNAL', `codegen: buffer ${b.name} has no address (scope ${b.scope})`);
    return p();
  }

  /** Byte address of element `index` of `b`. */
  addr(b: Buffer, index: Ref): Ref {
    const shift = Math.log2(BYTES[b.dtype]);
    return this.m.i32.add(this.ptr(b), shift ? this.m.i32.shl(index, this.m.i32.const(shift)) : index);
  }

  /**
   * Element `index` of `b` as a byte address and a constant offset for the memory access: a positive constant term
   * of the index becomes the access's offset (engines fold it into the addressing mode: an add less per access, and
   * a register tile's rows share one address). Only where the rest of the index is known to be >= 0, so that the
   * address cannot wrap where the whole index would not.
   */
  address(b: Buffer, index: Expr): { ptr: Ref; offset: number } {
    if (index.k === 'bin' && index.op === 'add' && index.b.k === 'const') {
      const c = Number(index.b.value),
        rest = bound(index.a, this.ranges);
      if (c > 0 && rest && rest.lo >= 0) return { ptr: this.addr(b, this.expr(index.a)), offset: c * BYTES[b.dtype] };
    }
    return { ptr: this.addr(b, this.expr(index)), offset: 0 };
  }

  /**
   * A hoisted value of `e`, or undefined: `form` 's' the scalar, 'v' the 4 lanes of a lane-dependent value, 'p' a
   * lane-invariant value splatted to 4 lanes.
   */
  cached(e: Expr, form: HoistForm): Ref | undefined {
    if (!this.hoisted.size || (e.k !== 'load' && e.k !== 'select')) return undefined;
    const h = this.hoisted.get(`${form}|${printExpr(e)}`);
    return h && this.m.local.get(h.local, h.type);
  }

  /**
   * A straight-line block of register-tile updates (stores to local buffers, possibly 4-lane loops): loads and
   * selects that several updates share are computed once at the top. Safe because the block writes no memory.
   */
  private tileBlock(body: readonly Stmt[]): Ref | undefined {
    const items = body.map((s) =>
      s.k === 'for' && s.kind === 'vectorized' && s.body.k === 'store'
        ? { st: s.body, v: s.v as Var | undefined }
        : { st: s, v: undefined },
    );
    if (body.length < 2 || !items.every((x) => x.st.k === 'store' && x.st.buf.scope === 'local')) return undefined;
    const counts = new Map<string, { e: Expr; v?: Var; n: number }>();
    const visit = (e: Expr, v: Var | undefined) => {
      if (e.k === 'load' && (e.buf as Buffer).scope === 'local') return;
      if (e.k === 'load' || e.k === 'select') {
        // inside a 4-lane update a lane-invariant value is used splatted: hoist the splat (one broadcast load
        // instead of a scalar load and a shuffle per use)
        const form: HoistForm = v === undefined ? 's' : mentions(e, v) ? 'v' : 'p';
        const key = `${form}|${printExpr(e)}`;
        const c = counts.get(key) ?? { e, v: form === 's' ? undefined : v, n: 0 };
        c.n++;
        counts.set(key, c);
      }
      // never look inside select arms: they may only run conditionally
      if (e.k === 'select') {
        visit(e.c, v);
        return;
      }
      if (e.k === 'bin') {
        visit(e.a, v);
        visit(e.b, v);
      } else if (e.k === 'un' || e.k === 'cast') visit(e.a, v);
    };
    for (const { st, v } of items) visit((st as StoreStmt).value, v);
    const sets: Ref[] = [];
    for (const [key, c] of counts) {
      if (c.n < 2) continue;
      const value = c.v ? vectorizeExpr(this, c.e, c.v) : this.expr(c.e);
      if (value === undefined) continue;
      const type = c.v ? B.v128 : wasmType(c.e.dtype);
      const local = this.newLocal(type);
      sets.push(this.m.local.set(local, value));
      this.hoisted.set(key, { local, type });
    }
    this.tileValues = new Map();
    const out = this.m.block(null, [...sets, ...body.map((x) => this.stmt(x))], B.none);
    this.tileValues = undefined;
    this.hoisted.clear();
    return out;
  }

  protected emitSeq(body: readonly Stmt[]): Ref {
    return (
      this.tileBlock(body) ??
      this.m.block(
        null,
        body.map((x) => this.stmt(x)),
        B.none,
      )
    );
  }

  protected emitStore(s: StoreStmt): Ref {
    if (s.buf.scope === 'local') return this.storeLocal(s.buf, s.index, this.expr(s.value));
    return this.store(s.buf, s.index, this.expr(s.value));
  }

  protected emitIf(s: IfStmt): Ref {
    return this.m.if(this.expr(s.cond), this.stmt(s.then), s.else ? this.stmt(s.else) : undefined);
  }

  protected emitDecl(s: DeclStmt): Ref {
    const r = bound(s.init, this.ranges);
    if (r) this.ranges.set(s.v, r);
    return this.m.block(null, [this.m.local.set(this.local(s.v), this.expr(s.init)), this.stmt(s.body)], B.none);
  }

  protected emitAssign(s: AssignStmt): Ref {
    return this.m.local.set(this.local(s.v), this.expr(s.value));
  }

  protected emitBarrier(): Ref {
    return this.m.nop(); // a chunk fills and reads its own shared buffers: nothing to wait for
  }

  protected emitNothing(): Ref {
    return this.m.nop();
  }

  protected emitAlloc(s: AllocStmt): Ref {
    if (s.buf.scope === 'shared') return this.stmt(s.body); // in the chunk's scratch (scratchLayout)
    // (int32 ones too: an integer kernel's accumulator tile, vectorize.ts vectorizeIntLoop)
    const vec = s.buf.dtype === 'float32' || s.buf.dtype === 'int32';
    const n = vec ? Math.ceil(s.buf.size / 4) : s.buf.size;
    this.localBufs.set(
      s.buf,
      Array.from({ length: n }, () => this.newLocal(vec ? B.v128 : wasmType(s.buf.dtype))),
    );
    return this.stmt(s.body);
  }

  protected emitLoop(s: ForStmt): Ref {
    const m = this.m;
    this.ranges.set(s.v, { lo: 0, hi: s.extent - 1 });
    if (s.kind === 'vectorized') {
      const v = vectorizeLoop(this, s);
      if (v !== undefined) return v;
      // scalar fallback, unrolled so that indices into local tiles stay constant
      if (s.extent <= 16) return this.stmt(unrollLoops({ ...s, kind: 'unrolled' }));
    }
    const i = this.local(s.v);
    if (s.kind === 'unrolled' && s.extent <= 16) {
      const body: Ref[] = [];
      for (let k = 0; k < s.extent; k++) body.push(m.local.set(i, m.i32.const(k)), this.stmt(s.body));
      return m.block(null, body, B.none);
    }
    const loop = this.label();
    if (s === this.chunkLoop) {
      // iterations [extent*chunk/nchunks, extent*(chunk+1)/nchunks)
      const p = this.phaseParam;
      const bound = (t: Ref) => m.i32.div_u(m.i32.mul(m.i32.const(s.extent), t), m.local.get(p + 2, B.i32));
      const end = this.newLocal(B.i32);
      return m.block(
        null,
        [
          m.local.set(i, bound(m.local.get(p + 1, B.i32))),
          m.local.set(end, bound(m.i32.add(m.local.get(p + 1, B.i32), m.i32.const(1)))),
          m.if(
            m.i32.lt_s(m.local.get(i, B.i32), m.local.get(end, B.i32)),
            m.loop(
              loop,
              m.block(
                null,
                [
                  this.stmt(s.body),
                  m.local.set(i, m.i32.add(m.local.get(i, B.i32), m.i32.const(1))),
                  m.br(loop, m.i32.lt_s(m.local.get(i, B.i32), m.local.get(end, B.i32))),
                ],
                B.none,
              ),
            ),
          ),
        ],
        B.none,
      );
    }
    return m.block(
      null,
      [
        m.local.set(i, m.i32.const(0)),
        m.loop(
          loop,
          m.block(
            null,
            [
              this.stmt(s.body),
              m.local.set(i, m.i32.add(m.local.get(i, B.i32), m.i32.const(1))),
              m.br(loop, m.i32.lt_s(m.local.get(i, B.i32), m.i32.const(s.extent))),
            ],
            B.none,
          ),
        ),
      ],
      B.none,
    );
  }

  /** Constant element index into a local buffer (tiles are indexed by unrolled/vectorized loops only). */
  localSlot(b: Buffer, index: Expr): number {
    if (index.k !== 'const')
      throw new KilnError(
        'E_INTERNAL',
        `codegen: local buffer ${b.name} indexed by a non-constant; unroll the loops over it`,
      );
    return Number(index.value);
  }

  private loadLocal(b: Buffer, index: Expr): Ref {
    const m = this.m,
      regs = this.localBufs.get(b)!,
      c = this.localSlot(b, index);
    if (b.dtype === 'float32') return m.f32x4.extract_lane(m.local.get(regs[c >> 2], B.v128), c & 3);
    if (b.dtype === 'int32') return m.i32x4.extract_lane(m.local.get(regs[c >> 2], B.v128), c & 3);
    return m.local.get(regs[c], wasmType(b.dtype));
  }

  private storeLocal(b: Buffer, index: Expr, value: Ref): Ref {
    const m = this.m,
      regs = this.localBufs.get(b)!,
      c = this.localSlot(b, index);
    if (b.dtype === 'float32')
      return m.local.set(regs[c >> 2], m.f32x4.replace_lane(m.local.get(regs[c >> 2], B.v128), c & 3, value));
    if (b.dtype === 'int32')
      return m.local.set(regs[c >> 2], m.i32x4.replace_lane(m.local.get(regs[c >> 2], B.v128), c & 3, value));
    return m.local.set(regs[c], value);
  }

  load(b: Buffer, index: Expr): Ref {
    if (b.scope === 'local') return this.loadLocal(b, index);
    const m = this.m,
      { ptr: a, offset: o } = this.address(b, index),
      al = BYTES[b.dtype];
    switch (b.dtype) {
      case 'float32':
        return m.f32.load(o, al, a);
      case 'float64':
        return m.f64.load(o, al, a);
      case 'int64':
      case 'uint64':
        return m.i64.load(o, al, a);
      case 'int32':
      case 'uint32':
        return m.i32.load(o, al, a);
      case 'int16':
        return m.i32.load16_s(o, al, a);
      case 'uint16':
        return m.i32.load16_u(o, al, a);
      case 'int8':
        return m.i32.load8_s(o, al, a);
      case 'uint8':
      case 'bool':
        return m.i32.load8_u(o, al, a);
      default:
        throw halfLeft(b.dtype);
    }
  }

  store(b: Buffer, index: Expr, value: Ref): Ref {
    const m = this.m,
      { ptr: a, offset: o } = this.address(b, index),
      al = BYTES[b.dtype];
    switch (b.dtype) {
      case 'float32':
        return m.f32.store(o, al, a, value);
      case 'float64':
        return m.f64.store(o, al, a, value);
      case 'int64':
      case 'uint64':
        return m.i64.store(o, al, a, value);
      case 'int32':
      case 'uint32':
        return m.i32.store(o, al, a, value);
      case 'int16':
      case 'uint16':
        return m.i32.store16(o, al, a, value);
      case 'int8':
      case 'uint8':
      case 'bool':
        return m.i32.store8(o, al, a, value);
      default:
        throw halfLeft(b.dtype);
    }
  }

  /** Evaluates `r` once into a fresh local; returns a getter usable several times. */
  private temp(r: Ref, type: number): { set: Ref; get: () => Ref } {
    const i = this.newLocal(type);
    return { set: this.m.local.set(i, r), get: () => this.m.local.get(i, type) };
  }

  private withTemps(refs: Ref[], types: number[], body: (...g: (() => Ref)[]) => Ref, resultType: number): Ref {
    const ts = refs.map((r, i) => this.temp(r, types[i]));
    return this.m.block(null, [...ts.map((t) => t.set), body(...ts.map((t) => t.get))], resultType);
  }

  protected override reuse(e: Expr): Ref | undefined {
    return this.cached(e, 's');
  }

  protected variable(v: Var): Ref {
    return this.m.local.get(this.local(v), wasmType(v.dtype));
  }

  protected select(e: SelectExpr): Ref {
    return this.m.select(this.expr(e.c), this.expr(e.a), this.expr(e.b));
  }

  protected selectByBranch(e: SelectExpr): Ref {
    return this.m.if(this.expr(e.c), this.expr(e.a), this.expr(e.b));
  }

  constant(value: number | bigint, t: DType): Ref {
    const m = this.m;
    if (t === 'float32') return m.f32.const(Number(value));
    if (t === 'float64') return m.f64.const(Number(value));
    if (isWide(t)) return m.i64.const(BigInt.asIntN(64, BigInt(value)));
    return m.i32.const(Number(value) | 0);
  }

  cast(r: Ref, from: DType, to: DType): Ref {
    const m = this.m;
    if (from === to) return r;
    if (to === 'bool') {
      if (from === 'float32') return m.f32.ne(r, m.f32.const(0));
      if (from === 'float64') return m.f64.ne(r, m.f64.const(0));
      if (isWide(from)) return m.i64.ne(r, m.i64.const(0n));
      return m.i32.ne(r, m.i32.const(0));
    }
    const fu = isUnsigned(from),
      tu = isUnsigned(to);
    if (isFloat(to)) {
      const T = to === 'float32' ? m.f32 : m.f64;
      if (isFloat(from)) return to === 'float32' ? m.f32.demote(r) : m.f64.promote(r);
      if (isWide(from)) return fu ? T.convert_u.i64(r) : T.convert_s.i64(r);
      return fu ? T.convert_u.i32(r) : T.convert_s.i32(r);
    }
    if (isWide(to)) {
      if (from === 'float32') return tu ? m.i64.trunc_u_sat.f32(r) : m.i64.trunc_s_sat.f32(r);
      if (from === 'float64') return tu ? m.i64.trunc_u_sat.f64(r) : m.i64.trunc_s_sat.f64(r);
      if (isWide(from)) return r;
      return fu ? m.i64.extend_u(r) : m.i64.extend_s(r);
    }
    // to a 32-bit integer (narrow ones are in range already: common/narrow.ts, which casts float to them via i64)
    if (from === 'float32') return tu ? m.i32.trunc_u_sat.f32(r) : m.i32.trunc_s_sat.f32(r);
    if (from === 'float64') return tu ? m.i32.trunc_u_sat.f64(r) : m.i32.trunc_s_sat.f64(r);
    if (isWide(from)) return m.i32.wrap(r);
    return r;
  }

  private mathCall(name: string, args: Expr[], t: DType): Ref {
    const m = this.m;
    const toF64 = (a: Expr) => this.cast(this.expr(a), a.dtype, 'float64');
    const r = m.call(`math_${name}`, args.map(toF64), B.f64);
    return this.cast(r, 'float64', t);
  }

  unary(op: string, a: Expr, t: DType): Ref {
    const m = this.m;
    const f = t === 'float32' ? m.f32 : t === 'float64' ? m.f64 : undefined;
    const ti = wasmType(a.dtype);
    if (t === 'float32' && INLINE_F32_MATH.has(op))
      return inlineF32Math(m, op as InlineMathFn, this.expr(a), false, (ty) => this.newLocal(ty));
    if (op in UNARY_MATH) return this.mathCall(op, [a], t);
    const x = this.expr(a);
    const floatName = FLOAT_UNARY[op];
    if (f && floatName) return f[floatName](x);
    switch (op) {
      case 'neg':
        return isWide(t) ? m.i64.sub(m.i64.const(0n), x) : m.i32.sub(m.i32.const(0), x);
      case 'abs':
        if (isUnsigned(t)) return x;
        return this.withTemps(
          [x],
          [ti],
          (g) =>
            isWide(t)
              ? m.select(m.i64.lt_s(g(), m.i64.const(0n)), m.i64.sub(m.i64.const(0n), g()), g())
              : m.select(m.i32.lt_s(g(), m.i32.const(0)), m.i32.sub(m.i32.const(0), g()), g()),
          ti,
        );
      case 'floor':
      case 'ceil':
      case 'round':
        return x; // of an integer
      case 'not':
        return m.i32.eqz(x);
      case 'bitnot':
        return isWide(t) ? m.i64.xor(x, m.i64.const(-1n)) : m.i32.xor(x, m.i32.const(-1));
      case 'bitcast':
        if (t === 'float32') return m.f32.reinterpret(x);
        if (t === 'float64') return m.f64.reinterpret(x);
        return isWide(t) ? m.i64.reinterpret(x) : m.i32.reinterpret(x);
      case 'isnan':
        if (a.dtype === 'float32') return this.withTemps([x], [B.f32], (g) => m.f32.ne(g(), g()), B.i32);
        if (a.dtype === 'float64') return this.withTemps([x], [B.f64], (g) => m.f64.ne(g(), g()), B.i32);
        return m.block(null, [m.drop(x), m.i32.const(0)], B.i32);
      case 'sign': {
        if (f) {
          const F = f;
          return this.withTemps(
            [x],
            [ti],
            (g) => F.copysign(m.select(F.eq(g(), F.const(0)), F.const(0), F.const(1)), g()),
            ti,
          );
          // NaN stays NaN-signed 1; ONNX tests do not feed NaN to Sign.
        }
        if (isWide(t))
          return this.withTemps(
            [x],
            [B.i64],
            (g) =>
              m.i64.extend_s(
                m.i32.sub(
                  m.i64.gt_s(g(), m.i64.const(0n)),
                  isUnsigned(t) ? m.i32.const(0) : m.i64.lt_s(g(), m.i64.const(0n)),
                ),
              ),
            B.i64,
          );
        return this.withTemps(
          [x],
          [B.i32],
          (g) =>
            m.i32.sub(
              isUnsigned(t) ? m.i32.ne(g(), m.i32.const(0)) : m.i32.gt_s(g(), m.i32.const(0)),
              isUnsigned(t) ? m.i32.const(0) : m.i32.lt_s(g(), m.i32.const(0)),
            ),
          B.i32,
        );
      }
    }
    throw new KilnError('E_UNSUPPORTED', `codegen: unary ${op} on ${t}`);
  }

  binary(op: BinOp, ea: Expr, eb: Expr, t: DType): Ref {
    const m = this.m;
    const at = ea.dtype;
    if (op === 'pow' || (op === 'mod' && isFloat(at))) {
      if (isFloat(at)) return this.mathCall(op === 'pow' ? 'pow' : 'fmod', [ea, eb], t);
      // integer pow through f64, exact for the magnitudes ONNX models use
      return this.cast(
        m.call(
          'math_pow',
          [this.cast(this.expr(ea), at, 'float64'), this.cast(this.expr(eb), eb.dtype, 'float64')],
          B.f64,
        ),
        'float64',
        t,
      );
    }
    const a = this.expr(ea),
      b = this.expr(eb);
    if (isFloat(at)) {
      const name = FLOAT_BINARY[op];
      if (name) return (at === 'float32' ? m.f32 : m.f64)[name](a, b);
    } else {
      const wide = isWide(at);
      const I = (wide ? m.i64 : m.i32) as unknown as IntOps;
      const name = INT_BINARY[op]?.[isUnsigned(at) ? 1 : 0];
      if (name) return I[name](a, b);
      if (op === 'min' || op === 'max') {
        const cmp = I[INT_BINARY[op === 'min' ? 'lt' : 'gt']![isUnsigned(at) ? 1 : 0]!];
        const ty = wide ? B.i64 : B.i32;
        return this.withTemps([a, b], [ty, ty], (x, y) => m.select(cmp(x(), y()), x(), y()), ty);
      }
    }
    throw new KilnError('E_UNSUPPORTED', `codegen: ${op} on ${at}`);
  }
}

/** A 16-bit float that reached the emitter: common/half-float.ts turns them into uint16 bits before it. */
const halfLeft = (t: DType) => new KilnError('E_INTERNAL', `codegen: a ${t} buffer was not legalized to its bits`);
