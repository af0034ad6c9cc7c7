// Loop IR -> LLVM IR text (typed pointers, LLVM 14 and later), written directly from TypeScript. Every kernel
// becomes an internal function taking one i8* per input and output buffer (and one for its scratch area), then
// (phase, chunk, nchunks) as the WebAssembly kernels do: it runs one phase, and of a phase's parallel loop the
// iterations of chunk `chunk`. One exported entry, `kiln_run(i8* memory, i32 threads)`, makes every call of the
// program with the memory plan's offsets, so the runtime crosses into native code once per run; with threads > 1
// it runs the program on a libgomp team (OpenMP's runtime, through its documented GOMP_* ABI): each thread runs its
// own share of a parallel phase's chunks and then what is left of the others', phases too small to split run on
// thread 0, and a phase that reads what another thread may have written waits for the phase before it to complete
// (programText).
// Variables live in stack slots (allocas) that LLVM's SROA/mem2reg turn into registers; register tiles (local
// buffers) are stack arrays indexed by constants once the unrolled loops around them are expanded here. Loops the
// schedule vectorizes carry llvm.loop metadata asking the loop vectorizer to vectorize them at the target's width.
// Semantics follow the WebAssembly path: narrow integers in i32 (common/narrow.ts), saturating float-to-int
// conversions, shift amounts taken modulo the width, NaN-propagating float min/max; integer division by zero (and
// INT_MIN / -1) gives 0 instead of a trap, since on x86 it would kill the process. Transcendentals call libm.
import { BYTES, type DType, isFloat, isUnsigned, isWide } from '../../runtime/dtype.js';
import { KilnError } from '../../runtime/errors.js';
import { CHUNKS_PER_THREAD, MAX_CHUNKS } from '../../runtime/thread-pool.js';
import { UNARY_MATH } from '../../runtime/math.js';
import {
  type BinOp,
  type Expr,
  type UnOp,
  type Var,
  affineCoef,
  mentions,
  printExpr,
  visitExpr,
} from '../../tensor-expr/expr.js';
import { fixVar } from '../../tensor-expr/simplify.js';
import { isPure } from '../common/pure.js';
import {
  type AllocStmt,
  type AssignStmt,
  type Buffer,
  type DeclStmt,
  type ForStmt,
  type IfStmt,
  type PrimFunc,
  type Stmt,
  type StoreStmt,
  kernelPhases,
  kernelStages,
  parallelLoop,
} from '../../schedule/loop-ir.js';
import { type LoopPass, type LoopPassRun, runLoopPasses, stagePass } from '../../schedule/loop-passes.js';
import { partitionLoops } from '../../schedule/passes/partition.js';
import { scratchLayout } from '../../compiler/memory-plan.js';
import { LoopEmitter, type SelectExpr } from '../common/emitter.js';
import { TARGET_CAPS } from '../common/target-caps.js';
import { halfFloatPass } from '../common/half-float.js';
import { narrowPass } from '../common/narrow.js';
import { floorDivPass } from '../common/legalize.js';
import { mathExpandPass } from '../common/math-expand.js';

/**
 * The loop-IR passes the native backend runs before it emits: the shared lowering, with loop partitioning (shifted
 * last tiles too) before floor divisions are legalized, so that each piece's index arithmetic still simplifies
 * under its range (a packed weight's `(o * 32 + lane) % 16` becomes `lane`).
 */
export const NATIVE_LOOP_PASSES: readonly LoopPass[] = [
  halfFloatPass(TARGET_CAPS.native),
  narrowPass(TARGET_CAPS.native),
  stagePass('partition-loops', (s) => partitionLoops(s, { tails: true })),
  floorDivPass(TARGET_CAPS.native),
  mathExpandPass(TARGET_CAPS.native),
];
export const NATIVE_LOOP_RUN: LoopPassRun = { input: 'as lowered' };

/**
 * The largest stride a vector load reads as one wide load and a shuffle (beyond it, lane by lane). Its unused
 * tail, stride - 1 floats, must stay within the memory plan's guard bytes (SPECULATIVE_GUARD_BYTES).
 */
const MAX_LOAD_STRIDE = 8;

/**
 * An int32 index as a sum of terms times constants plus a constant: a term is a variable, or any other expression
 * taken whole (by its printed form: a floor division, a product of two variables, a load).
 */
function linearForm(e: Expr): { terms: Map<string, number>; c: number } {
  const scaled = (f: { terms: Map<string, number>; c: number }, k: number) => ({
    terms: new Map([...f.terms].map(([t, x]) => [t, x * k])),
    c: f.c * k,
  });
  if (e.k === 'const') return { terms: new Map(), c: Number(e.value) };
  if (e.k === 'bin' && (e.op === 'add' || e.op === 'sub' || e.op === 'mul')) {
    const a = linearForm(e.a),
      b = linearForm(e.b);
    if (e.op === 'mul' && b.terms.size === 0) return scaled(a, b.c);
    if (e.op === 'mul' && a.terms.size === 0) return scaled(b, a.c);
    if (e.op !== 'mul') {
      const sign = e.op === 'add' ? 1 : -1;
      const terms = new Map(a.terms);
      for (const [t, x] of b.terms) terms.set(t, (terms.get(t) ?? 0) + sign * x);
      return { terms, c: a.c + sign * b.c };
    }
  }
  return { terms: new Map([[printExpr(e), 1]]), c: 0 };
}

/**
 * `e` - `base` when the two indices differ by a constant (the unrolled copies of a loop index their phases and
 * columns as base + c), else undefined.
 */
function constDiff(base: Expr, e: Expr): number | undefined {
  const a = linearForm(base),
    b = linearForm(e);
  for (const t of new Set([...a.terms.keys(), ...b.terms.keys()]))
    if ((a.terms.get(t) ?? 0) !== (b.terms.get(t) ?? 0)) return undefined;
  return b.c - a.c;
}

/** Whether `e` loads from buffer `b`. */
function readsBuffer(e: Expr, b: Buffer): boolean {
  let reads = false;
  visitExpr(e, (x) => {
    if (x.k === 'load' && x.buf === b) reads = true;
  });
  return reads;
}

/** One call of the program: kernel index and the byte offsets of its buffers in the memory. */
export interface NativeCall {
  kernel: number;
  args: readonly number[];
}

export interface LlvmModuleOptions {
  /** LLVM target triple. */
  triple: string;
  /** LLVM data layout string. */
  dataLayout: string;
  /** The `target-cpu` and `target-features` function attributes. */
  cpu: string;
  features: string;
  /** Name of the exported entry. */
  entry?: string;
  /**
   * Per kernel, whether its parallel phases have work enough to split among threads (default: all do); the
   * others run on one thread.
   */
  splitWorth?: readonly boolean[];
  /**
   * The entry runs one call, `entry(i8* memory, i32 call, i32 threads)`, for a runtime that makes the calls itself
   * (a control program: branches and loops between calls); otherwise `entry(i8* memory, i32 threads)` runs them all.
   */
  perCall?: boolean;
  /**
   * A second export that runs one call, `callEntry(i8* memory, i32 call, i32 threads)`, next to a whole-run entry:
   * what per-kernel timings call (one call at a time, timed in between).
   */
  callEntry?: string;
  /**
   * Vector widths (lanes) whose glibc libmvec variants the CPU level runs (4: SSE4 'b', 8: AVX2 'd', 16: AVX-512
   * 'e'); float32 exp, log, sin, cos, tanh and erf on those widths call them instead of libm lane by lane.
   */
  vectorMath?: readonly number[];
}

/** libmvec's vector-function ABI letter for a width (x86_64 glibc: _ZGV<letter>N<lanes>v_<name>f). */
const VECTOR_ABI: Record<number, string> = { 4: 'b', 8: 'd', 16: 'e' };
/** Unary float32 functions libmvec has (exp, log, sin, cos since glibc 2.22; tanh, erf since 2.35). */
const VECTOR_MATH = new Set<string>(['exp', 'log', 'sin', 'cos', 'tanh', 'erf']);

/** LLVM's register type of a dtype (narrow integers and bool in i32: common/narrow.ts). */
export const llvmType = (t: DType): string =>
  t === 'float32' ? 'float' : t === 'float64' ? 'double' : isWide(t) ? 'i64' : 'i32';

/** LLVM's memory type of a dtype. */
const memType = (t: DType): string => {
  switch (t) {
    case 'float32':
      return 'float';
    case 'float64':
      return 'double';
    case 'int64':
    case 'uint64':
      return 'i64';
    case 'int32':
    case 'uint32':
      return 'i32';
    case 'int16':
    case 'uint16':
    case 'float16':
    case 'bfloat16':
      return 'i16';
    default:
      return 'i8'; // int8, uint8, bool
  }
};

/** A float constant as LLVM writes it exactly: the double's bits in hex (a float32 value is exact as a double). */
function floatLiteral(v: number, t: 'float' | 'double'): string {
  const x = t === 'float' ? Math.fround(v) : v;
  const b = new DataView(new ArrayBuffer(8));
  b.setFloat64(0, x);
  return `0x${b.getBigUint64(0).toString(16).toUpperCase().padStart(16, '0')}`;
}

/** LLVM literal of `value` as dtype `t`'s register type. */
export function literal(value: number | bigint, t: DType): string {
  if (t === 'float32') return floatLiteral(Number(value), 'float');
  if (t === 'float64') return floatLiteral(Number(value), 'double');
  if (isWide(t)) return BigInt.asIntN(64, BigInt(value)).toString();
  return String(Number(value) | 0);
}

const ICMP: Partial<Record<BinOp, [string, string]>> = {
  eq: ['eq', 'eq'],
  ne: ['ne', 'ne'],
  lt: ['slt', 'ult'],
  le: ['sle', 'ule'],
  gt: ['sgt', 'ugt'],
  ge: ['sge', 'uge'],
};
// ordered compares, except ne: NaN != x is true (as in WebAssembly and C)
const FCMP: Partial<Record<BinOp, string>> = { eq: 'oeq', ne: 'une', lt: 'olt', le: 'ole', gt: 'ogt', ge: 'oge' };
const FLOAT_BINARY: Partial<Record<BinOp, string>> = { add: 'fadd', sub: 'fsub', mul: 'fmul', div: 'fdiv' };
const INT_BINARY: Partial<Record<BinOp, [string, string]>> = {
  add: ['add', 'add'],
  sub: ['sub', 'sub'],
  mul: ['mul', 'mul'],
  and: ['and', 'and'],
  or: ['or', 'or'],
  xor: ['xor', 'xor'],
};
const FLOAT_INTRINSIC: Partial<Record<UnOp, string>> = {
  abs: 'fabs',
  sqrt: 'sqrt',
  floor: 'floor',
  ceil: 'ceil',
  round: 'rint', // to nearest even under the default rounding mode
};

const unsupported = (what: string) =>
  new KilnError('E_UNSUPPORTED', `native codegen: ${what}`, { hint: "compile for target 'wasm', or report the model" });

/** The loop IR of a kernel as the native backend emits it (after its passes). */
export const nativeLoopIR = (lowered: PrimFunc): PrimFunc =>
  runLoopPasses(lowered, NATIVE_LOOP_PASSES, NATIVE_LOOP_RUN);

/**
 * The LLVM module of a program: its kernels (already lowered, before the native passes) and the calls one run
 * makes, in order.
 */
export function emitLlvmModule(
  funcs: readonly PrimFunc[],
  calls: readonly NativeCall[],
  opts: LlvmModuleOptions,
): string {
  const decls = new Set<string>();
  const attrs = `"target-cpu"="${opts.cpu}" "target-features"="${opts.features}" "frame-pointer"="none" "no-trapping-math"="true"`;
  const meta = new Metadata();
  const bodies: string[] = [];
  const kernels: { params: number; scratch: boolean; phases: readonly boolean[] }[] = [];
  funcs.forEach((f, i) => {
    const e = new KernelEmitter(nativeLoopIR(f), `kernel_${i}`, decls, meta, new Set(opts.vectorMath ?? []));
    bodies.push(e.emit());
    kernels.push({ params: e.paramCount, scratch: e.hasScratch, phases: e.phases });
  });
  // a call passes a scratch region where either variant of its kernel needs one (memory-plan.ts kernelScratchBytes):
  // a native kernel that needs none leaves the last argument, the WebAssembly kernel's scratch, unused
  const passed = calls.map((c, i) => {
    const k = kernels[c.kernel];
    if (c.args.length === k.params + 1 && !k.scratch) return { ...c, args: c.args.slice(0, k.params) };
    if (c.args.length !== k.params)
      throw new KilnError(
        'E_INTERNAL',
        `native codegen: call ${i} passes ${c.args.length} buffers to kernel ${c.kernel}, which takes ${k.params}`,
      );
    return c;
  });
  const steps = calls.flatMap((c, i) =>
    kernels[c.kernel].phases.map((parallel, phase) => ({
      call: i,
      phase,
      split: parallel && (opts.splitWorth?.[c.kernel] ?? true),
    })),
  );
  const x86 = opts.triple.startsWith('x86_64');
  return [
    '; Generated by Kiln (native backend)',
    `target datalayout = "${opts.dataLayout}"`,
    `target triple = "${opts.triple}"`,
    '',
    ...bodies,
    ...programText(passed, steps, opts.entry ?? 'kiln_run', opts.perCall ?? false, decls, x86),
    ...(opts.callEntry && !opts.perCall ? programText(passed, steps, opts.callEntry, true, decls, x86, '_call') : []),
    '',
    ...[...decls].sort(),
    '',
    `attributes #0 = { nounwind ${attrs} }`,
    `attributes #1 = { nounwind noinline ${attrs} }`,
    '',
    ...meta.lines,
    '',
  ].join('\n');
}

/** One phase of one call in a run: split among the threads, or run by thread 0 alone. */
interface Step {
  call: number;
  phase: number;
  split: boolean;
}

/** `%shares` (i32 and i64 `%shares64`): how many shares a parallel phase's chunks are cut into, one a thread. */
function sharesOf(threads: string): string[] {
  return [
    `  %sfew = icmp slt i32 ${threads}, ${MAX_CHUNKS}`,
    `  %scapped = select i1 %sfew, i32 ${threads}, i32 ${MAX_CHUNKS}`,
    '  %spos = icmp sgt i32 %scapped, 1',
    '  %shares = select i1 %spos, i32 %scapped, i32 1',
    '  %shares64 = zext i32 %shares to i64',
  ];
}

/**
 * `@kiln_pin<suffix>(thread, threads)`: binds team thread `thread` (> 0) to the `thread`-th CPU the process may run
 * on, once per OS thread, when the team covers every such CPU (as ONNX Runtime binds its workers by default, never
 * the caller's thread). Unbound, a worker woken on a virtual machine whose other vCPU had gone idle was placed on the
 * caller's core, and the two took turns on it for the whole run.
 */
function pinText(suffix: string, decls: Set<string>): string[] {
  for (const d of [
    'i32 @getpid()',
    'i32 @sched_getaffinity(i32, i64, i8*)',
    'i32 @sched_setaffinity(i32, i64, i8*)',
    'i64 @llvm.ctpop.i64(i64)',
    'void @llvm.memset.p0i8.i64(i8* nocapture writeonly, i8, i64, i1 immarg)',
  ])
    decls.add(`declare ${d}`);
  const set = `[${CPU_SET_WORDS} x i64]`;
  return [
    // the team index this OS thread last bound itself as (0: not bound)
    `@kiln_pinned${suffix} = internal thread_local global i32 0`,
    '',
    `define internal void @kiln_pin${suffix}(i32 %thread, i32 %threads) #1 {`,
    'entry:',
    `  %was = load i32, i32* @kiln_pinned${suffix}`,
    '  %same = icmp eq i32 %was, %thread',
    '  br i1 %same, label %out, label %pin',
    'pin:',
    `  store i32 %thread, i32* @kiln_pinned${suffix}`,
    `  %set = alloca ${set}, align 8`,
    `  %setp = bitcast ${set}* %set to i8*`,
    '  %pid = call i32 @getpid()',
    `  %got = call i32 @sched_getaffinity(i32 %pid, i64 ${CPU_SET_WORDS * 8}, i8* %setp)`,
    '  %ok = icmp eq i32 %got, 0',
    '  br i1 %ok, label %count, label %out',
    'count:',
    '  %ci = phi i32 [ 0, %pin ], [ %cinext, %count ]',
    '  %cn = phi i32 [ 0, %pin ], [ %cnnext, %count ]',
    `  %cwp = getelementptr inbounds ${set}, ${set}* %set, i32 0, i32 %ci`,
    '  %cw = load i64, i64* %cwp',
    '  %cbits = call i64 @llvm.ctpop.i64(i64 %cw)',
    '  %cbits32 = trunc i64 %cbits to i32',
    '  %cnnext = add i32 %cn, %cbits32',
    '  %cinext = add i32 %ci, 1',
    `  %cmore = icmp ult i32 %cinext, ${CPU_SET_WORDS}`,
    '  br i1 %cmore, label %count, label %counted',
    'counted:',
    '  %some = icmp sgt i32 %cnnext, 0',
    '  %covers = icmp sge i32 %threads, %cnnext',
    '  %bindable = and i1 %some, %covers',
    '  br i1 %bindable, label %find, label %out',
    'find:',
    '  %target = urem i32 %thread, %cnnext',
    '  br label %scan',
    'scan:',
    '  %b = phi i32 [ 0, %find ], [ %bnext, %scannext ]',
    '  %seen = phi i32 [ 0, %find ], [ %seennext, %scannext ]',
    '  %w = lshr i32 %b, 6',
    `  %wp = getelementptr inbounds ${set}, ${set}* %set, i32 0, i32 %w`,
    '  %word = load i64, i64* %wp',
    '  %sh = and i32 %b, 63',
    '  %sh64 = zext i32 %sh to i64',
    '  %bits = lshr i64 %word, %sh64',
    '  %bit = and i64 %bits, 1',
    '  %isset = icmp ne i64 %bit, 0',
    '  %hit = icmp eq i32 %seen, %target',
    '  %found = and i1 %isset, %hit',
    '  br i1 %found, label %bind, label %scannext',
    'scannext:',
    '  %inc = zext i1 %isset to i32',
    '  %seennext = add i32 %seen, %inc',
    '  %bnext = add i32 %b, 1',
    `  %smore = icmp ult i32 %bnext, ${CPU_SET_WORDS * 64}`,
    '  br i1 %smore, label %scan, label %out',
    'bind:',
    `  call void @llvm.memset.p0i8.i64(i8* %setp, i8 0, i64 ${CPU_SET_WORDS * 8}, i1 false)`,
    '  %one = shl i64 1, %sh64',
    '  store i64 %one, i64* %wp',
    `  %bound = call i32 @sched_setaffinity(i32 0, i64 ${CPU_SET_WORDS * 8}, i8* %setp)`,
    '  br label %out',
    'out:',
    '  ret void',
    '}',
    '',
  ];
}

/** 64-bit words of the CPU sets of sched_{get,set}affinity: glibc's cpu_set_t, 1024 CPUs. */
const CPU_SET_WORDS = 16;

/** Pause instructions a thread spins on a phase's completion before it starts yielding its core. */
const SPINS_BEFORE_YIELD = 4000;

/**
 * The functions that run the program. `kiln_program(mem, thread, threads)` makes every step of a run as thread
 * `thread` of `threads` (with `perCall`, `kiln_program(mem, thread, threads, call)` the steps of one call); the team
 * function is what each thread of a libgomp team runs; the exported entry resets the chunk counters and runs the
 * program on the calling thread (threads <= 1) or on a team of `threads`. `suffix` names a second set of these
 * functions (a per-call entry beside a whole-run one).
 *
 * No thread ever waits for another thread, only for work: a split phase's chunks go to whichever thread claims them,
 * and a phase that may read what an earlier one wrote waits until every chunk of the phase before it has completed
 * (each completed chunk counts in `done`). A thread the OS has not run yet (a second vCPU waking up, or a core that
 * another process holds) so leaves its chunks to the others instead of stalling them at a barrier (with
 * GOMP_barrier, a team thread woken onto the caller's core made a 2-thread run slower than a 1-thread one).
 */
function programText(
  calls: readonly NativeCall[],
  steps: readonly Step[],
  entry: string,
  perCall: boolean,
  decls: Set<string>,
  x86: boolean,
  suffix = '',
): string[] {
  const [programFn, teamFn, claimsVar, doneVar, waitFn] = ['program', 'team', 'claims', 'done', 'wait'].map(
    (n) => `@kiln_${n}${suffix}`,
  );
  const counters = steps.filter((st) => st.split).length;
  // one row of claim counters per share (thread), one counter per split phase in a row: a thread's counters share
  // cache lines with its own, not with the other threads'
  const row = `[${counters} x i32]`;
  const claims = `[${MAX_CHUNKS} x ${row}]`;
  const done = `[${steps.length} x i32]`;
  const doneAt = (j: number) => `getelementptr inbounds (${done}, ${done}* ${doneVar}, i64 0, i64 ${j})`;
  const p = [
    `define internal void ${programFn}(i8* %mem, i32 %thread, i32 %threads${perCall ? ', i32 %call' : ''}) #0 {`,
    'entry:',
    '  %solo = icmp eq i32 %thread, 0',
    '  %many = icmp sgt i32 %threads, 1',
    // chunks per parallel phase: as the WebAssembly thread pool cuts them, at most the MAX_CHUNKS copies of
    // chunk-private buffers the memory plan reserves
    `  %wanted = mul i32 %threads, ${CHUNKS_PER_THREAD}`,
    `  %fits = icmp slt i32 %wanted, ${MAX_CHUNKS}`,
    `  %nmany = select i1 %fits, i32 %wanted, i32 ${MAX_CHUNKS}`,
    '  %nchunks = select i1 %many, i32 %nmany, i32 1',
    ...sharesOf('%threads'),
  ];
  calls.forEach((c, i) => {
    c.args.forEach((off, j) => p.push(`  %c${i}_${j} = getelementptr inbounds i8, i8* %mem, i64 ${off}`));
  });
  if (perCall)
    p.push(`  switch i32 %call, label %end [${calls.map((_, i) => ` i32 ${i}, label %call${i}`).join('')} ]`);
  let counter = 0;
  steps.forEach((st, j) => {
    const c = calls[st.call];
    const args = c.args.map((_, a) => `i8* %c${st.call}_${a}, `).join('');
    const call = (chunk: string, n: string) =>
      `  call void @kernel_${c.kernel}(${args}i32 ${st.phase}, i32 ${chunk}, i32 ${n})`;
    const completed = (n: string) => `  %r${j}.${n} = atomicrmw add i32* ${doneAt(j)}, i32 1 release`;
    const first = j === 0 || (perCall && steps[j - 1].call !== st.call);
    if (perCall && first) p.push(`call${st.call}:`);
    // a phase that may read what another thread wrote waits for the phase before it (which waited for the one
    // before it): not between two phases thread 0 runs alone
    const waits = !first && (st.split || steps[j - 1].split);
    const before = steps[j - 1]?.split ? '%nchunks' : '1';
    p.push(`  br label %s${j}`, `s${j}:`);
    if (st.split) {
      // thread t first runs share t, chunks [t*n/S, (t+1)*n/S) of S = min(threads, MAX_CHUNKS) shares: the same part
      // of every phase of the same extent, so a phase reads on each core what the phase before wrote there (from one
      // shared counter, Winograd's column pass read half its rows from the other core's cache); then it takes what
      // is left of the other shares
      const ctr = `getelementptr inbounds ${claims}, ${claims}* ${claimsVar}, i32 0, i32 %vic${j}, i32 ${counter++}`;
      if (waits) p.push(`  call void ${waitFn}(i32* ${doneAt(j - 1)}, i32 ${before})`);
      p.push(
        `  br label %v${j}`,
        `v${j}:`,
        `  %i${j} = phi i32 [ 0, %s${j} ], [ %inext${j}, %next${j} ]`,
        `  %t${j} = add i32 %thread, %i${j}`,
        `  %vic${j} = urem i32 %t${j}, %shares`,
        `  %loa${j} = mul i32 %vic${j}, %nchunks`,
        `  %lo${j} = udiv i32 %loa${j}, %shares`,
        `  %vicnext${j} = add i32 %vic${j}, 1`,
        `  %hia${j} = mul i32 %vicnext${j}, %nchunks`,
        `  %hi${j} = udiv i32 %hia${j}, %shares`,
        `  %ctr${j} = ${ctr}`,
        `  br label %c${j}`,
        `c${j}:`,
        `  %n${j} = atomicrmw add i32* %ctr${j}, i32 1 monotonic`,
        `  %k${j} = add i32 %lo${j}, %n${j}`,
        `  %more${j} = icmp slt i32 %k${j}, %hi${j}`,
        `  br i1 %more${j}, label %w${j}, label %next${j}`,
        `w${j}:`,
        call(`%k${j}`, '%nchunks'),
        completed('chunk'),
        `  br label %c${j}`,
        `next${j}:`,
        `  %inext${j} = add i32 %i${j}, 1`,
        `  %left${j} = icmp slt i32 %inext${j}, %shares`,
        `  br i1 %left${j}, label %v${j}, label %d${j}`,
      );
    } else
      p.push(
        `  br i1 %solo, label %w${j}, label %d${j}`,
        `w${j}:`,
        ...(waits ? [`  call void ${waitFn}(i32* ${doneAt(j - 1)}, i32 ${before})`] : []),
        call('0', '1'),
        completed('solo'),
        `  br label %d${j}`,
      );
    p.push(`d${j}:`);
    if (perCall && (j === steps.length - 1 || steps[j + 1].call !== st.call)) p.push('  br label %end');
  });
  if (perCall) {
    // calls without phases (none in practice) fall through to the end
    const empty = calls.map((_, i) => i).filter((i) => !steps.some((st) => st.call === i));
    for (const i of empty) p.push(`call${i}:`, '  br label %end');
    p.push('end:');
  }
  p.push('  ret void', '}', '');
  const params = perCall ? 'i8* %mem, i32 %call, i32 %threads' : 'i8* %mem, i32 %threads';
  const program = (thread: string, threads: string) =>
    `  call void ${programFn}(i8* %mem, i32 ${thread}, i32 ${threads}${perCall ? ', i32 %call' : ''})`;
  const globals = [
    `${claimsVar} = internal global ${claims} zeroinitializer, align 64`,
    `${doneVar} = internal global ${done} zeroinitializer, align 64`,
    '',
  ];
  // spin on the counter with pause instructions, then yield the core: the thread that holds the last chunk may be
  // waiting for this very core
  const wait = [
    `define internal void ${waitFn}(i32* %counter, i32 %need) #1 {`,
    'entry:',
    '  br label %check',
    'check:',
    '  %spins = phi i32 [ 0, %entry ], [ %next, %spin ], [ %next, %yield ]',
    '  %got = load atomic i32, i32* %counter acquire, align 4',
    '  %ready = icmp sge i32 %got, %need',
    '  br i1 %ready, label %out, label %again',
    'again:',
    '  %next = add i32 %spins, 1',
    `  %patient = icmp ult i32 %spins, ${SPINS_BEFORE_YIELD}`,
    '  br i1 %patient, label %spin, label %yield',
    'spin:',
    ...(x86 ? ['  call void @llvm.x86.sse2.pause()'] : []),
    '  br label %check',
    'yield:',
    '  %yielded = call i32 @sched_yield()',
    '  br label %check',
    'out:',
    '  ret void',
    '}',
    '',
  ];
  decls.add('declare void @llvm.memset.p0i8.i64(i8* nocapture writeonly, i8, i64, i1 immarg)');
  const reset = [
    `  call void @llvm.memset.p0i8.i64(i8* bitcast (${done}* ${doneVar} to i8*), i8 0, i64 ${steps.length * 4}, i1 false)`,
  ];
  if (counters === 0)
    return [
      ...globals,
      ...p,
      `define dllexport void @${entry}(${params}) #0 {`,
      'entry:',
      ...reset,
      program('0', '1'),
      '  ret void',
      '}',
    ];
  for (const d of [
    'void @GOMP_parallel(void (i8*)*, i8*, i32, i32)',
    'i32 @omp_get_thread_num()',
    'i32 @omp_get_num_threads()',
    'i32 @sched_yield()',
    ...(x86 ? ['void @llvm.x86.sse2.pause()'] : []),
  ])
    decls.add(`declare ${d}`);
  // a team thread gets one pointer: the memory, or with perCall a { memory, call } pair on the entry's stack
  const team = perCall
    ? [
        `define internal void ${teamFn}(i8* %arg) #0 {`,
        'entry:',
        '  %pair = bitcast i8* %arg to { i8*, i32 }*',
        '  %memp = getelementptr inbounds { i8*, i32 }, { i8*, i32 }* %pair, i32 0, i32 0',
        '  %mem = load i8*, i8** %memp',
        '  %callp = getelementptr inbounds { i8*, i32 }, { i8*, i32 }* %pair, i32 0, i32 1',
        '  %call = load i32, i32* %callp',
      ]
    : [`define internal void ${teamFn}(i8* %mem) #0 {`, 'entry:'];
  const teamArg = perCall
    ? [
        '  %pair = alloca { i8*, i32 }',
        '  %memp = getelementptr inbounds { i8*, i32 }, { i8*, i32 }* %pair, i32 0, i32 0',
        '  store i8* %mem, i8** %memp',
        '  %callp = getelementptr inbounds { i8*, i32 }, { i8*, i32 }* %pair, i32 0, i32 1',
        '  store i32 %call, i32* %callp',
        '  %arg = bitcast { i8*, i32 }* %pair to i8*',
      ]
    : [];
  return [
    ...globals,
    ...pinText(suffix, decls),
    ...wait,
    ...p,
    ...team,
    '  %thread = call i32 @omp_get_thread_num()',
    '  %threads = call i32 @omp_get_num_threads()',
    '  %worker = icmp sgt i32 %thread, 0',
    '  br i1 %worker, label %pin, label %run',
    'pin:',
    `  call void @kiln_pin${suffix}(i32 %thread, i32 %threads)`,
    '  br label %run',
    'run:',
    program('%thread', '%threads'),
    '  ret void',
    '}',
    '',
    `define dllexport void @${entry}(${params}) #0 {`,
    'entry:',
    ...teamArg,
    ...reset,
    ...sharesOf('%threads'),
    `  %claimed = mul i64 %shares64, ${counters * 4}`,
    `  call void @llvm.memset.p0i8.i64(i8* bitcast (${claims}* ${claimsVar} to i8*), i8 0, i64 %claimed, i1 false)`,
    '  %many = icmp sgt i32 %threads, 1',
    '  br i1 %many, label %team, label %one',
    'one:',
    program('0', '1'),
    '  ret void',
    'team:',
    `  call void @GOMP_parallel(void (i8*)* ${teamFn}, i8* ${perCall ? '%arg' : '%mem'}, i32 %threads, i32 0)`,
    '  ret void',
    '}',
  ];
}

/** Numbered metadata nodes of the module. */
class Metadata {
  readonly lines: string[] = [];
  private next = 0;
  private vectorizeNode?: number;
  node(text: string): number {
    const n = this.next++;
    this.lines.push(`!${n} = ${text}`);
    return n;
  }
  /** A fresh llvm.loop node (each loop needs its own distinct one) with the given properties. */
  loop(props: number[]): string {
    const n = this.next++;
    this.lines.push(`!${n} = distinct !{!${n}${props.map((p) => `, !${p}`).join('')}}`);
    return `!llvm.loop !${n}`;
  }
  get vectorize(): number {
    this.vectorizeNode ??= this.node('!{!"llvm.loop.vectorize.enable", i1 true}');
    return this.vectorizeNode;
  }
}

class KernelEmitter extends LoopEmitter<string, void> {
  protected readonly backend = 'native codegen';
  protected readonly caps = TARGET_CAPS.native;
  private readonly allocas: string[] = [];
  private readonly lines: string[] = [];
  private readonly slot = new Map<Var, string>();
  private readonly base = new Map<Buffer, string>();
  private tmp = 0;
  private labels = 0;
  private memo = new Map<Expr, string>();
  readonly paramCount: number;
  /** Whether the kernel takes a scratch region (its last buffer parameter). */
  readonly hasScratch: boolean;
  /** Per phase (kernel stage), whether it has a parallel loop to split into chunks. */
  readonly phases: readonly boolean[];
  private readonly layout: ReturnType<typeof scratchLayout>;
  /** The parallel loop of the phase being emitted: it runs the iterations of chunk %chunk. */
  private chunkLoop: ForStmt | undefined;

  constructor(
    readonly f: PrimFunc,
    readonly name: string,
    readonly decls: Set<string>,
    readonly meta: Metadata,
    readonly vectorMath: ReadonlySet<number>,
  ) {
    super();
    this.layout = scratchLayout(f);
    this.hasScratch = this.layout.bytes > 0;
    this.paramCount = f.inputs.length + f.outputs.length + (this.hasScratch ? 1 : 0);
    this.phases = kernelPhases(f);
  }

  emit(): string {
    const bufs = [...this.f.inputs, ...this.f.outputs];
    const params = bufs.map((_, i) => `i8* %p${i}`);
    bufs.forEach((b, i) => this.base.set(b, `%p${i}`));
    if (this.layout.bytes > 0) {
      // the kernel's own region (the memory plan keeps it apart from every tensor): LLVM may keep its loads across
      // stores to the outputs (a Winograd transform's columns, read by every copy of an unrolled index, load once)
      params.push('i8* noalias %scratch');
      for (const [t, off] of this.layout.offsets) this.base.set(t, this.gep('%scratch', off));
      if (this.layout.shared.size > 0) {
        // a chunk's own 'shared' buffers: scratch + sharedAt + chunk * chunkStride
        const chunk = this.t(),
          at = this.t();
        this.allocas.push(
          `  ${chunk} = sext i32 %chunk to i64`,
          `  ${at} = mul nsw i64 ${chunk}, ${this.layout.chunkStride}`,
        );
        const mine = this.t();
        this.allocas.push(`  ${mine} = getelementptr inbounds i8, i8* %scratch, i64 ${at}`);
        for (const [t, off] of this.layout.shared) this.base.set(t, this.gep(mine, this.layout.sharedAt + off));
      }
    }
    params.push('i32 %phase', 'i32 %chunk', 'i32 %nchunks');
    const stages = kernelStages(this.f);
    const labels = stages.map(() => this.label()),
      done = this.label();
    this.ins(`switch i32 %phase, label %${done} [${labels.map((l, p) => ` i32 ${p}, label %${l}`).join('')} ]`);
    stages.forEach((st, p) => {
      this.place(labels[p]);
      this.chunkLoop = parallelLoop(st);
      this.stmt(st);
      this.chunkLoop = undefined;
      this.ins(`br label %${done}`);
    });
    this.place(done);
    this.lines.push('  ret void');
    return [
      `define void @${this.name}(${params.join(', ')}) #1 {`,
      'entry:',
      ...this.allocas,
      ...this.lines,
      '}',
      '',
    ].join('\n');
  }

  // ---- helpers
  private t(): string {
    return `%t${this.tmp++}`;
  }
  private ins(s: string): void {
    this.lines.push(`  ${s}`);
  }
  /** `%x = <rhs>`; returns %x. */
  private op(rhs: string): string {
    const r = this.t();
    this.ins(`${r} = ${rhs}`);
    return r;
  }
  private label(): string {
    return `L${this.labels++}`;
  }
  private place(l: string): void {
    this.lines.push(`${l}:`);
  }
  /** A byte offset from an i8* (in the entry block when `p` is a parameter). */
  private gep(p: string, off: number): string {
    const r = this.t();
    this.allocas.push(`  ${r} = getelementptr inbounds i8, i8* ${p}, i64 ${off}`);
    return r;
  }
  private declare(sig: string): void {
    this.decls.add(`declare ${sig}`);
  }
  private varSlot(v: Var): string {
    let s = this.slot.get(v);
    if (!s) {
      s = `%v${this.slot.size}_${v.name.replace(/[^A-Za-z0-9_]/g, '_')}`;
      this.allocas.push(`  ${s} = alloca ${llvmType(v.dtype)}`);
      this.slot.set(v, s);
    }
    return s;
  }
  /** Evaluates `f` in a branch: what it computes is not reused after the branch. */
  private branch<T>(f: () => T): T {
    const saved = this.memo,
      saved64 = this.memo64;
    this.memo = new Map(saved);
    this.memo64 = new Map(saved64);
    try {
      return f();
    } finally {
      this.memo = saved;
      this.memo64 = saved64;
    }
  }

  /**
   * Pointer to element `index` of `b`, typed as its memory type. `inbounds`: false for an address that may lie
   * outside the memory (a masked load's first lane, masked off).
   */
  private addr(b: Buffer, index: Expr, inbounds = true): string {
    const base = this.base.get(b);
    if (!base) throw new KilnError('E_INTERNAL', `native codegen: buffer ${b.name} has no address (scope ${b.scope})`);
    const mt = memType(b.dtype);
    if (b.scope === 'local') {
      const i = this.index64(index);
      return this.op(`getelementptr inbounds [${b.size} x ${mt}], [${b.size} x ${mt}]* ${base}, i64 0, i64 ${i}`);
    }
    const typed = this.op(`bitcast i8* ${base} to ${mt}*`);
    const i = this.index64(index);
    return this.op(`getelementptr ${inbounds ? 'inbounds ' : ''}${mt}, ${mt}* ${typed}, i64 ${i}`);
  }
  /**
   * An element index as i64. The sums and products of an int32 index are computed in i64 with nsw (an index never
   * overflows: buffers have fewer than 2^31 elements), so LLVM sees that neighbouring lanes' addresses are
   * consecutive (a sext of an i32 sum hides it) and the SLP vectorizer can merge them.
   */
  private index64(index: Expr): string {
    if (index.k === 'const') return BigInt(index.value).toString();
    if (isWide(index.dtype)) return this.expr(index);
    if (index.k === 'bin' && (index.op === 'add' || index.op === 'mul' || index.op === 'sub')) {
      const key = this.memo64.get(index);
      if (key) return key;
      const a = this.index64(index.a),
        b = this.index64(index.b);
      const r = this.op(`${index.op} nsw i64 ${a}, ${b}`);
      this.memo64.set(index, r);
      return r;
    }
    return this.op(`sext i32 ${this.expr(index)} to i64`);
  }
  private memo64 = new Map<Expr, string>();

  /** An i1 for a value of dtype `t` (nonzero). */
  private truth(e: Expr): string {
    const v = this.expr(e);
    if (isFloat(e.dtype)) return this.op(`fcmp une ${llvmType(e.dtype)} ${v}, ${literal(0, e.dtype)}`);
    return this.op(`icmp ne ${llvmType(e.dtype)} ${v}, 0`);
  }
  private fromBool(i1: string): string {
    return this.op(`zext i1 ${i1} to i32`);
  }

  // ---- statements
  override stmt(s: Stmt): void {
    this.forgetValues();
    super.stmt(s);
  }
  /** Drops the values computed so far (scalar, 64-bit index, vector): code from here on computes its own. */
  private forgetValues(): void {
    this.memo = new Map();
    this.memo64 = new Map();
    this.vmemo = new Map();
  }
  protected emitSeq(body: readonly Stmt[]): void {
    for (let i = 0; i < body.length; ) {
      const grouped = this.interleavedStores(body.slice(i)) || this.transposedStores(body.slice(i));
      if (grouped) i += grouped;
      else this.stmt(body[i++]);
    }
  }
  protected emitStore(s: StoreStmt): void {
    const v = this.expr(s.value);
    const p = this.addr(s.buf, s.index);
    const mt = memType(s.buf.dtype),
      rt = llvmType(s.buf.dtype);
    const stored = mt === rt ? v : this.op(`trunc ${rt} ${v} to ${mt}`);
    this.ins(`store ${mt} ${stored}, ${mt}* ${p}, align ${BYTES[s.buf.dtype] || 1}`);
  }
  protected emitIf(s: IfStmt): void {
    const c = this.truth(s.cond);
    const lThen = this.label(),
      lElse = this.label(),
      lEnd = this.label();
    this.ins(`br i1 ${c}, label %${lThen}, label %${s.else ? lElse : lEnd}`);
    this.place(lThen);
    this.branch(() => this.stmt(s.then));
    this.ins(`br label %${lEnd}`);
    if (s.else) {
      this.place(lElse);
      this.branch(() => this.stmt(s.else!));
      this.ins(`br label %${lEnd}`);
    }
    this.place(lEnd);
  }
  protected emitDecl(s: DeclStmt): void {
    const v = this.expr(s.init);
    this.ins(`store ${llvmType(s.v.dtype)} ${v}, ${llvmType(s.v.dtype)}* ${this.varSlot(s.v)}`);
    this.stmt(s.body);
  }
  protected emitAssign(s: AssignStmt): void {
    const v = this.expr(s.value);
    this.ins(`store ${llvmType(s.v.dtype)} ${v}, ${llvmType(s.v.dtype)}* ${this.varSlot(s.v)}`);
  }
  protected emitAlloc(s: AllocStmt): void {
    if (s.buf.scope === 'local') {
      const mt = memType(s.buf.dtype);
      const r = `%tile${this.allocas.length}`;
      this.allocas.push(`  ${r} = alloca [${s.buf.size} x ${mt}], align 64`);
      this.base.set(s.buf, r);
    }
    // 'shared' buffers are in the scratch area (scratchLayout), set up in emit()
    this.stmt(s.body);
  }
  protected emitBarrier(): void {} // one thread runs the whole kernel
  protected emitNothing(): void {}

  protected emitLoop(s: ForStmt): void {
    const slot = this.varSlot(s.v);
    if (s === this.chunkLoop) {
      this.chunkedLoop(s, slot);
      return;
    }
    if (s.kind === 'vectorized' && this.vectorLoop(s)) return;
    // unrolled here (not by LLVM): register tiles' indices become constants before SROA sees them
    if ((s.kind === 'unrolled' || s.kind === 'vectorized') && s.extent <= 16) {
      for (let k = 0; k < s.extent; k++) {
        this.ins(`store i32 ${k}, i32* ${slot}`);
        this.stmt(s.body);
      }
      return;
    }
    const md = s.kind === 'vectorized' ? `, ${this.meta.loop([this.meta.vectorize])}` : '';
    this.countedLoop(s, slot, '0', `${s.extent}`, undefined, md);
  }

  /**
   * `s.v` from `from` up to `to` (exclusive) as a loop tested at its bottom; `entered`, when given, is the i1 that
   * says whether it runs at all (else it runs at least once).
   */
  private countedLoop(s: ForStmt, slot: string, from: string, to: string, entered?: string, md = ''): void {
    const lBody = this.label(),
      lEnd = this.label();
    this.ins(`store i32 ${from}, i32* ${slot}`);
    this.ins(entered ? `br i1 ${entered}, label %${lBody}, label %${lEnd}` : `br label %${lBody}`);
    this.place(lBody);
    this.branch(() => this.stmt(s.body));
    const i = this.op(`load i32, i32* ${slot}`);
    const next = this.op(`add nuw nsw i32 ${i}, 1`);
    this.ins(`store i32 ${next}, i32* ${slot}`);
    this.ins(`br i1 ${this.op(`icmp slt i32 ${next}, ${to}`)}, label %${lBody}, label %${lEnd}${md}`);
    this.place(lEnd);
  }

  /** A phase's parallel loop over the iterations of one chunk: [extent*chunk/nchunks, extent*(chunk+1)/nchunks). */
  private chunkedLoop(s: ForStmt, slot: string): void {
    const bound = (chunk: string) => {
      const c = this.op(`sext i32 ${chunk} to i64`);
      const n = this.op(`sext i32 %nchunks to i64`);
      const at = this.op(`sdiv i64 ${this.op(`mul nsw i64 ${c}, ${s.extent}`)}, ${n}`);
      return this.op(`trunc i64 ${at} to i32`);
    };
    const lo = bound('%chunk'),
      hi = bound(this.op('add nsw i32 %chunk, 1'));
    this.countedLoop(s, slot, lo, hi, this.op(`icmp slt i32 ${lo}, ${hi}`));
  }

  // ---- explicit vectors for the loops the schedule vectorizes
  /**
   * A vectorized loop of 2..16 lanes storing float32s, as one <L x float> computation: unit-stride loads and stores
   * (of global buffers and register tiles) as vector accesses, lane-invariant values splatted, arithmetic on
   * vectors; what has no vector form is computed lane by lane and inserted. False (nothing emitted) for other loops.
   */
  private vectorLoop(s: ForStmt): boolean {
    const st = s.body,
      L = s.extent;
    if (st.k !== 'store' || st.buf.dtype !== 'float32' || L < 2 || L > 16) return false;
    const v = s.v,
      vt = `<${L} x float>`;
    this.forgetValues();
    const value = this.vexpr(st.value, v, L);
    if (affineCoef(st.index, v) === 1) {
      const p = this.addr(st.buf, fixVar(st.index, v, 0));
      const vp = this.op(`bitcast float* ${p} to ${vt}*`);
      this.ins(`store ${vt} ${value}, ${vt}* ${vp}, align 4`);
    } else {
      for (let l = 0; l < L; l++) {
        const x = this.op(`extractelement ${vt} ${value}, i32 ${l}`);
        const p = this.addr(st.buf, fixVar(st.index, v, l));
        this.ins(`store float ${x}, float* ${p}, align 4`);
      }
    }
    return true;
  }
  private vmemo = new Map<Expr, string>();

  /**
   * S consecutive vectorized loops (S = 4 or 2, the unrolled phases of an interleaved row: a Winograd output
   * tile's columns, x = S*t + phase) whose float32 stores interleave: loop k stores lane l at base + l*S + k. Their
   * vectors are interleaved by a shuffle and stored as one contiguous S*L-float vector, instead of S*L scalar
   * stores. The number of loops taken, 0 when `body` does not start with such a group.
   */
  private interleavedStores(body: readonly Stmt[]): number {
    for (const S of [4, 2]) {
      const loops = body.slice(0, S);
      if (loops.length < S) continue;
      const group = loops.map((l) =>
        l.k === 'for' && l.kind === 'vectorized' && l.body.k === 'store'
          ? { v: l.v, L: l.extent, st: l.body }
          : undefined,
      );
      const first = group[0];
      if (first?.st.buf.dtype !== 'float32' || first.st.buf.scope === 'local') continue;
      const L = first.L,
        base = fixVar(first.st.index, first.v, 0);
      const fits = group.every(
        (g, k) =>
          g &&
          g.L === L &&
          g.st.buf === first.st.buf &&
          affineCoef(g.st.index, g.v) === S &&
          constDiff(base, fixVar(g.st.index, g.v, 0)) === k &&
          !readsBuffer(g.st.value, first.st.buf),
      );
      if (!fits || L < 2 || L > 16) continue;
      const phases = group.map((g) => {
        this.forgetValues();
        return this.vexpr(g!.st.value, g!.v, L);
      });
      const wt = `<${S * L} x float>`;
      const row = this.interleave(phases, L);
      this.forgetValues();
      const vp = this.op(`bitcast float* ${this.addr(first.st.buf, base)} to ${wt}*`);
      this.ins(`store ${wt} ${row}, ${wt}* ${vp}, align 4`);
      return S;
    }
    return 0;
  }

  /**
   * Consecutive vectorized loops storing float32 vectors whose lanes lie C floats apart (a register tile with its
   * lanes over channels, written to an NCHW tensor: lane l is channel l, C the channel plane), P of which store the
   * same channels at P consecutive positions (base + p, p < P <= C): each such group's P vectors are transposed by
   * shuffles and lane l's P floats stored as one <P x float> vector at base + l*C, instead of P*L scalar stores.
   * The groups write disjoint elements (checked), so storing them group by group keeps the loops' results. The
   * number of loops taken, 0 when `body` does not start with at least one group of two.
   */
  private transposedStores(body: readonly Stmt[]): number {
    type Member = { v: Var; st: StoreStmt; base: Expr };
    const run: Member[] = [];
    let L = 0,
      C = 0;
    for (const s of body) {
      if (s.k !== 'for' || s.kind !== 'vectorized' || s.body.k !== 'store') break;
      const st = s.body;
      const coef = affineCoef(st.index, s.v);
      if (st.buf.dtype !== 'float32' || st.buf.scope === 'local' || coef === undefined || coef < 2) break;
      if (readsBuffer(st.value, st.buf)) break;
      if (run.length && (st.buf !== run[0].st.buf || s.extent !== L || coef !== C)) break;
      [L, C] = [s.extent, coef];
      run.push({ v: s.v, st, base: fixVar(st.index, s.v, 0) });
    }
    if (run.length < 2 || L < 2 || L > 16) return 0;
    const groups: { base: Expr; at: Member[] }[] = [];
    for (const m of run) {
      const g = groups.find((g) => {
        const o = constDiff(g.base, m.base);
        return o !== undefined && o >= 0 && o < C && !g.at[o];
      });
      if (g) g.at[constDiff(g.base, m.base)!] = m;
      else groups.push({ base: m.base, at: [m] });
    }
    // each group's columns 0..P-1 all present (no holes), and some group of two or more
    if (groups.some((g) => Object.keys(g.at).length !== g.at.length) || groups.every((g) => g.at.length < 2)) return 0;
    // every element written once: offsets from the first group's base, all distinct
    const written = new Set<number>();
    for (const g of groups) {
      const d = constDiff(groups[0].base, g.base);
      if (d === undefined) return 0;
      for (let l = 0; l < L; l++)
        for (let p = 0; p < g.at.length; p++) {
          const at = d + l * C + p;
          if (written.has(at)) return 0;
          written.add(at);
        }
    }
    for (const g of groups) {
      const P = g.at.length;
      const vectors = g.at.map((m) => {
        this.forgetValues();
        return this.vexpr(m.st.value, m.v, L);
      });
      const rt = `<${P * L} x float>`,
        pt = `<${P} x float>`;
      const rows = this.interleave(vectors, L);
      const first = g.at[0];
      for (let l = 0; l < L; l++) {
        const lane = Array.from({ length: P }, (_, p) => `i32 ${l * P + p}`).join(', ');
        const run = this.op(`shufflevector ${rt} ${rows}, ${rt} undef, <${P} x i32> <${lane}>`);
        this.forgetValues();
        const vp = this.op(`bitcast float* ${this.addr(first.st.buf, fixVar(first.st.index, first.v, l))} to ${pt}*`);
        this.ins(`store ${pt} ${run}, ${pt}* ${vp}, align 4`);
      }
    }
    return run.length;
  }

  /**
   * S vectors of L floats interleaved into one <S*L x float> value, lane l of vector k at l*S + k: concatenated
   * pairwise (padded with zero vectors to a power of two), then one shuffle.
   */
  private interleave(vectors: readonly string[], L: number): string {
    const S = vectors.length;
    let parts = [...vectors],
      width = L;
    while (parts.length > 1) {
      if (parts.length % 2) parts = [...parts, 'zeroinitializer'];
      const both = Array.from({ length: 2 * width }, (_, i) => `i32 ${i}`).join(', ');
      const next: string[] = [];
      for (let i = 0; i < parts.length; i += 2)
        next.push(
          this.op(
            `shufflevector <${width} x float> ${parts[i]}, <${width} x float> ${parts[i + 1]}, <${2 * width} x i32> <${both}>`,
          ),
        );
      parts = next;
      width *= 2;
    }
    const wt = `<${width} x float>`;
    const mask = Array.from({ length: S * L }, (_, p) => `i32 ${(p % S) * L + Math.floor(p / S)}`).join(', ');
    return this.op(`shufflevector ${wt} ${parts[0]}, ${wt} undef, <${S * L} x i32> <${mask}>`);
  }

  private splat(x: string, L: number, t = 'float'): string {
    const a = this.op(`insertelement <${L} x ${t}> undef, ${t} ${x}, i32 0`);
    return this.op(`shufflevector <${L} x ${t}> ${a}, <${L} x ${t}> undef, <${L} x i32> zeroinitializer`);
  }
  /** Lane by lane: each lane's scalar value (lane l: v = l) inserted into a vector. */
  private gather(e: Expr, v: Var, L: number, t = 'float', scalar = (x: Expr) => this.expr(x)): string {
    let r = 'undef';
    for (let l = 0; l < L; l++) {
      const x = scalar(fixVar(e, v, l));
      r = this.op(`insertelement <${L} x ${t}> ${r}, ${t} ${x}, i32 ${l}`);
    }
    return r;
  }
  private vintrinsic(name: string, L: number, ...args: string[]): string {
    const vt = `<${L} x float>`,
      fn = `llvm.${name}.v${L}f32`;
    this.declare(`${vt} @${fn}(${args.map(() => vt).join(', ')})`);
    return this.op(`call ${vt} @${fn}(${args.map((a) => `${vt} ${a}`).join(', ')})`);
  }

  /**
   * A select between a load and a pure value whose condition varies across the lanes (a padded convolution's
   * edge tile: the first lane reads left of the row): one masked load (lanes whose condition is false read
   * nothing, so no address outside the buffer is touched) and a vector select, instead of lane-by-lane scalars.
   * Undefined where the condition is not a comparison of affine lane indices or the load is not a vector load.
   */
  private maskedSelect(e: SelectExpr, v: Var, L: number): string | undefined {
    const negated = e.a.k !== 'load';
    const [ld, other] = negated ? [e.b, e.a] : [e.a, e.b];
    if (ld.k !== 'load' || !isPure(other) || ld.dtype !== 'float32' || (ld.buf as Buffer).scope === 'local')
      return undefined;
    const s = affineCoef(ld.idx[0], v);
    if (s === undefined || s < 1 || s > MAX_LOAD_STRIDE) return undefined;
    let c = this.vtruth(e.c, v, L);
    if (!c) return undefined;
    if (negated) c = this.op(`xor <${L} x i1> ${c}, <${Array(L).fill('i1 true').join(', ')}>`);
    const vt = `<${L} x float>`,
      wt = `<${s * L} x float>`;
    // (a strided load: the mask of a wide load, true only at the kept lanes whose condition holds)
    const mask =
      s === 1
        ? c
        : this.op(
            `shufflevector <${L} x i1> ${c}, <${L} x i1> zeroinitializer, <${s * L} x i32> <${Array.from(
              { length: s * L },
              (_, p) => `i32 ${p % s === 0 ? p / s : L}`,
            ).join(', ')}>`,
          );
    const fn = `llvm.masked.load.v${s * L}f32.p0v${s * L}f32`;
    this.declare(`${wt} @${fn}(${wt}*, i32 immarg, <${s * L} x i1>, ${wt})`);
    const p = this.op(`bitcast float* ${this.addr(ld.buf as Buffer, fixVar(ld.idx[0], v, 0), false)} to ${wt}*`);
    const b = this.vexpr(other, v, L);
    // (unit stride: the other value fills the masked-off lanes of the load itself)
    const wide = this.op(
      `call ${wt} @${fn}(${wt}* ${p}, i32 4, <${s * L} x i1> ${mask}, ${wt} ${s === 1 ? b : 'zeroinitializer'})`,
    );
    if (s === 1) return wide;
    const kept = Array.from({ length: L }, (_, l) => `i32 ${s * l}`).join(', ');
    const loaded = this.op(`shufflevector ${wt} ${wide}, ${wt} undef, <${L} x i32> <${kept}>`);
    return this.op(`select <${L} x i1> ${c}, ${vt} ${loaded}, ${vt} ${b}`);
  }
  /**
   * The <L x i1> value of a condition across lane variable `v`: conjunctions and disjunctions of int32
   * comparisons whose sides are affine in `v` (a vector compare of base + lane * coefficient), or undefined.
   */
  private vtruth(c: Expr, v: Var, L: number): string | undefined {
    const bt = `<${L} x i1>`;
    if (!mentions(c, v)) return this.splat(this.truth(c), L, 'i1');
    if (c.k !== 'bin') return undefined;
    if ((c.op === 'and' || c.op === 'or') && c.dtype === 'bool') {
      const a = this.vtruth(c.a, v, L),
        b = a && this.vtruth(c.b, v, L);
      return b && this.op(`${c.op} ${bt} ${a}, ${b}`);
    }
    const cmp = ICMP[c.op];
    if (!cmp || c.a.dtype !== 'int32' || c.b.dtype !== 'int32') return undefined;
    const a = this.vindex(c.a, v, L),
      b = a && this.vindex(c.b, v, L);
    return b && this.op(`icmp ${cmp[0]} <${L} x i32> ${a}, ${b}`);
  }
  /** The <L x i32> lanes of an int32 index affine in `v` (base + lane * coefficient), or undefined. */
  private vindex(x: Expr, v: Var, L: number): string | undefined {
    const k = mentions(x, v) ? affineCoef(x, v) : 0;
    if (k === undefined) return undefined;
    const base = this.splat(this.expr(fixVar(x, v, 0)), L, 'i32');
    if (k === 0) return base;
    return this.op(`add <${L} x i32> ${base}, <${Array.from({ length: L }, (_, l) => `i32 ${l * k}`).join(', ')}>`);
  }

  /** The <L x float> value of a float32 expression across lane variable `v`. */
  private vexpr(e: Expr, v: Var, L: number): string {
    const hit = this.vmemo.get(e);
    if (hit) return hit;
    const r = this.vexprNow(e, v, L);
    this.vmemo.set(e, r);
    return r;
  }
  private vexprNow(e: Expr, v: Var, L: number): string {
    const vt = `<${L} x float>`;
    if (e.dtype !== 'float32') throw new KilnError('E_INTERNAL', `native codegen: vector of ${e.dtype}`);
    if (!mentions(e, v)) return this.splat(this.expr(e), L);
    switch (e.k) {
      case 'load': {
        const b = e.buf as Buffer;
        const coef = affineCoef(e.idx[0], v);
        if (coef === 1) {
          const p = this.addr(b, fixVar(e.idx[0], v, 0));
          const vp = this.op(`bitcast float* ${p} to ${vt}*`);
          return this.op(`load ${vt}, ${vt}* ${vp}, align 4`);
        }
        // a small stride s (a stride-2 convolution's input row, a Winograd tile's column): one load of s*L floats,
        // every s-th lane kept. The s - 1 floats after the last lane are read and not used: the memory plan's guard
        // bytes cover them (not a local tile)
        if (coef !== undefined && coef >= 2 && coef <= MAX_LOAD_STRIDE && b.scope !== 'local') {
          const wt = `<${coef * L} x float>`;
          const p = this.addr(b, fixVar(e.idx[0], v, 0));
          const wp = this.op(`bitcast float* ${p} to ${wt}*`);
          const w = this.op(`load ${wt}, ${wt}* ${wp}, align 4`);
          const kept = Array.from({ length: L }, (_, l) => `i32 ${coef * l}`).join(', ');
          return this.op(`shufflevector ${wt} ${w}, ${wt} undef, <${L} x i32> <${kept}>`);
        }
        return this.gather(e, v, L);
      }
      case 'un': {
        if (e.op === 'neg') return this.op(`fneg ${vt} ${this.vexpr(e.a, v, L)}`);
        const intr = FLOAT_INTRINSIC[e.op];
        if (intr && e.a.dtype === 'float32') return this.vintrinsic(intr, L, this.vexpr(e.a, v, L));
        if (VECTOR_MATH.has(e.op) && e.a.dtype === 'float32' && this.vectorMath.has(L)) {
          const fn = `_ZGV${VECTOR_ABI[L]}N${L}v_${e.op}f`;
          this.declare(`${vt} @${fn}(${vt}) nounwind readnone`);
          return this.op(`call ${vt} @${fn}(${vt} ${this.vexpr(e.a, v, L)})`);
        }
        return this.gather(e, v, L);
      }
      case 'bin': {
        if (e.a.dtype !== 'float32') return this.gather(e, v, L);
        if (e.op === 'add') {
          const m = e.a.k === 'bin' && e.a.op === 'mul' ? e.a : e.b.k === 'bin' && e.b.op === 'mul' ? e.b : undefined;
          if (m) {
            const c = m === e.a ? e.b : e.a;
            return this.vintrinsic('fmuladd', L, this.vexpr(m.a, v, L), this.vexpr(m.b, v, L), this.vexpr(c, v, L));
          }
        }
        const ins = FLOAT_BINARY[e.op];
        if (ins) return this.op(`${ins} ${vt} ${this.vexpr(e.a, v, L)}, ${this.vexpr(e.b, v, L)}`);
        if (e.op === 'min' || e.op === 'max') {
          const bound = e.b.k === 'const' ? e.b : e.a.k === 'const' ? e.a : undefined;
          const c = bound !== undefined ? Number(bound.value) : Number.NaN;
          // against a constant other than NaN (a clip's bounds, a ReLU's zero): the constant where it is
          // strictly beyond x, else x (a NaN, a tie of zeros), as WebAssembly's pmin/pmax (wasm/vectorize.ts);
          // one x86 min/max instruction with the constant first, where the NaN rules take several
          if (bound && !Number.isNaN(c)) {
            const x = this.vexpr(bound === e.b ? e.a : e.b, v, L),
              k = this.splat(literal(c, 'float32'), L);
            const pick = this.op(`fcmp ${e.op === 'min' ? 'olt' : 'ogt'} ${vt} ${k}, ${x}`);
            return this.op(`select <${L} x i1> ${pick}, ${vt} ${k}, ${vt} ${x}`);
          }
          const a = this.vexpr(e.a, v, L),
            b = this.vexpr(e.b, v, L);
          const pick = this.op(`fcmp ${e.op === 'min' ? 'olt' : 'ogt'} ${vt} ${a}, ${b}`);
          const r = this.op(`select <${L} x i1> ${pick}, ${vt} ${a}, ${vt} ${b}`);
          const nan = this.op(`fcmp uno ${vt} ${a}, ${a}`);
          return this.op(`select <${L} x i1> ${nan}, ${vt} ${a}, ${vt} ${r}`);
        }
        return this.gather(e, v, L);
      }
      case 'select': {
        const masked = mentions(e.c, v) ? this.maskedSelect(e, v, L) : undefined;
        if (masked) return masked;
        if (!isPure(e.a) || !isPure(e.b)) return this.gather(e, v, L);
        const a = this.vexpr(e.a, v, L),
          b = this.vexpr(e.b, v, L);
        if (!mentions(e.c, v)) return this.op(`select i1 ${this.truth(e.c)}, ${vt} ${a}, ${vt} ${b}`);
        const c = this.gather(e.c, v, L, 'i1', (x) => this.truth(x));
        return this.op(`select <${L} x i1> ${c}, ${vt} ${a}, ${vt} ${b}`);
      }
      default:
        return this.gather(e, v, L);
    }
  }

  // ---- expressions
  protected override reuse(e: Expr): string | undefined {
    return this.memo.get(e);
  }
  protected override remember(e: Expr, v: string): void {
    this.memo.set(e, v);
  }

  protected constant(value: number | bigint, t: DType): string {
    return literal(value, t);
  }
  protected variable(v: Var): string {
    const s = this.slot.get(v);
    if (!s) throw new KilnError('E_INTERNAL', `native codegen: variable ${v.name} used before definition`);
    return this.op(`load ${llvmType(v.dtype)}, ${llvmType(v.dtype)}* ${s}`);
  }
  protected load(b: Buffer, index: Expr): string {
    const p = this.addr(b, index);
    const mt = memType(b.dtype),
      rt = llvmType(b.dtype);
    const x = this.op(`load ${mt}, ${mt}* ${p}, align ${BYTES[b.dtype] || 1}`);
    if (mt === rt) return x;
    return this.op(`${isUnsigned(b.dtype) || b.dtype === 'bool' ? 'zext' : 'sext'} ${mt} ${x} to ${rt}`);
  }
  protected select(e: SelectExpr): string {
    const c = this.truth(e.c);
    const a = this.expr(e.a),
      b = this.expr(e.b);
    return this.op(`select i1 ${c}, ${llvmType(e.dtype)} ${a}, ${llvmType(e.dtype)} ${b}`);
  }
  protected selectByBranch(e: SelectExpr): string {
    const ty = llvmType(e.dtype);
    const c = this.truth(e.c);
    const lA = this.label(),
      lB = this.label(),
      lEnd = this.label();
    this.ins(`br i1 ${c}, label %${lA}, label %${lB}`);
    this.place(lA);
    const a = this.branch(() => this.expr(e.a));
    const fromA = this.currentBlock();
    this.ins(`br label %${lEnd}`);
    this.place(lB);
    const b = this.branch(() => this.expr(e.b));
    const fromB = this.currentBlock();
    this.ins(`br label %${lEnd}`);
    this.place(lEnd);
    return this.op(`phi ${ty} [ ${a}, %${fromA} ], [ ${b}, %${fromB} ]`);
  }
  /** The label of the block being appended to. */
  private currentBlock(): string {
    for (let i = this.lines.length - 1; i >= 0; i--) {
      const l = this.lines[i];
      if (!l.startsWith(' ') && l.endsWith(':')) return l.slice(0, -1);
    }
    return 'entry';
  }

  cast(x: string, from: DType, to: DType): string {
    if (from === to) return x;
    const ft = llvmType(from),
      tt = llvmType(to);
    if (to === 'bool') {
      const c = isFloat(from) ? this.op(`fcmp une ${ft} ${x}, ${literal(0, from)}`) : this.op(`icmp ne ${ft} ${x}, 0`);
      return this.fromBool(c);
    }
    const fu = isUnsigned(from) || from === 'bool';
    if (isFloat(to)) {
      if (isFloat(from))
        return ft === tt ? x : this.op(`${to === 'float32' ? 'fptrunc' : 'fpext'} ${ft} ${x} to ${tt}`);
      return this.op(`${fu ? 'uitofp' : 'sitofp'} ${ft} ${x} to ${tt}`);
    }
    if (isFloat(from)) {
      // saturating, NaN -> 0 (WebAssembly's trunc_sat)
      const sat = isUnsigned(to) ? 'fptoui' : 'fptosi';
      const name = `llvm.${sat}.sat.${tt}.${ft === 'float' ? 'f32' : 'f64'}`;
      this.declare(`${tt} @${name}(${ft})`);
      return this.op(`call ${tt} @${name}(${ft} ${x})`);
    }
    if (ft === tt) return x;
    if (tt === 'i64') return this.op(`${fu ? 'zext' : 'sext'} i32 ${x} to i64`);
    return this.op(`trunc i64 ${x} to i32`);
  }

  private intrinsic(name: string, t: string, ...args: string[]): string {
    const suffix = t === 'float' ? 'f32' : t === 'double' ? 'f64' : t;
    const fn = `llvm.${name}.${suffix}`;
    this.declare(`${t} @${fn}(${args.map(() => t).join(', ')})`);
    return this.op(`call ${t} @${fn}(${args.map((a) => `${t} ${a}`).join(', ')})`);
  }
  /** libm's function `name` of doubles (and `name`f of floats). */
  private libm(name: string, t: string, ...args: string[]): string {
    const fn = t === 'float' ? `${name}f` : name;
    this.declare(`${t} @${fn}(${args.map(() => t).join(', ')}) nounwind readnone`);
    return this.op(`call ${t} @${fn}(${args.map((a) => `${t} ${a}`).join(', ')})`);
  }

  protected unary(op: UnOp, ea: Expr, t: DType): string {
    const at = ea.dtype;
    if (op === 'not') return this.fromBool(this.op(`icmp eq i32 ${this.expr(ea)}, 0`));
    if (op === 'isnan') {
      if (!isFloat(at)) return '0';
      const x = this.expr(ea);
      return this.fromBool(this.op(`fcmp uno ${llvmType(at)} ${x}, ${x}`));
    }
    const x = this.expr(ea),
      ty = llvmType(t);
    if (op === 'bitcast') return this.op(`bitcast ${llvmType(at)} ${x} to ${ty}`);
    if (isFloat(t)) {
      if (op === 'neg') return this.op(`fneg ${ty} ${x}`);
      const intr = FLOAT_INTRINSIC[op];
      if (intr) return this.intrinsic(intr, ty, x);
      if (op === 'sign') {
        // copysign(x == 0 ? 0 : 1, x); NaN stays NaN-signed 1 as on the WebAssembly path
        const z = this.op(`fcmp oeq ${ty} ${x}, ${literal(0, t)}`);
        const m = this.op(`select i1 ${z}, ${ty} ${literal(0, t)}, ${ty} ${literal(1, t)}`);
        return this.intrinsic('copysign', ty, m, x);
      }
      if (op in UNARY_MATH) return this.libm(op, ty, x);
      throw unsupported(`unary ${op} on ${t}`);
    }
    switch (op) {
      case 'neg':
        return this.op(`sub ${ty} 0, ${x}`);
      case 'abs': {
        if (isUnsigned(t)) return x;
        const n = this.op(`icmp slt ${ty} ${x}, 0`);
        const m = this.op(`sub ${ty} 0, ${x}`);
        return this.op(`select i1 ${n}, ${ty} ${m}, ${ty} ${x}`);
      }
      case 'floor':
      case 'ceil':
      case 'round':
        return x;
      case 'bitnot':
        return this.op(`xor ${ty} ${x}, -1`);
      case 'sign': {
        const pos = this.op(`icmp ${isUnsigned(t) ? 'ne' : 'sgt'} ${ty} ${x}, 0`);
        const neg = isUnsigned(t) ? 'false' : this.op(`icmp slt ${ty} ${x}, 0`);
        const p = this.op(`zext i1 ${pos} to ${ty}`),
          n = this.op(`zext i1 ${neg} to ${ty}`);
        return this.op(`sub ${ty} ${p}, ${n}`);
      }
    }
    throw unsupported(`unary ${op} on ${t}`);
  }

  protected binary(op: BinOp, ea: Expr, eb: Expr, t: DType): string {
    const at = ea.dtype,
      ty = llvmType(at);
    if (op === 'pow') {
      if (isFloat(at)) return this.libm('pow', ty, this.expr(ea), this.expr(eb));
      // integer pow through float64, as on the WebAssembly path
      const a = this.cast(this.expr(ea), at, 'float64'),
        b = this.cast(this.expr(eb), eb.dtype, 'float64');
      return this.cast(this.libm('pow', 'double', a, b), 'float64', t);
    }
    // a*b + c as one fused multiply-add where the loop IR multiplies and adds (float32, as PTX and relaxed SIMD do)
    if (op === 'add' && at === 'float32') {
      const m = ea.k === 'bin' && ea.op === 'mul' ? ea : eb.k === 'bin' && eb.op === 'mul' ? eb : undefined;
      if (m) {
        const c = m === ea ? eb : ea;
        return this.intrinsic('fmuladd', ty, this.expr(m.a), this.expr(m.b), this.expr(c));
      }
    }
    const a = this.expr(ea),
      b = this.expr(eb);
    if (isFloat(at)) {
      const fc = FCMP[op];
      if (fc) return this.fromBool(this.op(`fcmp ${fc} ${ty} ${a}, ${b}`));
      const ins = FLOAT_BINARY[op];
      if (ins) return this.op(`${ins} ${ty} ${a}, ${b}`);
      if (op === 'min' || op === 'max') {
        // NaN-propagating (ONNX, WebAssembly's f32.min/max)
        const pick = this.op(`fcmp ${op === 'min' ? 'olt' : 'ogt'} ${ty} ${a}, ${b}`);
        const r = this.op(`select i1 ${pick}, ${ty} ${a}, ${ty} ${b}`);
        const nan = this.op(`fcmp uno ${ty} ${a}, ${a}`);
        return this.op(`select i1 ${nan}, ${ty} ${a}, ${ty} ${r}`);
      }
      if (op === 'mod') return this.libm('fmod', ty, a, b);
      throw unsupported(`${op} on ${at}`);
    }
    const u = isUnsigned(at) || at === 'bool' ? 1 : 0;
    const ic = ICMP[op];
    if (ic) return this.fromBool(this.op(`icmp ${ic[u]} ${ty} ${a}, ${b}`));
    const ins = INT_BINARY[op];
    if (ins) return this.op(`${ins[u]} ${ty} ${a}, ${b}`);
    const bits = ty === 'i64' ? 64 : 32;
    switch (op) {
      case 'shl':
      case 'shr': {
        const amount = this.op(`and ${ty} ${b}, ${bits - 1}`);
        return this.op(`${op === 'shl' ? 'shl' : u ? 'lshr' : 'ashr'} ${ty} ${a}, ${amount}`);
      }
      case 'min':
      case 'max': {
        const c = this.op(`icmp ${op === 'min' ? (u ? 'ult' : 'slt') : u ? 'ugt' : 'sgt'} ${ty} ${a}, ${b}`);
        return this.op(`select i1 ${c}, ${ty} ${a}, ${ty} ${b}`);
      }
      case 'div':
      case 'mod':
      case 'floordiv':
      case 'floormod': {
        if ((op === 'floordiv' || op === 'floormod') && !u) throw unsupported(`${op} on ${at} (not legalized)`);
        const rem = op === 'mod' || op === 'floormod';
        // x86 traps on a zero divisor and on INT_MIN / -1: divide by 1 there and give 0
        let bad = this.op(`icmp eq ${ty} ${b}, 0`);
        if (!u) {
          const min = bits === 64 ? '-9223372036854775808' : '-2147483648';
          const am = this.op(`icmp eq ${ty} ${a}, ${min}`),
            bm = this.op(`icmp eq ${ty} ${b}, -1`);
          bad = this.op(`or i1 ${bad}, ${this.op(`and i1 ${am}, ${bm}`)}`);
        }
        const d = this.op(`select i1 ${bad}, ${ty} 1, ${ty} ${b}`);
        const q = this.op(`${rem ? (u ? 'urem' : 'srem') : u ? 'udiv' : 'sdiv'} ${ty} ${a}, ${d}`);
        return this.op(`select i1 ${bad}, ${ty} 0, ${ty} ${q}`);
      }
    }
    throw unsupported(`${op} on ${at}`);
  }
}
