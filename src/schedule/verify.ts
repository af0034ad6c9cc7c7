// A verifier for the loop IR: the invariants every loop-IR pass and every backend rely on, checked in one walk.
// It throws KilnError('E_INTERNAL') naming the kernel, the rule and the offending statement/expression; a pass
// manager runs it after each pass in tests (and behind a debug flag), so a broken pass fails where it breaks the
// IR instead of inside a code generator.
//
// Rules (each violation is a bug in the pass that produced the IR):
//  - scoping: every variable read is bound by an enclosing `for` or `decl`; a variable is not bound again inside
//    its own scope (by the same object or another of the same name); `assign` targets a `decl`'d variable (not a
//    loop variable); loop variables are int32
//  - buffers: every buffer loaded/stored is a parameter (input/output), a temp, or an `alloc` in scope; parameters
//    and temps are global, allocations local or shared; buffer names are distinct; inputs are never stored to;
//    loads and stores use one int32 index; a constant index lies within the buffer (and so does every index whose
//    range, from the loop extents, is known: an index provably outside the buffer for every iteration is an error);
//    accesses inside a loop of extent 0 are exempt (never run: lowering a zero-size tensor may simplify an index
//    to anything, e.g. Reshape to [0, ...] loads in0[0] of a 0-element input)
//  - local-scope buffers: indexed by constants once the loops the backend expands are fixed (option `localIndex`)
//  - no `reduce` expression is left after lowering
//  - types, as the constructors of tensor-expr/expr.ts build them: a binary op's operands share a dtype, its result
//    is that dtype or bool for comparisons; bitwise/logical ops (and, or, xor, shl, shr, bitnot) take no floats;
//    a unary op keeps its operand's dtype (isnan gives bool, bitcast one of the same width); select's condition is bool and its arms and result
//    share a dtype; a load has its buffer's dtype; a store's value has its buffer's dtype; decl init and assign
//    value have the variable's dtype; if conditions are bool; constants hold a value of their dtype (bigint for
//    64-bit integers, a whole number for other integers, 0/1 for bool)
//  - loops: extents are whole numbers >= 0 (0: a loop over an empty tensor, which every backend skips)
//  - barriers: never under a condition that depends on a thread index (a divergent barrier deadlocks); with
//    `launch` given (a GPU kernel), only inside a loop bound to threadIdx.* (or anywhere once launches are bound)
//  - launch (option `launch`, per top-level statement, which every GPU backend launches separately): the block
//    and grid sizes implied by the bound loops are within the limits; where a tag's loops are nested they form one
//    chain (the backends fuse it into one linear id; a chain's size is the product of its extents, otherwise a
//    tag's size is its largest loop); with `distinctTags`, a tag's loops are never nested; with `foldGridX`, a
//    blockIdx.x size over maxGrid x folds into grid y
//  - bound launches (PrimFunc.launches, after src/codegen/common/launch.ts): one per stage, no bound loop left,
//    the GPU index variables (GPU_INDEX_VARS) read as bound, threadIdx.* ones thread-dependent, each in the range
//    its launch gives; with `launch`, every record within the limits
import { KilnError } from '../runtime/errors.js';
import { TARGET_CAPS } from '../codegen/common/target-caps.js';
import { BYTES, isFloat, isWide } from '../runtime/dtype.js';
import { type Expr, type Var, printExpr, visitExpr } from '../tensor-expr/expr.js';
import { type Interval, bound, fixVar } from '../tensor-expr/simplify.js';
import {
  type Buffer,
  type ForStmt,
  type IfStmt,
  GPU_INDEX_VARS,
  type GpuLaunch,
  type PrimFunc,
  type Stmt,
  type ThreadTag,
  BLOCK_TAGS,
  THREAD_INDEX_TAGS,
  THREAD_TAGS,
  impliedLaunch,
  threadLoops,
  isThreadTag,
  kernelStages,
  printLaunch,
  printStmt,
} from './loop-ir.js';

/** GPU launch limits; a missing field is not checked. */
export interface LaunchLimits {
  /** Most threads in one block/workgroup (the product of its threadIdx.x/y/z sizes). */
  readonly maxThreadsPerBlock?: number;
  /** Largest threadIdx.x/y/z size. */
  readonly maxBlockDim?: readonly [number, number, number];
  /** Largest blockIdx.x/y/z size. */
  readonly maxGrid?: readonly [number, number, number];
  /** Most blocks in one launch (the product of the grid sizes). */
  readonly maxBlocks?: number;
  /**
   * A blockIdx.x size over maxGrid x folds into grid y when blockIdx.y is unused (the launch binder's rule,
   * src/codegen/common/launch.ts): the folded grid is checked instead.
   */
  readonly foldGridX?: boolean;
  /**
   * No loop bound to a tag inside another loop bound to the same tag (TVM's rule). Off by default: Kiln's GPU
   * schedules bind a whole nest to one tag (every spatial loop of a small kernel to threadIdx.x, the outer loops of
   * a tiled one to blockIdx.x), and both GPU backends fuse such a chain into one linear id.
   */
  readonly distinctTags?: boolean;
}

const CUDA = TARGET_CAPS.cuda.gpu!,
  WEBGPU = TARGET_CAPS.webgpu.gpu!;
/** CUDA's limits, as the PTX backend checks them. */
export const CUDA_LAUNCH_LIMITS: LaunchLimits = {
  maxThreadsPerBlock: CUDA.maxThreadsPerBlock,
  maxBlockDim: CUDA.maxBlockDim,
  maxGrid: CUDA.maxGrid,
  foldGridX: true,
};
/** WebGPU's guaranteed limits, blockIdx.x beyond 65535 workgroups folded into dispatch y as the binder does. */
export const WEBGPU_LAUNCH_LIMITS: LaunchLimits = {
  maxThreadsPerBlock: WEBGPU.maxThreadsPerBlock,
  maxBlockDim: WEBGPU.maxBlockDim,
  maxGrid: WEBGPU.maxGrid,
  foldGridX: true,
};

export interface VerifyOptions {
  /** Named in the message: where the IR comes from (e.g. 'after unroll-loops'). */
  readonly where?: string;
  /**
   * How local-scope (register) buffers may be indexed:
   *  - 'constant': by constants only (the IR after every loop over a tile is unrolled);
   *  - 'lanes' (default): by an index that is constant once the variables of the enclosing `vectorized` loops are
   *    fixed (the WebAssembly backend's rule: it vectorizes those loops or unrolls them, and unrolled loops are
   *    already expanded by lowering);
   *  - 'any': by anything (the GPU backends declare local arrays).
   */
  readonly localIndex?: 'constant' | 'lanes' | 'any';
  /** GPU launch limits (default: none, and no GPU-only rules). */
  readonly launch?: LaunchLimits;
}

const isThreadKind = (k: string) => k.startsWith('threadIdx.');
const COMPARE = new Set(['eq', 'ne', 'lt', 'le', 'gt', 'ge']);
const BITWISE = new Set(['and', 'or', 'xor', 'shl', 'shr']);

/** The first line of a statement's text (a loop's header, not its whole body). */
export function stmtHead(s: Stmt): string {
  if (s.k === 'seq') return s.body.length ? stmtHead(s.body[0]) : '(empty seq)';
  return printStmt(s).split('\n')[0].trim();
}

interface Scope {
  /** Variables bound here, by object, and by name (to catch two objects with one name). */
  vars: Map<Var, 'loop' | 'decl'>;
  varNames: Map<string, Var>;
  bufs: Set<Buffer>;
  bufNames: Map<string, Buffer>;
  ranges: Map<Var, Interval>;
  /** Variables whose value may differ between threads of a block. */
  threadDependent: Set<Var>;
  /** Enclosing vectorized loops (innermost last). */
  lanes: ForStmt[];
  /** Enclosing loops bound to GPU tags, outermost first. */
  bound: ForStmt[];
  /** Inside an if whose condition depends on a thread index. */
  divergent?: Stmt;
  /** How many enclosing loops have extent 0 (their bodies never run). */
  emptyLoops: number;
}

/** Checks `f`; throws KilnError('E_INTERNAL') at the first violation (see the rules at the top of this file). */
export function verifyPrimFunc(f: PrimFunc, opts: VerifyOptions = {}): void {
  const where = opts.where ? ` (${opts.where})` : '';
  const localIndex = opts.localIndex ?? 'lanes';
  let stmt: Stmt | undefined; // statement being checked, for the message
  const fail = (problem: string, e?: Expr): never => {
    const lines = [`loop IR of kernel ${f.name}${where}: ${problem}`];
    if (e) lines.push(`  expression: ${printExpr(e)}`);
    if (stmt) lines.push(`  statement: ${stmtHead(stmt)}`);
    throw new KilnError('E_INTERNAL', lines.join('\n'));
  };

  const inputs = new Set<Buffer>(f.inputs);
  const scope: Scope = {
    vars: new Map(),
    varNames: new Map(),
    bufs: new Set(),
    bufNames: new Map(),
    ranges: new Map(),
    threadDependent: new Set(),
    lanes: [],
    bound: [],
    emptyLoops: 0,
  };
  const addBuf = (b: Buffer, what: string) => {
    if (scope.bufs.has(b)) fail(`buffer ${b.name} (${what}) is already in scope`);
    const other = scope.bufNames.get(b.name);
    if (other) fail(`buffer ${b.name} (${what}) has the name of another buffer in scope`);
    if (!Number.isSafeInteger(b.size) || b.size < 0)
      fail(`buffer ${b.name} has size ${b.size}; sizes are whole numbers >= 0`);
    if (b.shape.length !== 1 || b.shape[0] !== b.size)
      fail(`buffer ${b.name} has shape [${b.shape}] but size ${b.size}; loop-IR buffers are flat`);
    scope.bufs.add(b);
    scope.bufNames.set(b.name, b);
  };
  for (const [list, what] of [
    [f.inputs, 'input'],
    [f.outputs, 'output'],
    [f.temps, 'temp'],
  ] as const) {
    for (const b of list) {
      if (b.scope !== 'global') fail(`${what} buffer ${b.name} has scope ${b.scope}; parameters and temps are global`);
      addBuf(b, what);
    }
  }

  const checkIndex = (b: Buffer, index: Expr, access: string, e?: Expr): void => {
    if (index.dtype !== 'int32')
      fail(`${access} of ${b.name} has an index of dtype ${index.dtype}, not int32`, e ?? index);
    if (scope.emptyLoops > 0) {
      // unreachable: inside a loop over an empty tensor (lowering may simplify its indices to anything)
    } else if (index.k === 'const') {
      const i = Number(index.value);
      if (!(i >= 0 && i < b.size))
        fail(`${access} of ${b.name} at constant index ${i}, outside its ${b.size} elements`, e ?? index);
    } else {
      const r = bound(index, scope.ranges);
      if (r && (r.lo >= b.size || r.hi < 0)) {
        fail(
          `${access} of ${b.name} at an index in [${r.lo}, ${r.hi}] for every iteration, outside its ${b.size} elements`,
          e ?? index,
        );
      }
    }
    if (b.scope === 'local' && localIndex !== 'any') {
      let fixed = index;
      if (localIndex === 'lanes') for (const l of scope.lanes) fixed = fixVar(fixed, l.v, 0, scope.ranges);
      if (fixed.k !== 'const') {
        const by = localIndex === 'lanes' ? ' (after fixing the enclosing vectorized loops)' : '';
        fail(
          `${access} of local buffer ${b.name} at a non-constant index${by}; register tiles must be indexed by constants once their loops are unrolled`,
          e ?? index,
        );
      }
    }
  };

  const checkExpr = (root: Expr): void => {
    visitExpr(root, (e) => {
      switch (e.k) {
        case 'const': {
          const ok = isWide(e.dtype)
            ? typeof e.value === 'bigint'
            : typeof e.value === 'number' &&
              (isFloat(e.dtype) || (e.dtype === 'bool' ? e.value === 0 || e.value === 1 : Number.isInteger(e.value)));
          if (!ok) fail(`constant ${String(e.value)} (${typeof e.value}) is not a value of dtype ${e.dtype}`, e);
          break;
        }
        case 'var': {
          const b = scope.vars.get(e);
          if (!b) {
            const same = scope.varNames.get(e.name);
            fail(
              same
                ? `variable ${e.name} is read but not bound (another variable of that name is in scope)`
                : `variable ${e.name} is read but not bound`,
              e,
            );
          }
          break;
        }
        case 'bin': {
          if (e.a.dtype !== e.b.dtype) fail(`operands of ${e.op} have dtypes ${e.a.dtype} and ${e.b.dtype}`, e);
          const want = COMPARE.has(e.op) ? 'bool' : e.a.dtype;
          if (e.dtype !== want) fail(`${e.op} of ${e.a.dtype} operands has dtype ${e.dtype}, not ${want}`, e);
          if (BITWISE.has(e.op) && isFloat(e.a.dtype))
            fail(`${e.op} of ${e.a.dtype} operands (bitwise and logical ops take integers or bool)`, e);
          break;
        }
        case 'un': {
          const want = e.op === 'isnan' ? 'bool' : e.op === 'bitcast' ? e.dtype : e.a.dtype;
          if (e.op === 'bitcast' && BYTES[e.dtype] !== BYTES[e.a.dtype])
            fail(`bitcast of a ${e.a.dtype} operand to ${e.dtype} changes the width`, e);
          if (e.dtype !== want) fail(`${e.op} of a ${e.a.dtype} operand has dtype ${e.dtype}, not ${want}`, e);
          if (e.op === 'bitnot' && isFloat(e.a.dtype)) fail(`bitnot of a ${e.a.dtype} operand`, e);
          break;
        }
        case 'select':
          if (e.c.dtype !== 'bool') fail(`select condition has dtype ${e.c.dtype}, not bool`, e);
          if (e.a.dtype !== e.b.dtype) fail(`select arms have dtypes ${e.a.dtype} and ${e.b.dtype}`, e);
          if (e.dtype !== e.a.dtype) fail(`select of ${e.a.dtype} arms has dtype ${e.dtype}`, e);
          break;
        case 'cast':
          break;
        case 'load': {
          const b = e.buf as Buffer;
          if ((b as Partial<Buffer>).scope === undefined || (b as Partial<Buffer>).size === undefined)
            fail(`load of tensor ${b.name}, which lowering did not turn into a buffer`, e);
          if (!scope.bufs.has(b))
            fail(`load of buffer ${b.name}, which is neither a parameter, a temp nor an allocation in scope`, e);
          if (e.dtype !== b.dtype) fail(`load of ${b.dtype} buffer ${b.name} has dtype ${e.dtype}`, e);
          if (e.idx.length !== 1) fail(`load of ${b.name} has ${e.idx.length} indices; loop-IR buffers take one`, e);
          checkIndex(b, e.idx[0], 'load', e);
          break;
        }
        case 'reduce':
          fail('a reduction is left in the loop IR (lowering turns reductions into accumulator loops)', e);
      }
    });
  };

  const mentionsAny = (e: Expr, vs: ReadonlySet<Var>): boolean => {
    if (!vs.size) return false;
    let found = false;
    visitExpr(e, (x) => {
      if (x.k === 'var' && vs.has(x)) found = true;
    });
    return found;
  };

  const bind = (v: Var, kind: 'loop' | 'decl'): void => {
    if (scope.vars.has(v)) fail(`variable ${v.name} is bound again inside its own scope`);
    const other = scope.varNames.get(v.name);
    if (other) fail(`variable ${v.name} shadows another variable of the same name`);
    scope.vars.set(v, kind);
    scope.varNames.set(v.name, v);
  };
  const unbind = (v: Var): void => {
    scope.vars.delete(v);
    scope.varNames.delete(v.name);
    scope.ranges.delete(v);
    scope.threadDependent.delete(v);
  };

  const walk = (s: Stmt): void => {
    stmt = s;
    switch (s.k) {
      case 'for': {
        if (!Number.isSafeInteger(s.extent) || s.extent < 0) fail(`loop extent ${s.extent} is not a whole number >= 0`);
        if (f.launches && isThreadTag(s.kind)) fail(`loop ${s.v.name} is bound to ${s.kind} after launch binding`);
        if (s.v.dtype !== 'int32') fail(`loop variable ${s.v.name} has dtype ${s.v.dtype}, not int32`);
        if (isThreadTag(s.kind) && opts.launch?.distinctTags && scope.bound.some((l) => l.kind === s.kind)) {
          fail(`loop ${s.v.name} is bound to ${s.kind} inside another loop bound to ${s.kind}`);
        }
        bind(s.v, 'loop');
        if (s.extent > 0) scope.ranges.set(s.v, { lo: 0, hi: s.extent - 1 });
        else scope.emptyLoops++;
        if (isThreadKind(s.kind)) scope.threadDependent.add(s.v);
        if (s.kind === 'vectorized') scope.lanes.push(s);
        if (isThreadTag(s.kind)) scope.bound.push(s);
        walk(s.body);
        if (s.kind === 'vectorized') scope.lanes.pop();
        if (isThreadTag(s.kind)) scope.bound.pop();
        if (s.extent === 0) scope.emptyLoops--;
        unbind(s.v);
        return;
      }
      case 'seq':
        for (const b of s.body) walk(b);
        return;
      case 'store': {
        checkExpr(s.index);
        checkExpr(s.value);
        stmt = s;
        if (!scope.bufs.has(s.buf))
          fail(`store to buffer ${s.buf.name}, which is neither a parameter, a temp nor an allocation in scope`);
        if (inputs.has(s.buf)) fail(`store to input buffer ${s.buf.name}`);
        if (s.value.dtype !== s.buf.dtype)
          fail(`store of a ${s.value.dtype} value to ${s.buf.dtype} buffer ${s.buf.name}`, s.value);
        checkIndex(s.buf, s.index, 'store');
        return;
      }
      case 'if': {
        checkExpr(s.cond);
        if (s.cond.dtype !== 'bool') fail(`if condition has dtype ${s.cond.dtype}, not bool`, s.cond);
        const outer = scope.divergent;
        if (!outer && mentionsAny(s.cond, scope.threadDependent)) scope.divergent = s;
        walk(s.then);
        if (s.else) walk(s.else);
        scope.divergent = outer;
        return;
      }
      case 'decl': {
        checkExpr(s.init);
        stmt = s;
        if (s.init.dtype !== s.v.dtype)
          fail(`let ${s.v.name}: ${s.v.dtype} is initialized with a ${s.init.dtype} value`, s.init);
        bind(s.v, 'decl');
        const r = s.v.dtype === 'int32' ? bound(s.init, scope.ranges) : undefined;
        if (r) scope.ranges.set(s.v, r);
        if (mentionsAny(s.init, scope.threadDependent)) scope.threadDependent.add(s.v);
        walk(s.body);
        unbind(s.v);
        return;
      }
      case 'assign': {
        checkExpr(s.value);
        stmt = s;
        const kind = scope.vars.get(s.v);
        if (!kind) fail(`assignment to ${s.v.name}, which no enclosing let declares`);
        if (kind === 'loop') fail(`assignment to loop variable ${s.v.name}`);
        if (s.value.dtype !== s.v.dtype)
          fail(`assignment of a ${s.value.dtype} value to ${s.v.name}: ${s.v.dtype}`, s.value);
        // a thread-dependent value assigned to a variable makes it thread-dependent from here on
        if (mentionsAny(s.value, scope.threadDependent)) scope.threadDependent.add(s.v);
        return;
      }
      case 'alloc': {
        if (s.buf.scope === 'global')
          fail(`allocation of global buffer ${s.buf.name} inside a kernel (global temporaries are the kernel's temps)`);
        addBuf(s.buf, `${s.buf.scope} allocation`);
        walk(s.body);
        scope.bufs.delete(s.buf);
        scope.bufNames.delete(s.buf.name);
        return;
      }
      case 'barrier': {
        if (scope.divergent)
          fail(
            `barrier under a condition that depends on the thread index (${printExpr((scope.divergent as IfStmt).cond)}): threads that skip it deadlock the others`,
          );
        if (opts.launch && !f.launches && !scope.bound.some((l) => isThreadKind(l.kind)))
          fail('barrier outside every loop bound to threadIdx.*');
        return;
      }
    }
  };
  if (f.launches) {
    const launches = f.launches,
      stages = kernelStages(f);
    if (launches.length !== stages.length) fail(`${launches.length} launches for ${stages.length} stages`);
    // the GPU index variables: bound in every stage, in the ranges its launch gives
    for (const t of THREAD_TAGS) bind(GPU_INDEX_VARS[t], 'loop');
    for (const t of THREAD_INDEX_TAGS) scope.threadDependent.add(GPU_INDEX_VARS[t]);
    stages.forEach((s, i) => {
      const l = launches[i];
      const ids = (t: ThreadTag, n: number) => {
        if (n > 0) scope.ranges.set(GPU_INDEX_VARS[t], { lo: 0, hi: n - 1 });
        else scope.ranges.delete(GPU_INDEX_VARS[t]);
      };
      ids('blockIdx.x', l.foldedX ? l.grid[0] * l.grid[1] : l.grid[0]);
      ids('blockIdx.y', l.foldedX ? 1 : l.grid[1]);
      ids('blockIdx.z', l.grid[2]);
      THREAD_INDEX_TAGS.forEach((t, k) => ids(t, l.block[k]));
      walk(s);
    });
  } else walk(f.body);
  stmt = undefined;
  if (opts.launch)
    for (const s of kernelStages(f))
      checkLaunch(s, opts.launch, fail, (x) => {
        stmt = x;
      });
  if (opts.launch && f.launches) {
    const lim = opts.launch;
    f.launches.forEach((l, i) => checkLaunchRecord(l, i, lim, fail));
  }
}

/** A bound launch (PrimFunc.launches) within the limits. */
function checkLaunchRecord(l: GpuLaunch, i: number, lim: LaunchLimits, fail: (problem: string) => never): void {
  const at = `stage ${i} (${printLaunch(l)})`;
  if ([...l.grid, ...l.block].some((n) => !Number.isSafeInteger(n) || n < 0))
    fail(`${at}: launch sizes are whole numbers >= 0`);
  checkSizes(l.block, l.grid, lim, fail, `${at}: `);
}

/** Launch sizes of one top-level statement (one launch on every GPU backend), checked against `lim`. */
function checkLaunch(s: Stmt, lim: LaunchLimits, fail: (problem: string) => never, at: (s: Stmt) => void): void {
  const { tags, mixed } = threadLoops(s);
  if (mixed) {
    at(mixed);
    fail(
      `loops bound to ${mixed.kind} are nested in one place and side by side in another; one launch can give them no consistent index`,
    );
  }
  const { block, grid } = impliedLaunch(tags, lim.foldGridX ? lim.maxGrid?.[0] : undefined);
  at(s);
  checkSizes(block, grid, lim, fail);
}

/** Threads per block, block dims, grid dims and blocks within the limits (`at` prefixes the messages). */
function checkSizes(
  block: readonly number[],
  grid: readonly number[],
  lim: LaunchLimits,
  fail: (problem: string) => never,
  at = '',
): void {
  const threads = block[0] * block[1] * block[2],
    blocks = grid[0] * grid[1] * grid[2];
  if (lim.maxThreadsPerBlock !== undefined && threads > lim.maxThreadsPerBlock) {
    fail(
      `${at}launch of ${block.join('x')} = ${threads} threads per block exceeds the limit of ${lim.maxThreadsPerBlock}`,
    );
  }
  THREAD_INDEX_TAGS.forEach((t, i) => {
    if (lim.maxBlockDim && block[i] > lim.maxBlockDim[i])
      fail(`${at}${t} size ${block[i]} exceeds the limit of ${lim.maxBlockDim[i]}`);
  });
  BLOCK_TAGS.forEach((t, i) => {
    if (lim.maxGrid && grid[i] > lim.maxGrid[i])
      fail(`${at}${t} size ${grid[i]} exceeds the grid limit of ${lim.maxGrid[i]}`);
  });
  if (lim.maxBlocks !== undefined && blocks > lim.maxBlocks)
    fail(`${at}launch of ${grid.join('x')} = ${blocks} blocks exceeds the limit of ${lim.maxBlocks}`);
}
