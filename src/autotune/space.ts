// The search space of one kernel, derived from its compute (no per-operator templates): for each stage of the
// kernel's schedule, a set of decisions whose domains come from the stage's axes and extents.
//  - a float32 sum/max/min reduction with an output axis to tile (matmul, conv, pooling): which spatial axis runs in
//    SIMD lanes (the target's vector width: 4 lanes on WebAssembly, 8 or 16 natively) and how many vectors wide,
//    which axis gives the register-tile rows (or up to three adjacent axes fused into one, as a pointwise
//    convolution's H*W) and how many, an outer (cache) tile of each,
//    which reduction axis is split and how deep its inner part is unrolled, whether it is cut into cache blocks
//    whose loop runs outside the tile loops (K-blocking), the order of the reduction loops and of the outer loops,
//    whether the tile accumulates in registers (cacheWrite), and whether one of the tensors it reads is staged per
//    reduction step in a buffer (cacheRead; of an inlined producer: compute_at);
//  - a lane reduction (no output axis to tile: softmax, layernorm, reduce ops): how many partial vectors
//    accumulate, how deep the loop over them is unrolled;
//  - an elementwise output stage: vectorized or not, unroll depth;
//  - an injective producer: inlined into its consumers or computed at the root;
//  - anything else keeps its default steps.
// A candidate (Decisions) turns into a TraceStep[] that Schedule.apply replays.
import type { Schedule, Stage, TraceStep } from '../schedule/schedule.js';
import {
  type TileOptions,
  WASM_TILES,
  defaultTrace,
  laneReductionSteps,
  registerTileShape,
  threadAndUnrollSteps,
  vectorizeSteps,
  worthMaterializing,
} from '../schedule/cpu-schedule.js';
import type { Rng } from './rng.js';

export type Value = number | boolean | number[];
/** A domain: a list of values, or all permutations of 0..n-1. */
export type Domain = { values: Value[] } | { perm: number };

/** A decision; its domain may depend on the decisions before it in the same stage. */
export interface Field {
  name: string;
  domain: (d: Record<string, Value>) => Domain;
}

export interface StageSpace {
  /** The stage index, or a name for a group of decisions over the whole kernel (the GPU space's 'gpu'). */
  stage: number | string;
  kind: 'reduce' | 'lane' | 'ewise' | 'inline' | 'fixed' | 'gpu';
  fields: Field[];
  trace: (d: Record<string, Value>) => TraceStep[];
  /** The decisions that reproduce the default schedule of this stage (undefined: default is outside the space). */
  defaults?: Record<string, Value>;
}

/** One candidate: a value for every field of every tunable stage. */
export interface Decisions {
  readonly [stage: string]: Readonly<Record<string, Value>>;
}

const divisorsOf = (n: number, within: readonly number[]) => within.filter((v) => v <= n && n % v === 0);
const divisorsUpTo = (n: number, max: number) => {
  const r: number[] = [];
  for (let d = 1; d <= Math.min(n, max); d++) if (n % d === 0) r.push(d);
  return r;
};
const inDomain = (dom: Domain, v: Value | undefined): boolean => {
  if (v === undefined) return false;
  if ('perm' in dom)
    return Array.isArray(v) && v.length === dom.perm && [...v].sort((a, b) => a - b).every((x, i) => x === i);
  return dom.values.some((x) => x === v);
};
const sampleDomain = (dom: Domain, rng: Rng): Value =>
  'perm' in dom ? rng.shuffle(Array.from({ length: dom.perm }, (_, i) => i)) : rng.pick(dom.values);

const TILED_OPS = ['sum', 'max', 'min'];
/** Reduction block sizes of K-blocking (the block loop runs outside the tile loops). */
const K_BLOCKS = [64, 128, 256, 512];
/** Reductions at least this long (all axes together) may be K-blocked. */
const K_BLOCK_MIN = 256;

function reduceSpace(st: Stage, stage: number, defaultParallel: boolean, tiles: TileOptions): StageSpace | undefined {
  const r = st.reduction;
  if (!r || !TILED_OPS.includes(r.op) || st.tensor.dtype !== 'float32') return undefined;
  // a reduction without an output axis to tile keeps its default (lane reduction: laneSpace)
  const shape = registerTileShape(st, tiles);
  if (!shape) return undefined;
  // float32 lanes per vector, as the default tile has them (the target's, or half for a narrow lane axis)
  const L = shape.lanes;
  const S = st.roots.filter((a) => !a.reduce),
    R = st.roots.filter((a) => a.reduce);
  // lanes along any axis at least L wide (a last tile that does not fit is shifted back: shiftTail), or along the
  // default's lane axis fused with the ones before it (a narrow row of a pointwise convolution's H*W); rows along
  // any other axis, or along several adjacent ones fused into one (a pointwise convolution's H*W), the last tile
  // of rows possibly partial (its extra rows computed from clamped indices)
  const vecAxes = S.map((a, i) => ({ a, i }))
    .filter(({ a, i }) => a.extent >= L || i === shape.j)
    .map(({ i }) => i);
  // axes fused into the lane axis (a pointwise convolution's H*W, by the operator's hint): the lane axis and the
  // ones before it
  const laneAxes = (d: Record<string, Value>) => {
    const v = d.vec as number,
      k = (d.lanes as number | undefined) ?? 1;
    return S.map((_, i) => i).slice(v - k + 1, v + 1);
  };
  const laneExtent = (d: Record<string, Value>) => laneAxes(d).reduce((p, i) => p * S[i].extent, 1);
  // widths that divide the axis, and others with the last tile shifted back (as the default may choose: 1-3
  // vectors, or 8 for a single row)
  const vjDomain = (n: number) =>
    [1, 2, 3, 4, 6, 8].filter((v) => (n % L === 0 && (n / L) % v === 0) || ((v <= 3 || v === 8) && L * v <= n));
  if (!vecAxes.length || !R.length) return undefined;
  const rowAxes = (d: Record<string, Value>) => {
    const row = d.row as number,
      k = (d.rows as number | undefined) ?? 1;
    return row < 0 ? [] : S.map((_, i) => i).slice(row - k + 1, row + 1);
  };
  const rowExtent = (d: Record<string, Value>) => rowAxes(d).reduce((p, i) => p * S[i].extent, 1);
  const others = (d: Record<string, Value>) => {
    const rs = rowAxes(d);
    const ls = laneAxes(d);
    return S.map((_, i) => i).filter((i) => !ls.includes(i) && !rs.includes(i));
  };
  const totalR = R.reduce((p, a) => p * a.extent, 1);
  const nSlots = S.length - 1 + 5; // other spatial axes (at most S-1) + the K block, J0, J1, I0, I1
  const fields: Field[] = [
    { name: 'vec', domain: () => ({ values: vecAxes }) },
    {
      name: 'lanes',
      domain: (d) => ({
        values: (d.vec === shape.j && shape.laneAxes > 1 ? [1, shape.laneAxes] : [1]).filter(
          (k) => laneExtent({ ...d, lanes: k }) >= L,
        ),
      }),
    },
    { name: 'vj', domain: (d) => ({ values: vjDomain(laneExtent(d)) }) },
    {
      name: 'row',
      domain: (d) => ({ values: [-1, ...S.map((_, i) => i).filter((i) => !laneAxes(d).includes(i))] }),
    },
    // axes fused into the row axis: the row axis and up to two before it (the lane axis never among them)
    {
      name: 'rows',
      domain: (d) => {
        const row = d.row as number;
        const ks = [1];
        for (let k = 2; k <= 3 && row - k + 1 >= 0 && !laneAxes(d).includes(row - k + 1); k++) ks.push(k);
        return { values: row < 0 ? [1] : ks };
      },
    },
    {
      name: 'vi',
      domain: (d) => ({
        values:
          (d.row as number) < 0
            ? [1]
            : [1, 2, 3, 4, 5, 6, 7, 8].filter((v) => v <= rowExtent(d) && v * (d.vj as number) <= tiles.registers),
      }),
    },
    {
      name: 'tj',
      domain: (d) => {
        const n = Math.ceil(laneExtent(d) / L / (d.vj as number));
        return { values: divisorsUpTo(n, 64).filter((t) => t === 1 || t < n) };
      },
    },
    {
      name: 'ti',
      domain: (d) => {
        if ((d.row as number) < 0) return { values: [1] };
        const n = Math.ceil(rowExtent(d) / (d.vi as number));
        return { values: divisorsUpTo(n, 64).filter((t) => t === 1 || t < n) };
      },
    },
    { name: 'rsplit', domain: () => ({ values: R.map((_, i) => i) }) },
    { name: 'unroll', domain: (d) => ({ values: divisorsOf(R[d.rsplit as number].extent, [1, 2, 4, 8]) }) },
    { name: 'rorder', domain: () => ({ perm: R.length }) },
    { name: 'order', domain: () => ({ perm: nSlots }) },
    { name: 'cacheWrite', domain: () => ({ values: [true, false] }) },
    // K-blocking: the split reduction axis in blocks of kblock (0: none), the block loop at the K slot of the outer
    // loops (by default outside the tile loops), the tile reloading its partial sums from the output for every block after the first. Long
    // reductions only, accumulating in registers, with lane tiles that fit the axis (no shifted last tile: it
    // would add its overlap twice)
    {
      name: 'kblock',
      domain: (d) => {
        const ext = R[d.rsplit as number].extent,
          n = laneExtent(d);
        if (!d.cacheWrite || totalR < K_BLOCK_MIN || n % (L * (d.vj as number)) !== 0) return { values: [0] };
        return { values: [0, ...K_BLOCKS.filter((b) => b < ext && ext % b === 0 && b % (d.unroll as number) === 0)] };
      },
    },
    // where a producer is computed: -1 where the tile reads it (inlined, or materialized at the root), or input k
    // (st.readTensors()[k]) staged per outermost reduction step in a task-private buffer, an inlined producer
    // computed there once per element (compute_at); only with reduction loops inside that step
    {
      name: 'staged',
      domain: (d) => {
        if (!d.cacheWrite || d.kblock || ((d.unroll as number) === 1 && R.length < 2)) return { values: [-1] };
        return { values: [-1, ...st.readTensors().map((_, k) => k)] };
      },
    },
    // the outermost tile loop runs across threads (a no-op where the runtime has one thread)
    { name: 'parallel', domain: () => ({ values: [false, true] }) },
  ];
  const trace = (d: Record<string, Value>): TraceStep[] => {
    const steps: TraceStep[] = [];
    const extent = new Map<string, number>(st.roots.map((a) => [a.name, a.extent]));
    const split = (axis: string, factor: number, shiftTail = false): [string, string] => {
      const n = extent.get(axis) ?? factor;
      shiftTail &&= n % factor !== 0;
      steps.push({ p: 'split', stage, axis, factor, ...(shiftTail ? { shiftTail } : {}) });
      extent.set(`${axis}.o`, Math.ceil(n / factor)).set(`${axis}.i`, factor);
      return [`${axis}.o`, `${axis}.i`];
    };
    const vj = d.vj as number,
      row = d.row as number,
      vi = d.vi as number;
    const tj = d.tj as number,
      ti = d.ti as number,
      unroll = d.unroll as number,
      kblock = (d.kblock as number | undefined) ?? 0;
    // fused rows, then fused lanes, first, as the default does (the axes are still adjacent roots)
    const fuse = (roots: string[]) => {
      let name = roots[0];
      for (const a of roots.slice(1)) {
        steps.push({ p: 'fuse', stage, outer: name, inner: a });
        extent.set(`${name}*${a}`, extent.get(name)! * extent.get(a)!);
        name = `${name}*${a}`;
      }
      return name;
    };
    const rowName = fuse(rowAxes(d).map((i) => S[i].name)),
      laneName = fuse(laneAxes(d).map((i) => S[i].name));
    // overlapping last tile only where the tile accumulates in registers (the alternative accumulates in the output)
    const [jo, ji] = split(laneName, L * vj, !!d.cacheWrite);
    const [jio, jii] = split(ji, L);
    let iLevels: string[] = [],
      ii: string | undefined;
    if (row >= 0) {
      let io = rowName;
      if (vi > 1) [io, ii] = split(io, vi);
      iLevels = [io];
    }
    let jLevels = [jo];
    if (tj > 1) jLevels = split(jo, tj);
    if (row >= 0 && ti > 1) iLevels = split(iLevels[0], ti);
    const rs = R[d.rsplit as number].name;
    let kb: string | undefined,
      rk = rs;
    if (kblock > 0) [kb, rk] = split(rs, kblock);
    let ri: string | undefined,
      ro = rk;
    if (unroll > 1) [ro, ri] = split(rk, unroll);
    const rLeaves = (d.rorder as number[]).map((k) => (R[k].name === rs ? ro : R[k].name));
    // outer loops: slots 0..S-2 are the other spatial axes, then K, J0, J1, I0, I1 (missing ones dropped): in the
    // default order the K block loop runs outside the tile loops, inside batch/head axes
    const oth = others(d).map((i) => S[i].name);
    const slotName = (s: number): string | undefined => {
      const k = s - (S.length - 1);
      if (k < 0) return oth[s];
      return [kb, jLevels[0], jLevels[1], iLevels[0], iLevels[1]][k];
    };
    const outer = (d.order as number[]).map(slotName).filter((n): n is string => n !== undefined);
    // a tile's outer level stays outside its inner level
    for (const lv of [jLevels, iLevels]) {
      if (lv.length !== 2) continue;
      const a = outer.indexOf(lv[0]),
        b = outer.indexOf(lv[1]);
      if (a > b) {
        outer[a] = lv[1];
        outer[b] = lv[0];
      }
    }
    const order = [...outer, ...rLeaves, ...(ri ? [ri] : []), ...(ii ? [ii] : []), jio, jii];
    steps.push({ p: 'reorder', stage, order });
    for (const t of [...(ri ? [ri] : []), ...(ii ? [ii] : []), jio])
      steps.push({ p: 'annotate', stage, axis: t, kind: 'unrolled' });
    steps.push({ p: 'annotate', stage, axis: jii, kind: 'vectorized' });
    if (d.cacheWrite) steps.push({ p: 'cacheWrite', stage });
    if (((d.staged as number | undefined) ?? -1) >= 0)
      steps.push({ p: 'cacheRead', stage, input: d.staged as number, at: rLeaves[0] });
    // threads split the outermost loop that has more than one iteration (as in the default schedule), unless it is
    // the K block loop (iterations that depend on each other)
    const par = outer.find((n) => (extent.get(n) ?? 2) > 1);
    if (d.parallel && par && par !== kb) steps.push({ p: 'annotate', stage, axis: par, kind: 'parallel' });
    return steps;
  };
  // the default schedule's tile (registerTileTrace), when the space holds it
  // (slots: the other spatial axes, then K, J0, J1, I0, I1; the operator's rowTilesOuter hint puts I0 before J0)
  const K = S.length - 1;
  const defaultOrder = Array.from({ length: nSlots }, (_, i) => i);
  if (st.tensor.hints?.rowTilesOuter && shape.i >= 0) defaultOrder.splice(K + 1, 3, K + 3, K + 1, K + 2);
  let defaults: Record<string, Value> | undefined = {
    vec: shape.j,
    lanes: shape.laneAxes,
    vj: shape.vj,
    row: shape.i,
    rows: shape.i < 0 ? 1 : shape.rows,
    vi: shape.vi,
    tj: 1,
    ti: 1,
    rsplit: 0,
    unroll: 1,
    rorder: R.map((_, i) => i),
    order: defaultOrder,
    cacheWrite: true,
    kblock: 0,
    staged: -1,
    parallel: defaultParallel,
  };
  if (
    !fields.every((f) => {
      const dom = f.domain(defaults!);
      return 'perm' in dom ? true : dom.values.includes(defaults![f.name]);
    })
  )
    defaults = undefined;
  return { stage, kind: 'reduce', fields, trace, defaults };
}

/**
 * A reduction whose default is a lane reduction (laneReductionTrace: no output axis to tile, or rows read
 * contiguously: softmax's max and sum, layernorm's sums, global pooling): its last reduction axis in 4 SIMD lanes, `acc` independent partial
 * vectors (more chains in flight), the loop over them unrolled `unroll` deep, threads on the outermost spatial loop.
 */
function laneSpace(st: Stage, stage: number, defaultSteps: readonly TraceStep[]): StageSpace | undefined {
  const last = st.roots.filter((a) => a.reduce).pop();
  if (
    !last ||
    !defaultSteps.some(
      (s) => s.p === 'annotate' && s.kind === 'vectorized' && [`${last.name}.i`, `${last.name}.i.i`].includes(s.axis),
    )
  )
    return undefined;
  // the default's partial vectors: its first split of the row is 4 lanes times their count
  const rowSplit = defaultSteps.find((s) => s.p === 'split' && s.axis === last.name);
  const defaultAcc = rowSplit && rowSplit.p === 'split' ? rowSplit.factor / 4 : 1;
  const defaultParallel = defaultSteps.some((s) => s.p === 'annotate' && s.kind === 'parallel');
  const fields: Field[] = [
    {
      name: 'acc',
      domain: () => ({
        values: divisorsOf(last.extent / 4, [1, 2, 3, 4]).filter((a) => a === 1 || last.extent / (4 * a) >= 2),
      }),
    },
    { name: 'unroll', domain: (d) => ({ values: divisorsOf(last.extent / (4 * (d.acc as number)), [1, 2, 4, 8]) }) },
    { name: 'parallel', domain: () => ({ values: defaultParallel ? [true, false] : [false] }) },
  ];
  const trace = (d: Record<string, Value>): TraceStep[] => {
    const steps = laneReductionSteps(stage, last.name, d.acc as number, d.unroll as number);
    const par = st.roots.find((a) => !a.reduce && a.extent > 1);
    if (d.parallel && par) steps.push({ p: 'annotate', stage, axis: par.name, kind: 'parallel' });
    return steps;
  };
  return { stage, kind: 'lane', fields, trace, defaults: { acc: defaultAcc, unroll: 1, parallel: defaultParallel } };
}

/** Steps of an elementwise stage: SIMD lanes or not, the loop over vectors unrolled by `unroll`, threads on the
 * first loop with more than one iteration (as in the default schedule). */
function elementwiseSteps(st: Stage, stage: number, vectorize: boolean, unroll: number, lanes: number): TraceStep[] {
  const inner = st.roots.filter((a) => !a.reduce).pop();
  if (!inner) return []; // a 0-d stage (an embedded scalar constant): one iteration, nothing to split
  const vector = vectorizeSteps(st, stage, st.laneLayout, lanes);
  const steps: TraceStep[] = [];
  let outer = inner.name;
  if (vectorize && vector.length) {
    steps.push(...vector);
    outer = vector.outer!;
  }
  const outerExtent = outer === inner.name ? inner.extent : vector.outerExtent!;
  if (unroll > 1)
    steps.push(
      { p: 'split', stage, axis: outer, factor: unroll },
      { p: 'annotate', stage, axis: `${outer}.i`, kind: 'unrolled' },
    );
  const loops: [string, number][] = [
    ...st.roots.filter((a) => !a.reduce && a !== inner).map((a): [string, number] => [a.name, a.extent]),
    unroll > 1 ? [`${outer}.o`, Math.ceil(outerExtent / unroll)] : [outer, outerExtent],
  ];
  const leaves = vectorize && vector.leaves && unroll > 1 ? loopsUnrolled(vector.leaves, outer) : vector.leaves;
  steps.push(...threadAndUnrollSteps(st, stage, loops.find(([, n]) => n > 1)?.[0], vectorize ? leaves : undefined));
  return steps;
}

/** Loop names after the loop over vectors, `outer`, is split for unrolling. */
const loopsUnrolled = (leaves: readonly string[], outer: string) =>
  leaves.flatMap((n) => (n === outer ? [`${outer}.o`, `${outer}.i`] : [n]));

function ewiseSpace(st: Stage, stage: number, lanes: number): StageSpace | undefined {
  const inner = st.roots.filter((a) => !a.reduce).pop();
  if (!inner) return undefined;
  const vector = vectorizeSteps(st, stage, st.laneLayout, lanes),
    canVectorize = vector.length > 0;
  const fields: Field[] = [
    { name: 'vectorize', domain: () => ({ values: canVectorize ? [true, false] : [false] }) },
    // unroll factors that divide the loop over vectors (lanes within a row or per phase: see Stage.laneLayout)
    {
      name: 'unroll',
      domain: (d) => ({ values: divisorsOf(d.vectorize ? vector.outerExtent! : inner.extent, [1, 2, 4]) }),
    },
  ];
  const trace = (d: Record<string, Value>) =>
    elementwiseSteps(st, stage, d.vectorize as boolean, d.unroll as number, lanes);
  return { stage, kind: 'ewise', fields, trace, defaults: { vectorize: canVectorize, unroll: 1 } };
}

function inlineSpace(sch: Schedule, st: Stage, stage: number, lanes: number): StageSpace {
  return {
    stage,
    kind: 'inline',
    fields: [{ name: 'inline', domain: () => ({ values: [true, false] }) }],
    trace: (d) => (d.inline ? [{ p: 'computeInline', stage }] : elementwiseSteps(st, stage, true, 1, lanes)),
    defaults: { inline: !worthMaterializing(sch, st) },
  };
}

/**
 * A space of candidates: groups of decisions (one per tunable stage, or one for the whole kernel), each turning
 * into trace steps. Sampling, mutation and validity are generic, so one search serves every target's space.
 */
export class DecisionSpace {
  constructor(readonly stages: StageSpace[]) {}

  /** Whether any decision exists (a kernel with none is not worth tuning). */
  get tunable(): boolean {
    return this.stages.some((s) =>
      s.fields.some((f) => {
        const d = f.domain(s.defaults ?? {});
        return 'perm' in d ? d.perm > 1 : d.values.length > 1;
      }),
    );
  }

  /** Number of stages with decisions, and a rough size of the space (product of domain sizes, capped). */
  size(): number {
    let n = 1;
    for (const s of this.stages) {
      const d: Record<string, Value> = { ...(s.defaults ?? {}) };
      for (const f of s.fields) {
        const dom = f.domain(d);
        n *= 'perm' in dom ? factorial(dom.perm) : dom.values.length;
        if (!inDomain(dom, d[f.name]))
          d[f.name] = 'perm' in dom ? Array.from({ length: dom.perm }, (_, i) => i) : dom.values[0];
      }
    }
    return Math.min(n, 1e12);
  }

  /** The decisions of the default schedule, if the default lies inside the space. */
  defaults(): Decisions | undefined {
    const out: Record<string, Record<string, Value>> = {};
    for (const s of this.stages) {
      if (!s.fields.length) continue;
      if (!s.defaults) return undefined;
      out[s.stage] = s.defaults;
    }
    return out;
  }

  sample(rng: Rng): Decisions {
    const out: Record<string, Record<string, Value>> = {};
    for (const s of this.stages) {
      if (!s.fields.length) continue;
      const d: Record<string, Value> = {};
      for (const f of s.fields) d[f.name] = sampleDomain(f.domain(d), rng);
      out[s.stage] = d;
    }
    return out;
  }

  /** Changes one decision (then repairs later decisions whose domain it changed). */
  mutate(base: Decisions, rng: Rng): Decisions {
    const tunable = this.stages.filter((s) => s.fields.length);
    if (!tunable.length) return base;
    const s = rng.pick(tunable);
    const fi = rng.int(s.fields.length);
    const d: Record<string, Value> = { ...base[s.stage] };
    const f = s.fields[fi];
    const dom = f.domain(d);
    if ('perm' in dom) {
      const p = inDomain(dom, d[f.name]) ? [...(d[f.name] as number[])] : Array.from({ length: dom.perm }, (_, i) => i);
      if (p.length > 1) {
        const a = rng.int(p.length);
        let b = rng.int(p.length - 1);
        if (b >= a) b++;
        [p[a], p[b]] = [p[b], p[a]];
      }
      d[f.name] = p;
    } else {
      const others = dom.values.filter((v) => v !== d[f.name]);
      d[f.name] = others.length ? rng.pick(others) : dom.values[0];
    }
    for (const g of s.fields.slice(fi + 1)) {
      const gd = g.domain(d);
      if (!inDomain(gd, d[g.name])) d[g.name] = sampleDomain(gd, rng);
    }
    return { ...base, [s.stage]: d };
  }

  /** Whether `d` is a complete, in-domain candidate of this space (records from another Kiln may not be). */
  valid(d: Decisions): boolean {
    return this.stages.every((s) => {
      if (!s.fields.length) return true;
      const x = d[s.stage];
      return !!x && s.fields.every((f) => inDomain(f.domain(x), x[f.name]));
    });
  }

  trace(d: Decisions): TraceStep[] {
    return this.stages.flatMap((s) => (s.fields.length ? s.trace(d[s.stage]) : s.trace({})));
  }
}

/** The CPU space of a kernel (WebAssembly, or native with `tiles` of its vector registers), from its stages. */
export class SearchSpace extends DecisionSpace {
  constructor(
    readonly makeSchedule: () => Schedule,
    tiles: TileOptions = WASM_TILES,
  ) {
    super(cpuStages(makeSchedule(), tiles));
  }

  /**
   * As defaultTrace does: inlining first, then each stage's steps, then every register-tiled reduction that can
   * take the output stage as its epilogue does (fusing it is never worse: one pass over the output instead of two).
   */
  override trace(d: Decisions): TraceStep[] {
    const steps = super.trace(d);
    const ordered = [...steps.filter((s) => s.p === 'computeInline'), ...steps.filter((s) => s.p !== 'computeInline')];
    const probe = this.makeSchedule();
    try {
      for (const s of ordered) probe.apply(s);
    } catch {
      return ordered;
    } // an invalid candidate fails when built
    probe.stages.forEach((st, i) => {
      if (probe.epilogueOf(st)) ordered.push({ p: 'fuseEpilogue', stage: i });
    });
    return ordered;
  }
}

function cpuStages(sch: Schedule, tiles: TileOptions): StageSpace[] {
  const def = defaultTrace(sch, tiles);
  // a fixed stage keeps its default steps except fuseEpilogue, which SearchSpace.trace adds where the candidate
  // allows it (not when the candidate materializes a stage between the reduction and the output)
  const fixed = new Map(sch.stages.map((_, i) => [i, def.filter((s) => s.stage === i && s.p !== 'fuseEpilogue')]));
  return sch.stages.map((st, i): StageSpace => {
    if (st.tensor.hints?.recurrence) return { stage: i, kind: 'fixed', fields: [], trace: () => fixed.get(i)! };
    if (!st.isOutput && !st.hasReduction()) return inlineSpace(sch, st, i, tiles.lanes);
    // a reduction whose default runs lanes along its row (laneSpace) is tuned as one, even where an output axis
    // could hold a register tile (a row sum: rowReduction)
    const lane = st.reduction ? laneSpace(st, i, fixed.get(i)!) : undefined;
    if (lane) return lane;
    const red = st.reduction
      ? reduceSpace(
          st,
          i,
          fixed.get(i)!.some((s) => s.p === 'annotate' && s.kind === 'parallel'),
          tiles,
        )
      : undefined;
    if (red) return red;
    const ew =
      st.isOutput && !st.hasReduction() && st.tensor.dtype === 'float32' ? ewiseSpace(st, i, tiles.lanes) : undefined;
    if (ew) return ew;
    return { stage: i, kind: 'fixed', fields: [], trace: () => fixed.get(i)! };
  });
}

function factorial(n: number): number {
  let r = 1;
  for (let i = 2; i <= n; i++) r *= i;
  return r;
}
