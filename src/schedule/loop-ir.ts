// The loop IR: imperative loop nests over flat buffers, with what GPU backends need (loops bound to workgroup and
// thread ids, shared-memory buffers, barriers). Every backend emits from it; the walkers at the end are the one way
// passes traverse and rebuild it.
import type { DType } from '../runtime/dtype.js';
import { type Buf, type Expr, type Var, printExpr } from '../tensor-expr/expr.js';

export type Scope = 'global' | 'shared' | 'local';

/** A flat buffer: shape is [size]; loads and stores use one index. */
export interface Buffer extends Buf {
  readonly scope: Scope;
  readonly size: number;
}

export type ThreadTag = 'blockIdx.x' | 'blockIdx.y' | 'blockIdx.z' | 'threadIdx.x' | 'threadIdx.y' | 'threadIdx.z';
export type ForKind = 'serial' | 'parallel' | 'vectorized' | 'unrolled' | ThreadTag;
export const THREAD_TAGS: readonly ThreadTag[] = [
  'blockIdx.x',
  'blockIdx.y',
  'blockIdx.z',
  'threadIdx.x',
  'threadIdx.y',
  'threadIdx.z',
];
export const isThreadTag = (k: string): k is ThreadTag => (THREAD_TAGS as readonly string[]).includes(k);
/** The tags of a launch's grid dimensions (blocks, workgroups) and of its block dimensions (threads), x y z. */
export const BLOCK_TAGS: readonly ThreadTag[] = THREAD_TAGS.slice(0, 3);
export const THREAD_INDEX_TAGS: readonly ThreadTag[] = THREAD_TAGS.slice(3);

/**
 * The GPU's own index variables (int32), one per tag, read by the bound loops' indices once the launch binder
 * (src/codegen/common/launch.ts) has replaced those loops: each emitter maps them to its registers or builtins.
 * `blockIdx.x` counts blocks over grid x and y (x + y * grid x) where the launch folds x into y.
 */
export const GPU_INDEX_VARS: Readonly<Record<ThreadTag, Var>> = Object.fromEntries(
  THREAD_TAGS.map((t) => [t, { k: 'var', name: t, dtype: 'int32' } satisfies Var]),
) as Record<ThreadTag, Var>;

/** How one stage of a GPU kernel is launched: blocks (workgroups) per grid dimension, threads per block dimension. */
export interface GpuLaunch {
  readonly grid: readonly [number, number, number];
  readonly block: readonly [number, number, number];
  /** blockIdx.x over more blocks than grid x allows, folded into grid y: it reads x + y * grid[0]. */
  readonly foldedX?: boolean;
  /**
   * A kernel for run-time sizes: per block index (x, y, z), the ids a run needs, as an int32 expression of the
   * symbols (the blocks past it only store past the sizes); undefined: all of the grid. For x before any folding.
   */
  readonly runIds?: readonly (Expr | undefined)[];
}

/**
 * A loop bound to a block index in a kernel for run-time sizes: how many of its first iterations may store inside
 * the sizes (an int32 expression of the symbols), for the extent it had when that was found.
 */
export interface RunCount {
  readonly extent: number;
  readonly count: Expr;
}

export type Stmt =
  | {
      readonly k: 'for';
      readonly v: Var;
      readonly extent: number;
      readonly kind: ForKind;
      readonly body: Stmt;
      readonly runCount?: RunCount;
    }
  | { readonly k: 'seq'; readonly body: readonly Stmt[] }
  | { readonly k: 'store'; readonly buf: Buffer; readonly index: Expr; readonly value: Expr }
  | { readonly k: 'if'; readonly cond: Expr; readonly then: Stmt; readonly else?: Stmt }
  /** A mutable scalar local (accumulators). */
  | { readonly k: 'decl'; readonly v: Var; readonly init: Expr; readonly body: Stmt }
  | { readonly k: 'assign'; readonly v: Var; readonly value: Expr }
  | { readonly k: 'alloc'; readonly buf: Buffer; readonly body: Stmt }
  | { readonly k: 'barrier' };

export type ForStmt = Extract<Stmt, { k: 'for' }>;
export type StoreStmt = Extract<Stmt, { k: 'store' }>;
export type IfStmt = Extract<Stmt, { k: 'if' }>;
export type DeclStmt = Extract<Stmt, { k: 'decl' }>;
export type AssignStmt = Extract<Stmt, { k: 'assign' }>;
export type AllocStmt = Extract<Stmt, { k: 'alloc' }>;

/** A kernel: parameters are flat buffers (inputs first, then outputs); global temporaries come from a scratch area. */
export interface PrimFunc {
  readonly name: string;
  readonly inputs: readonly Buffer[];
  readonly outputs: readonly Buffer[];
  /** Global-scope temporaries, laid out in one scratch region the caller provides. */
  readonly temps: readonly Buffer[];
  readonly body: Stmt;
  /** GPU kernels after launch binding: one launch per stage (kernelStages), its bound loops replaced. */
  readonly launches?: readonly GpuLaunch[];
}

export const buffer = (name: string, dtype: DType, size: number, scope: Scope = 'global'): Buffer => ({
  name,
  dtype,
  shape: [size],
  size,
  scope,
});

export function seq(body: Stmt[]): Stmt {
  const flat = body.flatMap((s) => (s.k === 'seq' ? s.body : [s]));
  return flat.length === 1 ? flat[0] : { k: 'seq', body: flat };
}

export function printStmt(s: Stmt, indent = ''): string {
  const i2 = `${indent}  `;
  switch (s.k) {
    case 'for':
      return `${indent}for ${s.v.name} in 0..${s.extent}${s.kind === 'serial' ? '' : ` (${s.kind})`}${s.runCount ? ` (runs ${printExpr(s.runCount.count)})` : ''} {\n${printStmt(s.body, i2)}${indent}}\n`;
    case 'seq':
      return s.body.map((b) => printStmt(b, indent)).join('');
    case 'store':
      return `${indent}${s.buf.name}[${printExpr(s.index)}] = ${printExpr(s.value)}\n`;
    case 'if':
      return `${indent}if ${printExpr(s.cond)} {\n${printStmt(s.then, i2)}${indent}}${s.else ? ` else {\n${printStmt(s.else, i2)}${indent}}` : ''}\n`;
    case 'decl':
      return `${indent}let ${s.v.name}: ${s.v.dtype} = ${printExpr(s.init)}\n${printStmt(s.body, indent)}`;
    case 'assign':
      return `${indent}${s.v.name} = ${printExpr(s.value)}\n`;
    case 'alloc':
      return `${indent}alloc ${s.buf.name}: ${s.buf.dtype}[${s.buf.size}] (${s.buf.scope})\n${printStmt(s.body, indent)}`;
    case 'barrier':
      return `${indent}barrier()\n`;
  }
}

/** A launch as one line: `launch grid [4, 1, 1] block [64, 1, 1]`. */
export const printLaunch = (l: GpuLaunch): string =>
  `launch grid [${l.grid.join(', ')}] block [${l.block.join(', ')}]${l.foldedX ? ` (blockIdx.x = x + y * ${l.grid[0]})` : ''}`;

export function printPrimFunc(f: PrimFunc): string {
  const sig = (b: Buffer) => `${b.name}: ${b.dtype}[${b.size}]`;
  const launches = f.launches;
  const body = launches
    ? kernelStages(f)
        .map(
          (s, i) => `  // stage ${i}: ${launches[i] ? printLaunch(launches[i]) : 'no launch'}\n${printStmt(s, '  ')}`,
        )
        .join('')
    : printStmt(f.body, '  ');
  return (
    `kernel ${f.name}(${[...f.inputs, ...f.outputs].map(sig).join(', ')})` +
    (f.temps.length ? ` temps(${f.temps.map(sig).join(', ')})` : '') +
    ` {\n${body}}\n`
  );
}

/** A kernel's stages, its top-level statements: a WebAssembly phase, a WGSL shader, a PTX entry each. */
export function kernelStages(f: PrimFunc): readonly Stmt[] {
  return f.body.k === 'seq' ? f.body.body : [f.body];
}

/** The loop a phase splits among threads: the first `parallel` loop under loops of extent 1 and allocations. */
export function parallelLoop(s: Stmt): ForStmt | undefined {
  let cur: Stmt | undefined = s;
  while (cur) {
    if (cur.k === 'for' && cur.kind === 'parallel') return cur;
    if (cur.k === 'for' && cur.extent === 1) cur = cur.body;
    else if (cur.k === 'alloc') cur = cur.body;
    else return undefined;
  }
  return undefined;
}

/** For each phase of a kernel, whether it can be split among threads. */
export const kernelPhases = (f: PrimFunc): boolean[] => kernelStages(f).map((s) => parallelLoop(s) !== undefined);

/** The statements directly inside `s`. */
export function childStmts(s: Stmt): readonly Stmt[] {
  switch (s.k) {
    case 'for':
    case 'decl':
    case 'alloc':
      return [s.body];
    case 'seq':
      return s.body;
    case 'if':
      return s.else ? [s.then, s.else] : [s.then];
    default:
      return [];
  }
}

/** The expressions `s` itself holds (not those of the statements inside it), in evaluation order. */
export function ownExprs(s: Stmt): readonly Expr[] {
  switch (s.k) {
    case 'store':
      return [s.index, s.value];
    case 'if':
      return [s.cond];
    case 'decl':
      return [s.init];
    case 'assign':
      return [s.value];
    default:
      return [];
  }
}

/** Calls `f` on `s` and every statement inside it, parents first. */
export function visitStmt(s: Stmt, f: (s: Stmt) => void): void {
  f(s);
  for (const c of childStmts(s)) visitStmt(c, f);
}

/** Calls `f` on every expression the statements of `s` hold (not on their subexpressions: see visitExpr). */
export function visitStmtExprs(s: Stmt, f: (e: Expr) => void): void {
  visitStmt(s, (x) => ownExprs(x).forEach(f));
}

/** `s` with each statement directly inside it replaced by `f(child)`; `s` itself when none changed. */
export function mapChildren(s: Stmt, f: (child: Stmt) => Stmt): Stmt {
  switch (s.k) {
    case 'for':
    case 'decl':
    case 'alloc': {
      const body = f(s.body);
      return body === s.body ? s : { ...s, body };
    }
    case 'seq': {
      const body = s.body.map(f);
      return body.every((b, i) => b === s.body[i]) ? s : { k: 'seq', body };
    }
    case 'if': {
      const then = f(s.then),
        els = s.else && f(s.else);
      return then === s.then && els === s.else ? s : { ...s, then, else: els };
    }
    default:
      return s;
  }
}

/** What a rewrite replaces in the parts a statement names: its expressions, buffers and scalar variables. */
export interface StmtParts {
  expr?(e: Expr): Expr;
  buf?(b: Buffer): Buffer;
  /** Variables a `decl` binds or an `assign` writes (loop variables are left alone). */
  v?(v: Var): Var;
}

/** `s` with its own parts rewritten (not those of the statements inside it). */
export function mapOwnParts(s: Stmt, r: StmtParts): Stmt {
  const e = (x: Expr) => (r.expr ? r.expr(x) : x),
    b = (x: Buffer) => (r.buf ? r.buf(x) : x),
    v = (x: Var) => (r.v ? r.v(x) : x);
  switch (s.k) {
    case 'store':
      return { ...s, buf: b(s.buf), index: e(s.index), value: e(s.value) };
    case 'if':
      return { ...s, cond: e(s.cond) };
    case 'decl':
      return { ...s, v: v(s.v), init: e(s.init) };
    case 'assign':
      return { ...s, v: v(s.v), value: e(s.value) };
    case 'alloc':
      return r.buf ? { ...s, buf: b(s.buf) } : s;
    default:
      return s;
  }
}

/** `s` with the parts of every statement in it rewritten, parents before the statements inside them. */
export function mapStmtParts(s: Stmt, r: StmtParts): Stmt {
  return mapChildren(mapOwnParts(s, r), (c) => mapStmtParts(c, r));
}

/** `s` with `f` applied to every expression its statements hold. */
export const mapStmtExprs = (s: Stmt, f: (e: Expr) => Expr): Stmt => mapStmtParts(s, { expr: f });

/** A loop bound to a GPU tag, with every statement around it in its stage. */
export interface BoundLoop {
  readonly loop: ForStmt;
  readonly ancestors: ReadonlySet<Stmt>;
}

/** The loops of one stage bound to one tag, in program order, and how many ids the tag needs. */
export interface TagLoops {
  readonly loops: readonly BoundLoop[];
  /**
   * Each loop nested in the one before: one row-major id, of the product of their extents (the implicit fuse of
   * gpu-schedule.ts). Otherwise the loops are side by side and share the largest extent.
   */
  readonly chain: boolean;
  readonly size: number;
}

/**
 * The loops of one stage (one launch) bound to each GPU tag. `mixed` is a loop whose tag has loops nested in one
 * place and side by side in another, which no launch can index consistently.
 */
export function threadLoops(stage: Stmt): {
  readonly tags: ReadonlyMap<ThreadTag, TagLoops>;
  readonly mixed?: ForStmt;
} {
  const byTag = new Map<ThreadTag, BoundLoop[]>();
  const walk = (s: Stmt, ancestors: readonly Stmt[]): void => {
    if (s.k === 'for' && isThreadTag(s.kind)) {
      const loops = byTag.get(s.kind) ?? [];
      loops.push({ loop: s, ancestors: new Set(ancestors) });
      byTag.set(s.kind, loops);
    }
    for (const c of childStmts(s)) walk(c, [...ancestors, s]);
  };
  walk(stage, []);
  const tags = new Map<ThreadTag, TagLoops>();
  let mixed: ForStmt | undefined;
  for (const [tag, loops] of byTag) {
    const chain = loops.every((l, i) => i === 0 || l.ancestors.has(loops[i - 1].loop));
    const nested = loops.find((l) => loops.some((o) => l.ancestors.has(o.loop)));
    if (!chain && nested) mixed ??= nested.loop;
    const extents = loops.map((l) => l.loop.extent);
    tags.set(tag, { loops, chain, size: chain ? extents.reduce((a, b) => a * b, 1) : Math.max(...extents) });
  }
  return { tags, mixed };
}

/**
 * The launch a stage's bound loops imply: a tag's size along its dimension, 1 where no loop is bound to it. With
 * `maxGridX`, a grid x above it folds into grid y when blockIdx.y is unused (the launch binder's rule).
 */
export function impliedLaunch(tags: ReadonlyMap<ThreadTag, TagLoops>, maxGridX?: number): GpuLaunch {
  const size = (t: ThreadTag) => tags.get(t)?.size ?? 1;
  const block = THREAD_INDEX_TAGS.map(size) as [number, number, number];
  const grid = BLOCK_TAGS.map(size) as [number, number, number];
  if (maxGridX !== undefined && grid[0] > maxGridX && !tags.has('blockIdx.y'))
    return { grid: [maxGridX, Math.ceil(grid[0] / maxGridX), grid[2]], block, foldedX: true };
  return { grid, block };
}
