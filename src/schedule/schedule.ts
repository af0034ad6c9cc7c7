// A schedule is a list of trace steps applied to the stages of a kernel. Steps name stages by position and
// axes by canonical names (i0.. spatial, r0.. reduction, then ".o"/".i" for split parts), so a trace recorded on
// one machine replays identically on another and can be stored, mutated and searched.
// The default schedules are rules over these primitives: cpu-schedule.ts and gpu-schedule.ts.
import type { ForKind } from './loop-ir.js';
import { type Expr, type Var, freshVar, visitExpr, substitute } from '../tensor-expr/expr.js';
import type { ComputeHints, Tensor } from '../tensor-expr/tensor.js';
import { KilnError } from '../runtime/errors.js';

/** What to do about a trace that does not fit its kernel (from a tuning record, or a bug in a schedule rule). */
export const SCHEDULE_HINT =
  'a tuning record that does not fit this kernel: tune again (kiln tune) or compile with --no-tuning; otherwise please report it with the model';

export type TraceStep =
  /**
   * Outer loop ceil(extent/factor), inner loop factor. A non-dividing split guards the indices past the end, unless
   * `shiftTail`: then the last block starts at extent - factor and overlaps the one before it (no guard, every
   * iteration full width: a partial SIMD tile becomes a full one). Recomputing an element must be harmless, so
   * this is for stages that store each output once per iteration (not ones accumulating in the output buffer).
   */
  | {
      readonly p: 'split';
      readonly stage: number;
      readonly axis: string;
      readonly factor: number;
      readonly shiftTail?: boolean;
    }
  | { readonly p: 'reorder'; readonly stage: number; readonly order: readonly string[] }
  /** Two adjacent leaves, outer then inner, become one loop named "outer*inner" (e.g. for a longer parallel loop). */
  | { readonly p: 'fuse'; readonly stage: number; readonly outer: string; readonly inner: string }
  | { readonly p: 'annotate'; readonly stage: number; readonly axis: string; readonly kind: ForKind }
  | { readonly p: 'computeInline'; readonly stage: number }
  | { readonly p: 'computeRoot'; readonly stage: number }
  /** Accumulate a reduction in a local (register) tile spanning the spatial axes inside the reduction loops. */
  | { readonly p: 'cacheWrite'; readonly stage: number }
  /**
   * Apply the kernel output's elementwise computation (bias, activation, residual add) to a cacheWrite tile as it
   * is written back, instead of storing the reduction and reading it again in a second pass.
   */
  | { readonly p: 'fuseEpilogue'; readonly stage: number }
  /**
   * Stage the values of one tensor the reduction reads (`input`: index among the distinct tensors its body loads
   * directly, in visit order; a placeholder, a materialized stage or an inlined producer, whose value is computed
   * by the fetch: then this is compute_at, the producer computed once per element of the region) in a 'shared'
   * buffer, refilled at the start of every iteration of reduction leaf `at`. The region comes from bound inference
   * over the loops inside `at` (and the thread-bound loops). GPU: workgroup memory, fetched cooperatively by the
   * workgroup's threads between barriers; CPU: a buffer private to each task (thread) in the kernel's scratch.
   * Zeros past the tensor's edges. Needs cacheWrite (the local-tile lowering).
   */
  | { readonly p: 'cacheRead'; readonly stage: number; readonly input: number; readonly at: string }
  /**
   * GPU: compute the stage's reductions across `threads` threads of a workgroup (an added 'threadIdx.x' loop
   * inside the stage's bound loops): each thread reduces a strided part of the (fused) reduction axes, the partials
   * meet in a 'shared' buffer and a log2 tree with barriers combines them (rfactor + allreduce).
   */
  | { readonly p: 'crossThreadReduce'; readonly stage: number; readonly threads: number };

const ANNOTATION: Partial<Record<ForKind, string>> = {
  parallel: 'parallel',
  vectorized: 'vectorize',
  unrolled: 'unroll',
  serial: 'serial',
};

/** A trace as primitive calls, one per line: `s1.split(i, 4)`, `s1.vectorize(i.inner)`, `s0.bind(j, threadIdx.x)`. */
export function printTrace(trace: readonly TraceStep[]): string {
  return trace
    .map((t) => {
      const s = `s${t.stage}`;
      switch (t.p) {
        case 'split':
          return `${s}.split(${t.axis}, ${t.factor}${t.shiftTail ? ', shiftTail' : ''})`;
        case 'reorder':
          return `${s}.reorder(${t.order.join(', ')})`;
        case 'fuse':
          return `${s}.fuse(${t.outer}, ${t.inner})`;
        case 'annotate':
          return ANNOTATION[t.kind] ? `${s}.${ANNOTATION[t.kind]}(${t.axis})` : `${s}.bind(${t.axis}, ${t.kind})`;
        case 'cacheRead':
          return `${s}.cacheRead(input ${t.input}, at ${t.at})`;
        case 'crossThreadReduce':
          return `${s}.crossThreadReduce(${t.threads})`;
        default:
          return `${s}.${t.p}()`;
      }
    })
    .join('\n');
}

export interface Axis {
  readonly name: string;
  readonly extent: number;
  readonly reduce: boolean;
  readonly v: Var;
  kind: ForKind;
}

interface Split {
  kind: 'split';
  parent: Axis;
  outer: Axis;
  inner: Axis;
  factor: number;
  shiftTail: boolean;
}
interface Fuse {
  kind: 'fuse';
  outer: Axis;
  inner: Axis;
  fused: Axis;
}

export class Stage {
  inlined = false;
  /** Reduction accumulated in a local tile (see the cacheWrite step). */
  cacheLocal = false;
  /** The output stage whose body is applied at this stage's tile write-back (see fuseEpilogue). */
  epilogue?: Stage;
  /** Computed inside another stage's write-back: no loop nest of its own. */
  fusedInto?: Stage;
  /** Tensors staged in shared memory (see the cacheRead step), with the leaf whose iterations refill them. */
  readonly sharedReads: { tensor: Tensor; at: string }[] = [];
  /** Threads of the workgroup tree reduction (see crossThreadReduce). */
  treeThreads?: number;
  /** How SIMD lanes map onto the innermost axis (the operator's laneRowLength / laneInterleave hints). */
  laneLayout?: ComputeHints;
  readonly roots: Axis[];
  leaves: Axis[];
  /** Splits and fuses in the order applied (rootIndex undoes them last to first). */
  readonly relations: (Split | Fuse)[] = [];
  /** The top-level reduction whose axes this stage's loops own, if any. */
  readonly reduction?: Extract<Expr, { k: 'reduce' }>;

  constructor(
    readonly tensor: Tensor,
    readonly isOutput: boolean,
  ) {
    const body = tensor.body!;
    this.reduction = body.k === 'reduce' ? body : undefined;
    const spatial = tensor.axes.map(
      (a, i): Axis => ({ name: `i${i}`, extent: a.extent, reduce: false, v: a.v, kind: 'serial' }),
    );
    const red = (this.reduction?.axes ?? []).map(
      (a, i): Axis => ({ name: `r${i}`, extent: a.extent, reduce: true, v: a.v, kind: 'serial' }),
    );
    this.roots = [...spatial, ...red];
    this.leaves = [...this.roots];
  }

  axis(name: string): Axis {
    const a = this.leaves.find((x) => x.name === name);
    if (!a)
      throw new KilnError(
        'E_INTERNAL',
        `stage ${this.tensor.name}: no leaf axis '${name}' (have ${this.leaves.map((x) => x.name).join(', ')})`,
        { hint: SCHEDULE_HINT },
      );
    return a;
  }

  /** Distinct tensors the top-level reduction's body loads directly, in visit order (cacheRead's `input`). */
  readTensors(): Tensor[] {
    const out: Tensor[] = [];
    if (this.reduction)
      visitExpr(this.reduction.body, (e) => {
        if (e.k === 'load' && !out.includes(e.buf as Tensor)) out.push(e.buf as Tensor);
      });
    return out;
  }

  /** Whether the body holds a reduction anywhere (such stages are not inlined by default). */
  hasReduction(): boolean {
    let found = false;
    visitExpr(this.tensor.body!, (e) => {
      if (e.k === 'reduce') found = true;
    });
    return found;
  }
}

export class Schedule {
  readonly stages: Stage[];
  readonly trace: TraceStep[] = [];
  /**
   * A kernel for run-time sizes: per tensor, per axis, whether it is a run-time size (set before a default trace
   * is made: the CPU's keeps threads off those axes).
   */
  runTimeAxes?: ReadonlyMap<Tensor, readonly boolean[]>;

  constructor(readonly outputs: readonly Tensor[]) {
    this.stages = topoComputes(outputs).map((t) => new Stage(t, outputs.includes(t)));
    // an elementwise stage takes the lane layout of the stage it was fused from: a producer of the same shape
    // that carries one (a Winograd output transform whose kernel output is the fused bias + activation)
    const layout = (h: ComputeHints | undefined) => (h?.laneRowLength || h?.laneInterleave ? h : undefined);
    for (const st of this.stages) {
      const same = (t: Tensor) =>
        t.shape.length === st.tensor.shape.length && t.shape.every((d, i) => d === st.tensor.shape[i]);
      st.laneLayout =
        layout(st.tensor.hints) ??
        this.stages.find((x) => x !== st && layout(x.tensor.hints) && same(x.tensor))?.tensor.hints;
    }
  }

  apply(step: TraceStep): void {
    const st = this.stages[step.stage];
    if (!st)
      throw new KilnError('E_INTERNAL', `trace step ${JSON.stringify(step)}: no stage ${step.stage}`, {
        hint: SCHEDULE_HINT,
      });
    switch (step.p) {
      case 'split': {
        const parent = st.axis(step.axis);
        const f = Math.min(step.factor, parent.extent);
        const mk = (sfx: string, extent: number): Axis => ({
          name: `${parent.name}.${sfx}`,
          extent,
          reduce: parent.reduce,
          v: freshVar(`${parent.name.replace(/\W/g, '_')}_${sfx}`),
          kind: 'serial',
        });
        const outer = mk('o', Math.ceil(parent.extent / f)),
          inner = mk('i', f);
        const shiftTail = !!step.shiftTail && parent.extent % f !== 0;
        if (shiftTail && parent.reduce)
          throw new KilnError(
            'E_INTERNAL',
            `split: shiftTail on reduction axis '${step.axis}' would count terms twice`,
            { hint: SCHEDULE_HINT },
          );
        st.relations.push({ kind: 'split', parent, outer, inner, factor: f, shiftTail });
        st.leaves.splice(st.leaves.indexOf(parent), 1, outer, inner);
        break;
      }
      case 'reorder': {
        const picked = step.order.map((n) => st.axis(n));
        const slots = picked.map((a) => st.leaves.indexOf(a)).sort((a, b) => a - b);
        slots.forEach((slot, i) => {
          st.leaves[slot] = picked[i];
        });
        break;
      }
      case 'fuse': {
        const outer = st.axis(step.outer),
          inner = st.axis(step.inner);
        const at = st.leaves.indexOf(outer);
        if (st.leaves[at + 1] !== inner)
          throw new KilnError('E_INTERNAL', `fuse: '${step.inner}' does not follow '${step.outer}' directly`, {
            hint: SCHEDULE_HINT,
          });
        if (outer.reduce !== inner.reduce)
          throw new KilnError('E_INTERNAL', 'fuse: cannot fuse a spatial and a reduction axis', {
            hint: SCHEDULE_HINT,
          });
        const fused: Axis = {
          name: `${outer.name}*${inner.name}`,
          extent: outer.extent * inner.extent,
          reduce: outer.reduce,
          v: freshVar('fused'),
          kind: 'serial',
        };
        st.relations.push({ kind: 'fuse', outer, inner, fused });
        st.leaves.splice(at, 2, fused);
        break;
      }
      case 'annotate':
        st.axis(step.axis).kind = step.kind;
        break;
      case 'computeInline':
        if (st.isOutput)
          throw new KilnError('E_INTERNAL', `computeInline: stage ${step.stage} is a kernel output`, {
            hint: SCHEDULE_HINT,
          });
        if (st.hasReduction())
          throw new KilnError('E_INTERNAL', `computeInline: stage ${step.stage} holds a reduction`, {
            hint: SCHEDULE_HINT,
          });
        st.inlined = true;
        break;
      case 'computeRoot':
        st.inlined = false;
        break;
      case 'cacheWrite':
        if (!st.reduction)
          throw new KilnError('E_INTERNAL', `cacheWrite: stage ${step.stage} has no top-level reduction`, {
            hint: SCHEDULE_HINT,
          });
        st.cacheLocal = true;
        break;
      case 'fuseEpilogue': {
        const o = this.epilogueOf(st);
        if (!o)
          throw new KilnError(
            'E_INTERNAL',
            `fuseEpilogue: stage ${step.stage} has no elementwise output stage reading it element for element`,
            { hint: SCHEDULE_HINT },
          );
        st.epilogue = o;
        o.fusedInto = st;
        break;
      }
      case 'cacheRead': {
        const t = st.readTensors()[step.input];
        if (!t)
          throw new KilnError('E_INTERNAL', `cacheRead: stage ${step.stage} reads no tensor #${step.input}`, {
            hint: SCHEDULE_HINT,
          });
        st.axis(step.at);
        st.sharedReads.push({ tensor: t, at: step.at });
        break;
      }
      case 'crossThreadReduce':
        if (!st.hasReduction())
          throw new KilnError('E_INTERNAL', `crossThreadReduce: stage ${step.stage} has no reduction`, {
            hint: SCHEDULE_HINT,
          });
        if (!(step.threads >= 2 && (step.threads & (step.threads - 1)) === 0))
          throw new KilnError('E_INTERNAL', `crossThreadReduce: ${step.threads} threads is not a power of two`, {
            hint: SCHEDULE_HINT,
          });
        if (st.reduction && st.leaves.some((a) => a.reduce && a.kind !== 'serial'))
          throw new KilnError('E_INTERNAL', 'crossThreadReduce: reduction leaves must stay serial', {
            hint: SCHEDULE_HINT,
          });
        st.treeThreads = step.threads;
        break;
    }
    this.trace.push(step);
  }

  /**
   * The output stage that can take `st` as its epilogue: the last stage, a kernel output without reductions, of
   * `st`'s shape, reading `st` (directly or through inlined stages) only at its own output index and no stage
   * materialized after `st`, and `st` read by no other materialized stage.
   */
  epilogueOf(st: Stage): Stage | undefined {
    const o = this.stages[this.stages.length - 1];
    if (!o || o === st || !o.isOutput || o.hasReduction() || !st.cacheLocal || st.isOutput) return undefined;
    if (o.tensor.shape.length !== st.tensor.shape.length || o.tensor.shape.some((d, i) => d !== st.tensor.shape[i]))
      return undefined;
    const inlined = new Map(this.stages.filter((x) => x.inlined).map((x) => [x.tensor, x]));
    // stages materialized after st are computed after st's loops, where the epilogue runs: o must not read them
    const later = new Set(
      this.stages
        .slice(this.stages.indexOf(st) + 1)
        .filter((x) => !x.inlined && x !== o)
        .map((x) => x.tensor),
    );
    let ok = true;
    // walk o's body through inlined stages, tracking each load's index in o's axes
    const walk = (e: Expr, idx: ReadonlyMap<Var, Expr>): void =>
      visitExpr(e, (x) => {
        if (x.k !== 'load') return;
        const sub = x.idx.map((i) => substituteVars(i, idx));
        if (later.has(x.buf as Tensor)) {
          ok = false;
          return;
        }
        if (x.buf === st.tensor) {
          // element for element: each index is o's own axis variable (or 0 along a dimension of extent 1)
          if (
            !sub.every(
              (i, d) =>
                i === o.tensor.axes[d].v || (o.tensor.shape[d] === 1 && i.k === 'const' && Number(i.value) === 0),
            )
          )
            ok = false;
          return;
        }
        const inner = inlined.get(x.buf as Tensor);
        if (inner) walk(inner.tensor.body!, new Map(inner.tensor.axes.map((a, d) => [a.v, sub[d]])));
      });
    walk(o.tensor.body!, new Map());
    // no other materialized stage may read st, directly or through inlined stages (st is never stored)
    const reads = (e: Expr, seen: Set<Tensor>): boolean => {
      let found = false;
      visitExpr(e, (x) => {
        if (found || x.k !== 'load') return;
        if (x.buf === st.tensor) {
          found = true;
          return;
        }
        const inner = inlined.get(x.buf as Tensor);
        if (inner && !seen.has(inner.tensor)) {
          seen.add(inner.tensor);
          found = reads(inner.tensor.body!, seen);
        }
      });
      return found;
    };
    const others = this.stages.filter((x) => x !== o && x !== st && !x.inlined);
    if (others.some((x) => reads(x.tensor.body!, new Set()))) ok = false;
    return ok ? o : undefined;
  }

  /** Expression of a root axis in terms of leaf loop variables, and the predicates non-dividing splits need. */
  /**
   * `clampSpatial`: a spatial split that runs past its parent's end gives min(index, extent - 1) instead (the
   * last valid position, read by a register tile's extra rows); applied at the split, so axes fused before it
   * stay consistent with each other.
   */
  rootIndex(
    st: Stage,
    clampSpatial = false,
  ): { index: Map<Axis, Expr>; guards: { axis: Axis; expr: Expr; extent: number }[] } {
    const index = new Map<Axis, Expr>();
    for (const l of st.leaves) index.set(l, l.v);
    const guards: { axis: Axis; expr: Expr; extent: number }[] = [];
    for (const s of [...st.relations].reverse()) {
      if (s.kind === 'fuse') {
        const f = index.get(s.fused)!,
          n: Expr = { k: 'const', dtype: 'int32', value: s.inner.extent };
        index.set(s.outer, { k: 'bin', op: 'floordiv', a: f, b: n, dtype: 'int32' });
        index.set(s.inner, { k: 'bin', op: 'floormod', a: f, b: n, dtype: 'int32' });
        continue;
      }
      const o = index.get(s.outer)!,
        i = index.get(s.inner)!;
      let start: Expr = {
        k: 'bin',
        op: 'mul',
        a: o,
        b: { k: 'const', dtype: 'int32', value: s.factor },
        dtype: 'int32',
      };
      if (s.shiftTail)
        start = {
          k: 'bin',
          op: 'min',
          a: start,
          b: { k: 'const', dtype: 'int32', value: s.parent.extent - s.factor },
          dtype: 'int32',
        };
      const e: Expr = { k: 'bin', op: 'add', a: start, b: i, dtype: 'int32' };
      const partial = s.parent.extent % s.factor !== 0 && !s.shiftTail;
      index.set(
        s.parent,
        partial && clampSpatial && !s.parent.reduce
          ? { k: 'bin', op: 'min', a: e, b: { k: 'const', dtype: 'int32', value: s.parent.extent - 1 }, dtype: 'int32' }
          : e,
      );
      if (partial) guards.push({ axis: s.parent, expr: e, extent: s.parent.extent });
    }
    return { index, guards };
  }
}

/** Compute tensors reachable from the outputs, producers before consumers. */
export function topoComputes(outputs: readonly Tensor[]): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  const visit = (t: Tensor) => {
    if (seen.has(t) || t.kind !== 'compute') return;
    seen.add(t);
    visitExpr(t.body!, (e) => {
      if (e.k === 'load') visit(e.buf as Tensor);
    });
    order.push(t);
  };
  outputs.forEach(visit);
  return order;
}

/** Substitutes variables, returning the very same node when nothing changes (identity comparisons rely on it). */
function substituteVars(e: Expr, m: ReadonlyMap<Var, Expr>): Expr {
  if (e.k === 'var') return m.get(e) ?? e;
  return m.size ? substitute(e, m) : e;
}
