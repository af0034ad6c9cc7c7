// The GPU launch binder every GPU backend runs last: per stage (top-level statement, one launch), the loops bound
// to blockIdx.* / threadIdx.* become scalar `let`s of their index computed from the GPU's index variables
// (GPU_INDEX_VARS in src/schedule/loop-ir.ts), and the stage gets a launch record (PrimFunc.launches). An emitter
// then only maps those six variables to its registers or builtins. The rules, with the limits from TargetCaps:
//  - per tag, loops nested in one chain form one row-major linearized id (the implicit fuse of
//    src/schedule/gpu-schedule.ts): the tag's size is the product of their extents, and a loop's index is
//    (id / inner extents) % extent (without the % where the loops outside it run once);
//  - per tag, loops side by side (sibling parts of one stage) share the largest extent: the others are guarded,
//    `if (i < extent)`, so the surplus ids skip them;
//  - grid x above the target's maxGrid[0] (WebGPU: 65535) folds into grid y when blockIdx.y is unused: blockIdx.x
//    then reads x + y * grid[0] and the ids past the count are guarded off (a condition uniform over the block,
//    so a barrier below it stays in uniform control flow);
//  - a stage with a tag of size 0 has nothing to do: its body is empty and its grid [0, 0, 0];
//  - in a kernel for run-time sizes, the launch also says how many ids of each block index a run needs, from the
//    run counts of its loops (src/schedule/run-size-guards.ts): the runtime sizes the grid from the symbols;
//  - threads per block, block dims and grid dims over the limits: a KilnError with the target's code.
import type { KilnErrorCode } from '../../runtime/errors.js';
import { KilnError } from '../../runtime/errors.js';
import { type Expr, add, div, int, lt, max, min, mod, mul } from '../../tensor-expr/expr.js';
import {
  BLOCK_TAGS,
  GPU_INDEX_VARS,
  type GpuLaunch,
  type PrimFunc,
  type Stmt,
  type TagLoops,
  THREAD_INDEX_TAGS,
  type ThreadTag,
  impliedLaunch,
  kernelStages,
  mapChildren,
  threadLoops,
} from '../../schedule/loop-ir.js';
import type { LoopPass } from '../../schedule/loop-passes.js';
import type { GpuLimits, TargetCaps } from './target-caps.js';

/** How a backend reports a launch over its target's limits. */
export interface LaunchErrors {
  /** KilnError code (E_UNSUPPORTED where a model can hit it, E_INTERNAL where only a schedule bug can). */
  readonly code: KilnErrorCode;
  /** Message prefix, e.g. 'wgsl' or 'PTX codegen'. */
  readonly prefix: string;
  /** What a block and a grid are called on the target, e.g. 'workgroup' / 'dispatch'. */
  readonly block?: string;
  readonly grid?: string;
}

/** How one bound loop's index derives from its tag's id. */
interface Binding {
  readonly tag: ThreadTag;
  readonly div: number;
  readonly rem: boolean;
  readonly guard: boolean;
}

/** One stage with its bound loops replaced, and its launch; `where` names it in messages. */
export function bindStage(
  s: Stmt,
  limits: GpuLimits,
  errors: LaunchErrors,
  where: string,
): { stage: Stmt; launch: GpuLaunch } {
  const fail = (code: KilnErrorCode, msg: string): never => {
    throw new KilnError(code, `${errors.prefix}: ${where} ${msg}`, {
      hint: code === 'E_UNSUPPORTED' ? 'compile for target wasm, or report the model' : undefined,
    });
  };
  const { tags, mixed } = threadLoops(s);
  if (mixed) fail('E_INTERNAL', `has loops bound to ${mixed.kind} nested in one place and side by side in another`);
  const d = (t: ThreadTag) => tags.get(t)?.size ?? 1;
  if ([...tags.values()].some((t) => t.size <= 0)) {
    // nothing to compute: an empty grid (runtimes skip the launch)
    const block = THREAD_INDEX_TAGS.map((t) => Math.max(1, d(t))) as [number, number, number];
    return { stage: { k: 'seq', body: [] }, launch: { grid: [0, 0, 0], block } };
  }

  let launch = impliedLaunch(tags, limits.maxGrid[0]);
  const { block, grid } = launch;
  const threads = block[0] * block[1] * block[2];
  const blockName = errors.block ?? 'block';
  if (threads > limits.maxThreadsPerBlock)
    fail(
      errors.code,
      `has a ${blockName} of ${block.join('x')} = ${threads} threads, over the ${limits.maxThreadsPerBlock} every ${blockName} may have`,
    );
  block.forEach((n, i) => {
    if (n > limits.maxBlockDim[i])
      fail(errors.code, `has ${n} threads along ${THREAD_INDEX_TAGS[i]}, over the limit of ${limits.maxBlockDim[i]}`);
  });
  grid.forEach((n, i) => {
    if (n > limits.maxGrid[i])
      fail(
        errors.code,
        `needs ${BLOCK_TAGS.map(d).join('x')} blocks, over the ${errors.grid ?? 'launch'} limit of ${limits.maxGrid.join('x')}`,
      );
  });
  const runIds = BLOCK_TAGS.map((t) => runIdsOf(tags.get(t)));
  if (runIds.some((e) => e)) launch = { ...launch, runIds };
  // ids each tag is launched with (blockIdx.x over x and y when folded)
  const launched = (t: ThreadTag) => (t === 'blockIdx.x' && launch.foldedX ? grid[0] * grid[1] : d(t));

  const bound = new Map<Stmt, Binding>();
  for (const [tag, { loops, chain }] of tags) {
    const n = launched(tag);
    if (chain) {
      // (id / inner) % extent; no % where the loops outside it run once (id / inner < extent already)
      let inner = 1;
      for (let i = loops.length - 1; i >= 0; i--) {
        const outer = d(tag) / (inner * loops[i].loop.extent);
        bound.set(loops[i].loop, { tag, div: inner, rem: outer > 1, guard: i === 0 && n > d(tag) });
        inner *= loops[i].loop.extent;
      }
    } else {
      for (const l of loops) bound.set(l.loop, { tag, div: 1, rem: false, guard: l.loop.extent < n });
    }
  }

  const rewrite = (x: Stmt): Stmt => {
    const b = x.k === 'for' ? bound.get(x) : undefined;
    if (!b || x.k !== 'for') return mapChildren(x, rewrite);
    if (x.extent <= 0) return { k: 'seq', body: [] }; // a sibling part over nothing
    const body = rewrite(x.body);
    let init: Expr = GPU_INDEX_VARS[b.tag];
    if (x.extent === 1 && !b.guard) init = int(0);
    else {
      if (b.div > 1) init = div(init, int(b.div));
      if (b.rem) init = mod(init, int(x.extent));
    }
    return {
      k: 'decl',
      v: x.v,
      init,
      body: b.guard ? { k: 'if', cond: lt(x.v, int(x.extent)), then: body } : body,
    };
  };
  return { stage: rewrite(s), launch };
}

/**
 * The ids of a block index a run needs, from its loops' run counts (a kernel for run-time sizes, ForStmt.runCount):
 * along a chain, the linear id of the last tuple of counts plus one (0 where a count is 0); side by side, the
 * largest. Undefined where no loop has a count (every id).
 */
function runIdsOf(t: TagLoops | undefined): Expr | undefined {
  if (!t) return undefined;
  const counts = t.loops.map(({ loop }) => (loop.runCount?.extent === loop.extent ? loop.runCount.count : undefined));
  if (counts.every((c) => !c)) return undefined;
  if (!t.chain) return counts.map((c, i) => c ?? int(t.loops[i].loop.extent)).reduce((a, b) => max(a, b));
  let inner = 1,
    last = 1,
    ids: Expr | undefined;
  for (let i = t.loops.length - 1; i >= 0; i--) {
    const { extent } = t.loops[i].loop;
    const c = counts[i];
    if (c) {
      const term = inner === 1 ? c : mul(c, inner);
      ids = ids ? add(ids, term) : term;
      last -= inner;
    } else last += (extent - 1) * inner;
    inner *= extent;
  }
  // (a count of 0: nothing to run)
  return counts.reduce<Expr>((a, c) => (c ? mul(a, min(c, 1)) : a), last ? add(ids!, last) : ids!);
}

/** The binder as the last loop pass of a GPU backend: every stage bound, the launches stored on the PrimFunc. */
export function bindLaunchPass(caps: TargetCaps, errors: LaunchErrors): LoopPass {
  const limits = caps.gpu;
  if (!limits) throw new KilnError('E_INTERNAL', `target ${caps.name} has no GPU launch limits`);
  return {
    name: 'bind-launch',
    run: (f: PrimFunc): PrimFunc => {
      const bound = kernelStages(f).map((s, i) => bindStage(s, limits, errors, `kernel ${f.name} stage ${i}`));
      return { ...f, body: { k: 'seq', body: bound.map((b) => b.stage) }, launches: bound.map((b) => b.launch) };
    },
  };
}
