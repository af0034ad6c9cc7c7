// A fused main function with control regions (If / Loop / Scan, src/relay-ir/control.ts) -> kernels, one static
// memory plan for the main function and every body, and the control program that orders the kernel calls
// (src/runtime/control.ts runs it). The program is linearized into steps (kernel calls and copies, both branches of
// an If one after the other, a loop's body once); lifetimes are measured in steps, and a value defined before a loop
// and used inside it lives until the loop ends, since a later iteration reads it again. Loop-carried values, the
// condition, the iteration number and scan slices have buffers of their own for the whole loop.
import { BYTES } from '../runtime/dtype.js';
import { KilnError } from '../runtime/errors.js';
import type { ControlStep, IOBinding, KernelCall, KernelInfo } from '../runtime/artifact-format.js';
import { sizeOf } from '../runtime/tensor.js';
import { type CallNode, type ConstNode, type FuncNode, type GExpr, isFuncCall } from '../relay-ir/expr.js';
import { type ControlOpSpec, type LoopRegion, type IfRegion, isControlCall } from '../relay-ir/control.js';
import { kernelCalls } from '../relay-ir/passes/fuse-ops.js';
import { type TensorType, staticShape, isStatic } from '../relay-ir/types.js';
import { emitWasmModule } from '../codegen/wasm/codegen.js';
import { kernelPhases } from '../schedule/loop-ir.js';
import { type BuiltKernel, buildKernel, kernelKey } from './kernel.js';
import { type Lifetime, SPECULATIVE_GUARD_BYTES, align, kernelScratchBytes, planMemory } from './memory-plan.js';
import { type Program, type ProgramOptions, WASM32_MAX_BYTES } from './program.js';
import { VERSION } from './version.js';

/** Bytes of a value; control flow is compiled for static shapes (a symbolic dim left in a body is E_DYNAMIC). */
function bytesOf(t: TensorType): number {
  if (!isStatic(t))
    throw new KilnError(
      'E_DYNAMIC',
      `a value of type [${t.shape}] inside control flow (If, Loop, Scan) has symbolic dims`,
      {
        hint: 'fix the input dims (--input-shape or --dim) of models with control flow: their bodies are compiled for static shapes',
      },
    );
  return sizeOf(staticShape(t)) * BYTES[t.dtype];
}
const outputsOf = (f: FuncNode): GExpr[] => (f.body.kind === 'tuple' ? [...f.body.fields] : [f.body]);

/** Where a value lives: a buffer of the plan (at a byte offset inside it) or a weight. */
type Loc = { item: number } | { weight: ConstNode };

/** A control step whose addresses are still locations (resolved once the plan is made). */
type Step =
  | { op: 'call'; call: number }
  | {
      op: 'copy';
      from: Loc;
      to: Loc;
      bytes: number;
      fromBase?: number;
      fromStride?: number;
      toBase?: number;
      toStride?: number;
    }
  | { op: 'if'; cond: Loc; then: Step[]; else: Step[] }
  | {
      op: 'loop';
      trip: number | Loc;
      cond?: Loc;
      condFrom?: Loc;
      iter?: Loc;
      fullTrip: boolean;
      name: string;
      body: Step[];
    };

interface Call {
  kernel: number;
  args: Loc[];
  origin: string[];
}

/** Whether a fused call is a control region (fusion leaves a control call alone in its group). */
const controlOf = (c: CallNode & { op: FuncNode }) => (isControlCall(c.op.body) ? c.op.body : undefined);

export function buildControlProgram(main: FuncNode, opts: ProgramOptions = {}): Program {
  const symbolic = main.params.filter((p) => !isStatic(p.type));
  if (symbolic.length)
    throw new KilnError('E_DYNAMIC', `input '${symbolic[0].name}' has symbolic shape [${symbolic[0].type.shape}]`, {
      hint: 'fix the dims of every input (--input-shape or --dim): control flow is compiled for static shapes',
    });
  const FOREVER = Number.MAX_SAFE_INTEGER;
  const items: Lifetime[] = [];
  const loc = new Map<GExpr, Loc>();
  const weightOff = new Map<ConstNode, number>();
  let weightBytes = 0;
  const kernels: BuiltKernel[] = [];
  const kernelOf = new Map<string, number>();
  const calls: Call[] = [];
  const regionOuts = new Map<ControlOpSpec, Loc[]>();
  /** Loops open around the current step: values from before one that are used inside live until it ends. */
  const open: { start: number; keep: Set<number> }[] = [];
  let t = 0;

  const define = (bytes: number, start = t): Loc => {
    items.push({ id: items.length, bytes, start, end: start });
    return { item: items.length - 1 };
  };
  const use = (l: Loc, at = t) => {
    if (!('item' in l)) return;
    const it = items[l.item];
    it.end = Math.max(it.end, at);
    for (const L of open) if (L.start > it.start) L.keep.add(l.item);
  };
  const locOf = (e: GExpr): Loc => {
    if (e.kind === 'const') {
      if (!weightOff.has(e)) {
        weightOff.set(e, weightBytes);
        weightBytes = align(weightBytes + Math.max(e.value.data.byteLength, 1));
      }
      return { weight: e };
    }
    const l = loc.get(e);
    if (!l) throw new KilnError('E_INTERNAL', `control program: value without a buffer (${e.kind})`);
    return l;
  };
  const copy = (steps: Step[], from: Loc, to: Loc, bytes: number, extra: Partial<Step & { op: 'copy' }> = {}) => {
    use(from);
    use(to);
    steps.push({ op: 'copy', from, to, bytes, ...extra });
    t++;
  };

  const kernelCall = (c: CallNode & { op: FuncNode }, steps: Step[]) => {
    let k = buildKernel(c.op, `k${kernels.length}`);
    const trace = opts.traceFor?.(c.op, k);
    if (trace) k = { ...buildKernel(c.op, k.prim.name, trace), tuned: true };
    if (opts.nativeKernel) k.native = opts.nativeKernel(c.op, k);
    const key = kernelKey(k.prim);
    let idx = kernelOf.get(key);
    if (idx === undefined) {
      idx = kernels.length;
      kernels.push(k);
      kernelOf.set(key, idx);
    }
    for (const e of [...c.args, ...c.op.params]) bytesOf(e.type as TensorType);
    const args = c.args.map(locOf);
    for (const a of args) use(a);
    const out = define(bytesOf(c.type));
    loc.set(c, out);
    const sb = kernelScratchBytes(kernels[idx]);
    const scratch = sb ? [define(sb)] : [];
    calls.push({ kernel: idx, args: [...args, out, ...scratch], origin: [...new Set(c.origin)] });
    steps.push({ op: 'call', call: calls.length - 1 });
    t++;
  };

  /** The steps of a fused function whose params already have locations; returns its outputs' locations. */
  const lowerFunc = (fn: FuncNode, steps: Step[]): Loc[] => {
    for (const c of kernelCalls(fn)) {
      const ctl = controlOf(c);
      if (!ctl) {
        kernelCall(c, steps);
        continue;
      }
      let outs = regionOuts.get(ctl.op);
      if (!outs) {
        // the region's arguments as values outside the kernel's function
        const args = ctl.args.map((a) => (a.kind === 'var' ? c.args[c.op.params.indexOf(a)] : a));
        const region = ctl.op.control;
        outs =
          region.kind === 'if' ? lowerIf(region, args, steps) : lowerLoop(region, args, steps, c.origin[0] ?? 'loop');
        regionOuts.set(ctl.op, outs);
      }
      loc.set(c, outs[Number(ctl.attrs.output)]);
    }
    return outputsOf(fn).map(locOf);
  };

  const bindParams = (fn: FuncNode, first: number, values: readonly GExpr[]) => {
    for (const p of fn.params) bytesOf(p.type);
    values.forEach((v, i) => loc.set(fn.params[first + i], locOf(v)));
  };

  const lowerIf = (r: IfRegion, args: readonly GExpr[], steps: Step[]): Loc[] => {
    const cond = locOf(args[0]);
    use(cond);
    const results = r.outputs.map((o) => define(bytesOf(o)));
    t++;
    const branch = (fn: FuncNode, caps: readonly GExpr[]): Step[] => {
      const list: Step[] = [];
      bindParams(fn, 0, caps);
      lowerFunc(fn, list).forEach((o, k) => copy(list, o, results[k], bytesOf(r.outputs[k])));
      return list;
    };
    const nThen = r.then.params.length;
    const then = branch(r.then, args.slice(1, 1 + nThen));
    const otherwise = branch(r.else, args.slice(1 + nThen));
    steps.push({ op: 'if', cond, then, else: otherwise });
    for (const l of results) use(l);
    return results;
  };

  const lowerLoop = (r: LoopRegion, args: readonly GExpr[], steps: Step[], name: string): Loc[] => {
    let a = 0;
    const trip = r.trip === 'arg' ? locOf(args[a++]) : r.trip;
    const condArg = r.cond === 'arg' ? locOf(args[a++]) : undefined;
    const init = args.slice(a, a + r.carried);
    const scanIn = args.slice(a + r.carried, a + r.carried + r.scanIn);
    const captures = args.slice(a + r.carried + r.scanIn);
    if (typeof trip !== 'number') use(trip);
    if (condArg) use(condArg);
    const body = r.body;
    let p = 0;
    const iter = r.iterParam ? define(8) : undefined;
    if (iter) loc.set(body.params[p++], iter);
    // the condition the loop tests; without a condition input the body's is ignored and this stays true
    const cond = r.condParam || r.cond !== 'none' ? define(1) : undefined;
    if (r.condParam) loc.set(body.params[p++], cond!);
    const carried = init.map((_, i) => {
      const l = define(bytesOf(r.outputs[i]));
      loc.set(body.params[p++], l);
      return l;
    });
    const slices = scanIn.map(() => {
      const v = body.params[p++];
      const l = define(bytesOf(v.type));
      loc.set(v, l);
      return l;
    });
    bindParams(body, p, captures);
    const scanOut = r.outputs.slice(r.carried).map((o) => define(bytesOf(o)));
    t++;
    init.forEach((v, i) => copy(steps, locOf(v), carried[i], bytesOf(r.outputs[i])));
    const state = [iter, cond, ...carried, ...slices, ...scanOut].filter((l): l is Loc => l !== undefined);
    const L = { start: t, keep: new Set<number>() };
    open.push(L);
    const list: Step[] = [];
    const n = typeof r.trip === 'number' ? r.trip : 0;
    scanIn.forEach((v, k) => {
      const size = bytesOf(body.params[(iter ? 1 : 0) + (r.condParam ? 1 : 0) + r.carried + k].type);
      const rev = r.reverseIn[k];
      copy(list, locOf(v), slices[k], size, {
        fromBase: rev ? (n - 1) * size : 0,
        fromStride: rev ? -size : size,
      });
    });
    const outs = lowerFunc(body, list);
    let o = 0;
    if (r.condOut) {
      const c = outs[o++];
      if (r.cond !== 'none') copy(list, c, cond!, 1);
    }
    // next carried values: one read from another state buffer goes through a copy first, so that no copy
    // overwrites what a later one reads
    const isState = (l: Loc) => 'item' in l && state.some((s) => 'item' in s && s.item === l.item);
    const next = carried.map((dst, i) => {
      const src = outs[o + i];
      if (!isState(src) || ('item' in src && 'item' in dst && src.item === dst.item)) return src;
      const tmp = define(bytesOf(r.outputs[i]));
      copy(list, src, tmp, bytesOf(r.outputs[i]));
      return tmp;
    });
    next.forEach((src, i) => copy(list, src, carried[i], bytesOf(r.outputs[i])));
    o += r.carried;
    scanOut.forEach((dst, k) => {
      const size = bytesOf(r.outputs[r.carried + k]) / Math.max(n, 1);
      const rev = r.reverseOut[k];
      copy(list, outs[o + k], dst, size, rev ? { toBase: (n - 1) * size, toStride: -size } : { toStride: size });
    });
    open.pop();
    for (const l of state) use(l);
    for (const id of L.keep) items[id].end = Math.max(items[id].end, t);
    steps.push({
      op: 'loop',
      trip,
      cond,
      condFrom: condArg,
      iter,
      fullTrip: r.scanOut > 0 && r.cond !== 'none',
      name,
      body: list,
    });
    t++;
    return [...carried, ...scanOut];
  };

  // inputs live throughout, outputs until the end
  for (const p of main.params) loc.set(p, define(bytesOf(p.type), -1));
  for (const p of main.params) use(loc.get(p)!, FOREVER);
  const steps: Step[] = [];
  const outLocs = lowerFunc(main, steps);
  for (const l of outLocs) use(l, FOREVER);

  const plan = planMemory(items);
  const weightsAt = SPECULATIVE_GUARD_BYTES;
  const arenaAt = align(weightsAt + weightBytes);
  const memoryBytes = arenaAt + plan.arenaBytes + SPECULATIVE_GUARD_BYTES;
  if (memoryBytes > WASM32_MAX_BYTES)
    throw new KilnError(
      'E_SHAPE',
      `the model needs ${memoryBytes} bytes of WebAssembly memory (weights ${weightBytes}, arena ${plan.arenaBytes}); wasm32 addresses at most ${WASM32_MAX_BYTES}`,
      { hint: 'compile for smaller input shapes (--input-shape) or a smaller batch' },
    );
  const addr = (l: Loc): number =>
    'weight' in l ? weightsAt + weightOff.get(l.weight)! : arenaAt + plan.offsets.get(l.item)!;
  const resolve = (list: readonly Step[]): ControlStep[] =>
    list.map((s): ControlStep => {
      switch (s.op) {
        case 'call':
          return s;
        case 'copy':
          return {
            op: 'copy',
            from: addr(s.from) + (s.fromBase ?? 0),
            to: addr(s.to) + (s.toBase ?? 0),
            bytes: s.bytes,
            ...(s.fromStride ? { fromStride: s.fromStride } : {}),
            ...(s.toStride ? { toStride: s.toStride } : {}),
          };
        case 'if':
          return { op: 'if', cond: addr(s.cond), then: resolve(s.then), else: resolve(s.else) };
        case 'loop':
          return {
            op: 'loop',
            trip: typeof s.trip === 'number' ? s.trip : { at: addr(s.trip) },
            ...(s.cond ? { cond: addr(s.cond) } : {}),
            ...(s.condFrom ? { condFrom: addr(s.condFrom) } : {}),
            ...(s.iter ? { iter: addr(s.iter) } : {}),
            ...(s.fullTrip ? { fullTrip: true } : {}),
            name: s.name,
            body: resolve(s.body),
          };
      }
    });

  const weights = new Uint8Array(weightBytes);
  for (const [c, off] of weightOff)
    weights.set(new Uint8Array(c.value.data.buffer, c.value.data.byteOffset, c.value.data.byteLength), off);
  const callList: KernelCall[] = calls.map((c) => ({ kernel: c.kernel, args: c.args.map(addr), origin: c.origin }));
  const binding = (e: GExpr, l: Loc, name: string): IOBinding => {
    const ty = e.type as TensorType;
    return { name, dtype: ty.dtype, shape: staticShape(ty), offset: addr(l) };
  };
  const kernelInfo: KernelInfo[] = kernels.map((k) => ({
    name: k.prim.name,
    ops: k.ops,
    flops: k.flops,
    bytes: k.bytes,
    phases: kernelPhases(k.prim),
  }));
  const prims = kernels.map((k) => k.prim);
  const scratchParams = kernels.map((k) => kernelScratchBytes(k) > 0);
  return {
    header: {
      kiln: VERSION,
      target: 'wasm',
      memoryBytes,
      weightsAt,
      inputs: main.params.map((p) => binding(p, loc.get(p)!, p.name)),
      outputs: outputsOf(main).map((o, i) => binding(o, outLocs[i], opts.outputNames?.[i] ?? `out${i}`)),
      kernels: kernelInfo,
      calls: callList,
      control: resolve(steps),
      plan: {
        arenaBytes: plan.arenaBytes,
        intermediateBytes: items.reduce((s, it, i) => s + (i >= main.params.length ? align(it.bytes) : 0), 0),
        weightBytes,
      },
    },
    wasm: emitWasmModule(prims, { optimize: opts.optimize, scratchParams }),
    wasmRelaxed: opts.optimize === false ? undefined : emitWasmModule(prims, { relaxed: true, scratchParams }),
    weights,
    kernels,
    weightOffsets: weightOff,
  };
}

/** Whether a fused function has kernel calls that are control regions. */
export const hasControlRegions = (fused: FuncNode): boolean =>
  kernelCalls(fused).some((c) => isFuncCall(c) && controlOf(c) !== undefined);
