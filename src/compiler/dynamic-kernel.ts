// Kernels for run-time sizes (docs/dynamic-shapes.md): a primitive function with symbolic dims becomes one kernel
// that runs at any size in the symbols' ranges. Its tensors keep the layouts of the upper bounds; what the operator
// definitions compute from sizes is found by building the tensor expressions at three points of the ranges and
// comparing them: every integer or float constant and every reduction extent that changes between the points must
// be a dim of the function (matched by its values at the three points), and becomes an expression of the symbol
// values the kernel reads from a small int32 buffer at run time. Reductions over a symbolic axis stop at the run-time
// size (their body masked to the identity beyond it); spatial axes run to the bound, where the extra positions are
// never read by a valid one. Anything else that depends on sizes (another structure, a constant that is no dim)
// is E_DYNAMIC, naming the operators.
import { KilnError } from '../runtime/errors.js';
import { isFloat } from '../runtime/dtype.js';
import type { FuncNode, GExpr } from '../relay-ir/expr.js';
import { isFuncCall, postOrder } from '../relay-ir/expr.js';
import type { OpSpec } from '../relay-ir/op.js';
import { type Dim, type TensorType, isStatic } from '../relay-ir/types.js';
import { specializeDims } from '../relay-ir/passes/specialize-dims.js';
import { type DimRanges, dimProduct, dimSymbols, foldDim, substituteDim, withDimRanges } from '../relay-ir/sym-dim.js';
import {
  type Buf,
  type Expr,
  type IterVar,
  add,
  all,
  cast,
  constant,
  div,
  eq,
  floordiv,
  int,
  load,
  lt,
  mapExpr,
  max,
  min,
  mul,
  reduceInit,
  select,
  visitExpr,
} from '../tensor-expr/expr.js';
import { type Tensor, placeholder } from '../tensor-expr/tensor.js';
import { defaultTrace } from '../schedule/cpu-schedule.js';
import type { Schedule, TraceStep } from '../schedule/schedule.js';
import { type BuiltKernel, kernelTensors, scheduled } from './kernel.js';
import type { GpuLaunch } from '../schedule/loop-ir.js';
import type { DimExpr } from '../runtime/artifact-format.js';

/** The symbols of a program with run-time sizes, in the order of the kernels' symbol buffer. */
export interface SymbolTable {
  readonly names: readonly string[];
  readonly ranges: DimRanges;
}

/** The symbols' values at their upper bounds: the sizes every layout and the memory plan use. */
export function boundValues(symbols: SymbolTable): Map<string, number> {
  return new Map(symbols.names.map((s) => [s, symbols.ranges.get(s)![1]]));
}

/** The three points the kernels are built at: the bounds, then two others spread through the ranges. */
function samplePoints(symbols: SymbolTable): Map<string, number>[] {
  // Every symbol whose range allows it takes a value below its bound at both other points (a symbol the points
  // never move would be taken for a constant), sizes of 2 and up before 1 (a size of 1 broadcasts: a kernel built
  // there differs in its indices), two different ones where the range allows, offset per symbol so that a dim of one
  // symbol is not taken for a dim of another.
  const below = (s: string, want: number, avoid?: number): number => {
    const [lo, hi] = symbols.ranges.get(s)!;
    if (lo === hi) return lo;
    const v = Math.min(hi - 1, Math.max(lo, want));
    const nearest = (ok: (c: number) => boolean) => {
      for (let d = 0; d < hi - lo; d++) for (const c of [v + d, v - d]) if (c >= lo && c < hi && ok(c)) return c;
      return undefined;
    };
    // A range with no size of 2 or more below its bound (1..2) is sampled above it: the builds only show how the
    // computation follows the sizes, and one at size 1 may differ in structure (an index times zero dropped).
    const above = hi >= 2 ? hi + 1 + (avoid === hi + 1 ? 1 : 0) : undefined;
    return nearest((c) => c >= 2 && c !== avoid) ?? nearest((c) => c >= 2) ?? above ?? nearest(() => true)!;
  };
  const first = new Map(symbols.names.map((s, k) => [s, below(s, 2 + k)]));
  const second = new Map(
    symbols.names.map((s, k) => {
      const [lo, hi] = symbols.ranges.get(s)!;
      return [s, below(s, Math.floor((lo + hi) / 2) + 2 * k + 1, first.get(s))];
    }),
  );
  // Two symbols with the same values at all three points could not be told apart (small ranges such as 1..4 and
  // 0..4, or 1..2 and 1..2, meet): the later one takes another pair of values, by the same preferences (2 and up
  // below the bound, then above it where the range allows, then 0 and 1).
  const seen = new Set<string>();
  for (const s of symbols.names) {
    const [lo, hi] = symbols.ranges.get(s)!;
    const key = (a: number, b: number) => `${hi} ${a} ${b}`;
    if (seen.has(key(first.get(s)!, second.get(s)!)) && hi - lo <= 256) {
      const near = (x: number) => Math.abs(x - first.get(s)!);
      const below = Array.from({ length: hi - lo }, (_, i) => lo + i).sort((x, y) => near(x) - near(y));
      const above = hi >= 2 ? Array.from({ length: 6 }, (_, i) => hi + 1 + i) : [];
      const values = [...below.filter((x) => x >= 2), ...above, ...below.filter((x) => x < 2)];
      const small = (x: number) => Number(x < 2);
      const pair = values
        .flatMap((a) => values.filter((b) => b !== a).map((b) => [a, b]))
        .sort((p, q) => small(p[0]) + small(p[1]) - small(q[0]) - small(q[1]))
        .find(([a, b]) => !seen.has(key(a, b)));
      if (pair) {
        first.set(s, pair[0]);
        second.set(s, pair[1]);
      }
    }
    seen.add(key(first.get(s)!, second.get(s)!));
  }
  return [boundValues(symbols), first, second];
}

/** The sizes a kernel may compute with: every dim of every type in the function, and their prefix/suffix products. */
function candidateDims(fn: FuncNode): Dim[] {
  const out = new Set<Dim>();
  const types: TensorType[] = [];
  for (const p of fn.params) types.push(p.type as TensorType);
  for (const n of postOrder(fn.body)) if (n.kind === 'call' || n.kind === 'const') types.push(n.type as TensorType);
  for (const t of types) {
    for (let i = 0; i < t.shape.length; i++) {
      out.add(t.shape[i]);
      out.add(dimProduct(t.shape.slice(i)));
      out.add(dimProduct(t.shape.slice(0, i + 1)));
    }
  }
  return [...out].filter((d) => typeof d === 'string');
}

const dynamicError = (ops: readonly string[], why: string) =>
  new KilnError('E_DYNAMIC', `a kernel of ${[...new Set(ops)].join(', ')} cannot run at run-time sizes: ${why}`, {
    hint: 'fix the dims it depends on (--dim NAME=N, or specializeGraph), or report the model so the operator learns run-time sizes',
  });

/** Every operator's structural dims (OpSpec.structuralDims) are fixed: E_DYNAMIC naming the dim otherwise. */
function checkStructuralDims(fn: FuncNode): void {
  for (const n of postOrder(fn.body)) {
    if (n.kind !== 'call' || isFuncCall(n)) continue;
    const op = n.op as OpSpec;
    const symbolic = (
      op.structuralDims?.(
        n.args.map((a) => a.type as TensorType),
        n.attrs,
      ) ?? []
    ).filter(([d]) => typeof d === 'string');
    if (symbolic.length)
      throw new KilnError(
        'E_DYNAMIC',
        `${op.name}: ${symbolic.map(([d, what]) => `${what} (${d})`).join(', ')} shapes its kernel, so it cannot be a run-time size`,
        {
          hint: `fix it: ${[...new Set(symbolic.flatMap(([d]) => dimSymbols(d)))].map((s) => `--dim ${s}=N`).join(' ')}`,
        },
      );
  }
}

/** The kernel of a primitive function with symbolic dims, for every size in the symbols' ranges. */
export function buildDynamicKernel(
  fn: FuncNode,
  name: string,
  symbols: SymbolTable,
  trace: (sch: Schedule) => TraceStep[] = defaultTrace,
): BuiltKernel {
  checkStructuralDims(fn);
  const points = samplePoints(symbols);
  const builds = points.map((values) => {
    try {
      return kernelTensors(
        withDimRanges(new Map(), () => specializeDims(fn, values)),
        name,
      );
    } catch (e) {
      throw new KilnError(
        'E_DYNAMIC',
        `a kernel with symbolic dims does not build at ${[...values].map(([s, v]) => `${s}=${v}`).join(', ')}: ${(e as Error).message}`,
        { hint: 'narrow the ranges (--dim NAME=LO..HI) or fix the dims' },
      );
    }
  });
  const ops = builds[0].ops;
  const diff = compareBuilds(builds, ops);

  // candidate dims by their values at the points
  const byValues = new Map<string, Dim[]>();
  for (const d of candidateDims(fn)) {
    const key = points.map((v) => substituteDim(d, v)).join(',');
    const list = byValues.get(key) ?? [];
    if (!list.includes(d)) list.push(d);
    byValues.set(key, list);
  }
  const dimFor = (values: readonly number[], what: string): Dim => {
    const found = byValues.get(values.join(',')) ?? [];
    if (found.length === 1) return found[0];
    throw dynamicError(
      ops,
      found.length
        ? `${what} (${values.join(', ')} at the sample sizes) could be any of ${found.join(', ')}`
        : `${what} changes with the sizes (${values.join(', ')} at the sample sizes) but is no dim of the kernel`,
    );
  };

  // (the ranges let the simplifier drop clamps and tests that sizes inside them never need)
  const symbolBuf: Tensor = {
    ...placeholder('symbols', [symbols.names.length], 'int32'),
    valueRanges: symbols.names.map((s) => ({ lo: symbols.ranges.get(s)![0], hi: symbols.ranges.get(s)![1] })),
  };
  const dimExpr = (d: Dim) => sizeExpr(d, (k) => load(symbolBuf, [int(k)]), symbols);

  // constants that are sizes: the same dim at every point, as an integer, a float, or the float's reciprocal
  const constSubs = new Map<Expr, Expr>();
  for (const [c, values] of diff.constants) {
    if (!isFloat(c.dtype)) {
      const plain = byValues.get(values.join(','));
      const less1 = byValues.get(values.map((v) => v + 1).join(','));
      if (plain?.length === 1) constSubs.set(c, cast(c.dtype, dimExpr(plain[0])));
      else if (!plain && less1?.length === 1) constSubs.set(c, cast(c.dtype, add(dimExpr(less1[0]), -1)));
      else dimFor(values, `the constant ${values[0]}`);
      continue;
    }
    const asInt = values.map((v) => Math.round(v));
    const recip = values.map((v) => Math.round(1 / v));
    const near = (a: number, b: number) => Math.abs(a - b) <= 1e-6 * Math.abs(b);
    if (asInt.every((v, i) => near(values[i], v)) && byValues.get(asInt.join(','))?.length === 1)
      constSubs.set(c, cast(c.dtype, dimExpr(dimFor(asInt, 'a size'))));
    else if (recip.every((v, i) => v > 0 && near(values[i], 1 / v)) && byValues.get(recip.join(','))?.length === 1)
      constSubs.set(c, div(constant(1, c.dtype), cast(c.dtype, dimExpr(dimFor(recip, 'a size')))));
    else throw dynamicError(ops, `the constant ${values[0]} changes with the sizes (${values.join(', ')})`);
  }
  const reduceExtent = new Map<IterVar, Expr>();
  for (const [axis, values] of diff.reduceAxes) reduceExtent.set(axis, dimExpr(dimFor(values, `a reduction's length`)));

  // the kernel at the bounds, its sizes read from the symbol buffer
  const mentionsSymbols = (e: Expr) => {
    let found = false;
    visitExpr(e, (x) => {
      if (x.k === 'load' && x.buf === symbolBuf) found = true;
    });
    return found;
  };
  const rewritten = new Map<Tensor, Tensor>();
  const tensorOf = (t: Tensor): Tensor => {
    if (t.kind === 'placeholder') return t;
    let r = rewritten.get(t);
    if (!r) {
      // (kept before its body is rewritten: a recurrence's body loads the tensor itself)
      const copy: { -readonly [K in keyof Tensor]: Tensor[K] } = { ...t };
      rewritten.set(t, copy);
      copy.body = rewrite(t.body!);
      r = copy;
    }
    return r;
  };
  const rewrite = (e: Expr): Expr =>
    mapExpr(e, (x) => {
      if (x.k === 'const') return constSubs.get(x);
      if (x.k === 'load' && x.buf !== symbolBuf) {
        const buf = tensorOf(x.buf as Tensor);
        // an index computed from run-time sizes may leave the bound layout at positions past the valid ones
        const idx = x.idx.map((i, k) => (mentionsSymbols(i) ? max(0, min(i, buf.shape[k] - 1)) : i));
        return { ...x, buf, idx };
      }
      // positions past the run-time sizes are computed too, over whatever the bound layouts hold there: an integer
      // division must not trap on a zero divisor it finds (at a valid position one is undefined behaviour in ONNX)
      if (x.k === 'bin' && INT_DIVISIONS.has(x.op) && !isFloat(x.dtype) && x.b.k !== 'const')
        return { ...x, b: select(eq(x.b, constant(0, x.b.dtype)), constant(1, x.b.dtype), x.b) };
      if (x.k === 'reduce') {
        const masks = x.axes.flatMap((a) => (reduceExtent.has(a) ? [lt(a.v, reduceExtent.get(a)!)] : []));
        if (masks.length) return { ...x, body: select(all(masks), x.body, reduceInit(x.op, x.dtype)) };
      }
      return undefined;
    });
  const output = tensorOf(builds[0].output);
  // per axis of the output and of each intermediate tensor, its run-time size where the builds show one: outer
  // iterations past it are skipped (an axis whose size is no dim of the kernel stays computed to the bound)
  const runSizes = new Map<Tensor, (Expr | undefined)[]>();
  for (const [t, others] of diff.tensors) {
    if (t.kind === 'placeholder') continue;
    const sizes = t.shape.map((n, k) => {
      const values = [n, ...others.map((o) => o.shape[k])];
      if (values.every((v) => v === n)) return undefined;
      const dims = byValues.get(values.join(','));
      return dims?.length === 1 ? dimExpr(dims[0]) : undefined;
    });
    if (sizes.some((e) => e)) runSizes.set(tensorOf(t), sizes);
  }
  // the output's from its type
  const outType = fn.body.type as TensorType;
  runSizes.set(
    output,
    outType.shape.map((d) => (typeof d === 'number' ? undefined : dimExpr(d))),
  );
  return scheduled(name, [...builds[0].inputs, symbolBuf], output, ops, trace, runSizes);
}

const INT_DIVISIONS = new Set(['div', 'mod', 'floordiv', 'floormod']);

/** A dim as an int32 expression of the symbols' run-time values, `symbol(k)` reading symbol k. */
function sizeExpr(d: Dim, symbol: (k: number) => Expr, symbols: SymbolTable): Expr {
  return foldDim<Expr>(d, {
    num: (n) => int(n),
    symbol: (s) => symbol(symbols.names.indexOf(s)),
    add,
    mul,
    floorDiv: (a, b) => floordiv(a, b),
    min,
    max,
  });
}

/**
 * A GPU launch's run ids (GpuLaunch.runIds, expressions of loads from the kernel's symbols buffer `symbolsBuf`) as
 * dims of the symbols for the artifact, where the runtime sizes the grid from them; undefined where the grid stays
 * the bounds': no ids known, or an expression of something else or of a size counted on the device during the run
 * (`counted`: the host does not know it when it launches).
 */
export function launchRunIds(
  launch: Pick<GpuLaunch, 'grid' | 'runIds' | 'foldedX'>,
  symbolsBuf: Buf,
  names: readonly string[],
  counted: ReadonlySet<string>,
): DimExpr[] | undefined {
  const OPS: Partial<Record<string, '+' | '*' | 'min' | 'max'>> = { add: '+', mul: '*', min: 'min', max: 'max' };
  const dim = (e: Expr): DimExpr | undefined => {
    if (e.k === 'const') return typeof e.value === 'number' && Number.isInteger(e.value) ? e.value : undefined;
    if (e.k === 'load') {
      const [i] = e.idx;
      const name = e.buf === symbolsBuf && i?.k === 'const' ? names[Number(i.value)] : undefined;
      return name !== undefined && !counted.has(name) ? name : undefined;
    }
    if (e.k !== 'bin') return undefined;
    const a = dim(e.a),
      b = dim(e.b);
    if (a === undefined || b === undefined) return undefined;
    if (e.op === 'floordiv') return typeof b === 'number' && b > 0 ? ['floordiv', a, b] : undefined;
    const op = OPS[e.op];
    return op ? [op, a, b] : undefined;
  };
  const { grid, runIds, foldedX } = launch;
  if (!runIds) return undefined;
  const most = [foldedX ? grid[0] * grid[1] : grid[0], grid[1], grid[2]];
  const ids = most.map((m, t) => (runIds[t] && dim(runIds[t]!)) ?? m);
  return ids.some((d) => typeof d !== 'number') ? ids : undefined;
}

interface BuildDiff {
  /** Constants of the first build whose value changes between the builds, with their values at each. */
  constants: Map<Expr & { k: 'const' }, number[]>;
  /** Reduction axes of the first build whose extent changes, with their extents at each. */
  reduceAxes: Map<IterVar, number[]>;
  /** Each tensor of the first build, with its twins in the others. */
  tensors: Map<Tensor, Tensor[]>;
}

/** Walks the builds' tensor expressions side by side: the same structure, differing only in sizes. */
function compareBuilds(builds: ReturnType<typeof kernelTensors>[], ops: readonly string[]): BuildDiff {
  const seen = new Map<Tensor, Tensor[]>();
  const diff: BuildDiff = { constants: new Map(), reduceAxes: new Map(), tensors: seen };
  const differ = (why: string) => dynamicError(ops, `its computation changes with the sizes (${why})`);
  const vars = new Map<string, string[]>();
  /** Per loop variable of the first build, the extent of its axis in each other build. */
  const extents = new Map<string, number[]>();
  const sameVar = (a: string, others: string[]) => {
    const known = vars.get(a);
    if (!known) vars.set(a, others);
    else if (known.some((v, i) => v !== others[i])) throw differ('loop variables');
  };
  const tensors = (t: Tensor, others: Tensor[]) => {
    const known = seen.get(t);
    if (known) {
      if (known.some((o, i) => o !== others[i])) throw differ('tensors');
      return;
    }
    seen.set(t, others);
    if (others.some((o) => o.kind !== t.kind || o.shape.length !== t.shape.length || o.dtype !== t.dtype))
      throw differ(`tensor ${t.name}`);
    if (t.kind === 'placeholder') {
      const i = builds[0].inputs.indexOf(t);
      if (others.some((o, b) => builds[b + 1].inputs.indexOf(o) !== i)) throw differ('inputs');
      return;
    }
    t.axes.forEach((a, k) => {
      sameVar(
        a.v.name,
        others.map((o) => o.axes[k].v.name),
      );
      extents.set(
        a.v.name,
        others.map((o) => o.shape[k]),
      );
    });
    exprs(
      t.body!,
      others.map((o) => o.body!),
    );
  };
  const exprs = (e: Expr, others: Expr[]): void => {
    // an index along an axis of extent 1 is built as the constant 0 (a broadcast), the only value its variable takes
    const zeroAt = (o: Expr, b: number) =>
      o.k === 'const' && Number(o.value) === 0 && e.k === 'var' && extents.get(e.name)?.[b] === 1;
    if (e.k === 'var' && others.some(zeroAt)) {
      if (others.some((o, b) => !zeroAt(o, b) && (o.k !== 'var' || vars.get(e.name)?.[b] !== o.name)))
        throw differ('loop variables');
      return;
    }
    if (others.some((o) => o.k !== e.k || o.dtype !== e.dtype)) throw differ(`${e.k} of ${e.dtype}`);
    switch (e.k) {
      case 'const': {
        const values = [e, ...others].map((o) => Number((o as typeof e).value));
        if (values.every((v) => Object.is(v, values[0]))) return;
        const known = diff.constants.get(e);
        if (known?.some((v, i) => !Object.is(v, values[i]))) throw differ('a shared constant');
        diff.constants.set(e, values);
        return;
      }
      case 'var':
        sameVar(
          e.name,
          others.map((o) => (o as typeof e).name),
        );
        return;
      case 'bin':
        if (others.some((o) => (o as typeof e).op !== e.op)) throw differ(e.op);
        exprs(
          e.a,
          others.map((o) => (o as typeof e).a),
        );
        exprs(
          e.b,
          others.map((o) => (o as typeof e).b),
        );
        return;
      case 'un':
        if (others.some((o) => (o as typeof e).op !== e.op)) throw differ(e.op);
        exprs(
          e.a,
          others.map((o) => (o as typeof e).a),
        );
        return;
      case 'cast':
        exprs(
          e.a,
          others.map((o) => (o as typeof e).a),
        );
        return;
      case 'select':
        exprs(
          e.c,
          others.map((o) => (o as typeof e).c),
        );
        exprs(
          e.a,
          others.map((o) => (o as typeof e).a),
        );
        exprs(
          e.b,
          others.map((o) => (o as typeof e).b),
        );
        return;
      case 'load': {
        const os = others as (typeof e)[];
        tensors(
          e.buf as Tensor,
          os.map((o) => o.buf as Tensor),
        );
        e.idx.forEach((ix, k) =>
          exprs(
            ix,
            os.map((o) => o.idx[k]),
          ),
        );
        return;
      }
      case 'reduce': {
        const os = others as (typeof e)[];
        if (os.some((o) => o.op !== e.op || o.axes.length !== e.axes.length)) throw differ('a reduction');
        e.axes.forEach((a, k) => {
          sameVar(
            a.v.name,
            os.map((o) => o.axes[k].v.name),
          );
          extents.set(
            a.v.name,
            os.map((o) => o.axes[k].extent),
          );
          const lengths = [a.extent, ...os.map((o) => o.axes[k].extent)];
          if (lengths.some((x) => x !== lengths[0])) diff.reduceAxes.set(a, lengths);
        });
        exprs(
          e.body,
          os.map((o) => o.body),
        );
        return;
      }
    }
  };
  tensors(
    builds[0].output,
    builds.slice(1).map((b) => b.output),
  );
  return diff;
}

/** Whether a primitive function has symbolic dims anywhere (its kernel is built by buildDynamicKernel). */
export function hasSymbolicDims(fn: FuncNode): boolean {
  if (fn.params.some((p) => !isStatic(p.type))) return true;
  for (const n of postOrder(fn.body) as GExpr[])
    if ((n.kind === 'call' || n.kind === 'const') && !isStatic(n.type as TensorType)) return true;
  return false;
}
