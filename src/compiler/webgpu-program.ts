// A fused main function -> the artifact's WebGPU section: kernels built with the default GPU schedule and
// compiled to WGSL, GPU values (inputs, outputs, intermediates, weights shared with the WebAssembly part's
// weights section) and the call list.
import { KilnError } from '../runtime/errors.js';
import type { GpuCall, GpuKernel, GpuValue, WebGpuSection } from '../runtime/artifact-format.js';
import { type ConstNode, type FuncNode, type GExpr, gfunc } from '../relay-ir/expr.js';
import { fuseOps, kernelCalls } from '../relay-ir/passes/fuse-ops.js';
import { callOrder, countedSizes } from './program.js';
import { type TensorType, staticShape, numel } from '../relay-ir/types.js';
import { gpuTrace } from '../schedule/gpu-schedule.js';
import { type WgslTemplate, emitWgslTemplates, shareWgslStages } from '../codegen/wgsl/codegen.js';
import { type BuiltKernel, buildKernel, kernelKey } from './kernel.js';
import { type SymbolTable, boundValues, buildDynamicKernel, hasSymbolicDims, launchRunIds } from './dynamic-kernel.js';
import { substituteDim } from '../relay-ir/sym-dim.js';
import type { TraceStep } from '../schedule/schedule.js';
import { type WebGpuLimits, WEBGPU_PROFILES, windowWords } from '../codegen/common/webgpu-profile.js';
import type { DType } from '../runtime/dtype.js';

export interface GpuSectionOptions {
  /** A schedule instead of the default GPU schedule for a kernel (a tuned record, a tuner's candidate). */
  traceFor?: (def: BuiltKernel) => readonly TraceStep[] | undefined;
  /** The limits the kernels must fit (default: the WebGPU spec's, which every device has). */
  limits?: WebGpuLimits;
  /** The run-time sizes of a program with symbolic dims: values laid out at their bounds, kernels read them. */
  symbols?: SymbolTable;
}

/** 32-bit words a value of `size` elements takes on the GPU (two per int64/uint64 element). */
const gpuWords = (dtype: DType, size: number) => size * (dtype === 'int64' || dtype === 'uint64' ? 2 : 1);

/** Words per GPU buffer of a value too large for one binding (or one buffer) of `limits`; undefined: it fits. */
export function valueWindow(dtype: DType, size: number, limits: WebGpuLimits): number | undefined {
  const w = windowWords(limits);
  return gpuWords(dtype, size) > w ? w : undefined;
}

/** Storage bindings a graph value takes in a kernel under `limits` (one per window). */
export function valueBindings(e: GExpr, limits: WebGpuLimits): number {
  if (e.type.kind !== 'tensor') return 1;
  const t = e.type as TensorType;
  const shape = t.shape.every((d) => typeof d === 'number') ? (t.shape as number[]) : undefined;
  if (!shape) return 1;
  const words = gpuWords(t.dtype, numel(shape));
  return Math.max(1, Math.ceil(words / windowWords(limits)));
}

/** The section, and its distinct kernels as built (in the section's order). */
export function buildWebGpuSection(
  main: FuncNode,
  weightOffsets: ReadonlyMap<ConstNode, number>,
  outputNames?: readonly string[],
  opts: GpuSectionOptions = {},
): { section: WebGpuSection; kernels: BuiltKernel[] } {
  const outputs: GExpr[] = main.body.kind === 'tuple' ? [...main.body.fields] : [main.body];
  const calls = callOrder(main);
  const counted = countedSizes(calls);
  const limits = opts.limits ?? WEBGPU_PROFILES.default;
  const bindingLimits = {
    maxStorageBindings: limits.maxStorageBuffersPerShaderStage,
    windowWords: windowWords(limits),
  };
  const values: GpuValue[] = [];
  const valueIds = new Map<GExpr, number>();
  const bounds = opts.symbols ? boundValues(opts.symbols) : undefined;
  const add = (e: GExpr, v: Omit<GpuValue, 'dtype' | 'size'>): number => {
    const t = e.type as TensorType;
    const size = bounds ? numel(t.shape.map((d) => substituteDim(d, bounds) as number)) : numel(staticShape(t));
    const window = valueWindow(t.dtype, size, limits);
    valueIds.set(e, values.length);
    values.push({ dtype: t.dtype, size, ...v, ...(window ? { window } : {}) });
    return values.length - 1;
  };
  const valueId = (e: GExpr): number => {
    const id = valueIds.get(e);
    if (id !== undefined) return id;
    if (e.kind !== 'const') throw new KilnError('E_INTERNAL', `webgpu program: value without a buffer (${e.kind})`);
    const offset = weightOffsets.get(e as ConstNode);
    if (offset === undefined)
      throw new KilnError('E_INTERNAL', 'webgpu program: weight missing from the weights section');
    return add(e, { kind: 'weight', weight: { offset, length: (e as ConstNode).value.data.byteLength } });
  };
  const inputs = main.params.map((p) => ({ name: p.name, value: add(p, { kind: 'input' }) }));
  // the symbols' values, written by each run: the last input of every kernel for run-time sizes
  let symbolsValue: number | undefined;
  if (opts.symbols) {
    symbolsValue = values.length;
    values.push({ dtype: 'int32', size: opts.symbols.names.length, kind: 'symbols' });
  }
  for (const c of calls) add(c, { kind: outputs.includes(c) ? 'output' : 'intermediate' });

  const kernels: GpuKernel[] = [];
  const templates: WgslTemplate[][] = [];
  const built: BuiltKernel[] = [];
  const kernelOf = new Map<string, number>();
  const gpuCalls: GpuCall[] = [];
  /** Builds the kernel of a call (or finds its twin): its index, or its stages' bindings where more than allowed. */
  const kernelFor = (op: FuncNode, origin: string[], untuned = false): number | { bindings: number } => {
    // a kernel for run-time sizes reads the symbols' values (not tuned: the tuner measures at one size)
    const dynamic = opts.symbols && hasSymbolicDims(op) ? opts.symbols : undefined;
    let k = dynamic
      ? buildDynamicKernel(op, `g${kernels.length}`, dynamic, (sch) => gpuTrace(sch))
      : buildKernel(op, `g${kernels.length}`, (sch) => gpuTrace(sch));
    const tuned = untuned || dynamic ? undefined : opts.traceFor?.(k);
    if (tuned) k = { ...buildKernel(op, k.prim.name, tuned), tuned: true };
    const key = kernelKey(k.prim);
    const known = kernelOf.get(key);
    if (known !== undefined) return known;
    let stages: WgslTemplate[];
    try {
      stages = emitWgslTemplates(k.prim, bindingLimits);
    } catch (e) {
      if (e instanceof KilnError && e.code === 'E_UNSUPPORTED') {
        const base = e.message.replace(/^\[E_UNSUPPORTED\] /, '');
        const msg = e.hint ? base.slice(0, -(e.hint.length + 2)) : base;
        throw new KilnError('E_UNSUPPORTED', `${msg} (kernel of ${k.ops.join(', ') || 'copy'})`, {
          node: origin[0],
          hint: e.hint,
        });
      }
      throw e;
    }
    // workgroup memory and invocations: the default schedules stay within the spec's defaults, which every profile
    // reaches; a tuned schedule (measured on an adapter that allows more) that exceeds the profile is not used
    const over = stages.find(
      (st) =>
        (st.workgroupBytes ?? 0) > limits.maxComputeWorkgroupStorageSize ||
        st.workgroupSize > limits.maxComputeInvocationsPerWorkgroup,
    );
    if (over && k.tuned) return kernelFor(op, origin, true);
    if (over)
      throw new KilnError(
        'E_UNSUPPORTED',
        `a kernel of ${k.ops.join(', ') || 'copy'} needs ${over.workgroupBytes} bytes of workgroup memory and ${over.workgroupSize} invocations per workgroup; the WebGPU limits profile allows ${limits.maxComputeWorkgroupStorageSize} and ${limits.maxComputeInvocationsPerWorkgroup}`,
        { node: origin[0], hint: "compile with a larger profile (--webgpu-limits), or for target 'wasm'" },
      );
    const most = Math.max(0, ...stages.map((st) => st.bindings.length));
    if (most > limits.maxStorageBuffersPerShaderStage) {
      if (k.ops.length <= 1)
        throw new KilnError(
          'E_UNSUPPORTED',
          `a kernel of ${k.ops.join(', ') || 'copy'} binds ${most} storage buffers; the WebGPU limits profile allows ${limits.maxStorageBuffersPerShaderStage} (maxStorageBuffersPerShaderStage)`,
          {
            node: origin[0],
            hint: "compile with a profile that allows more (--webgpu-limits desktop, a JSON file; API webgpuLimits), or for target 'wasm'",
          },
        );
      return { bindings: most };
    }
    const idx = kernels.length;
    kernels.push({
      name: k.prim.name,
      ops: k.ops,
      temps: k.prim.temps.map((t) => {
        const window = valueWindow(t.dtype, t.size, limits);
        return { dtype: t.dtype, size: t.size, ...(window ? { window } : {}) };
      }),
      stages: [],
    });
    templates.push(stages);
    built.push(k);
    kernelOf.set(key, idx);
    return idx;
  };
  /**
   * One kernel call; a fused group whose stages bind more buffers than the profile allows (fusion counts inputs
   * and output; a multi-stage kernel binds temporaries too) is fused again within a tighter limit, its calls
   * passing intermediates of their own, until it fits or is single operators.
   */
  const emitCall = (op: FuncNode, args: number[], out: number, origin: string[], maxBindings: number): void => {
    const k = kernelFor(op, origin);
    if (typeof k === 'number') {
      // (the symbols are the last input of a kernel for run-time sizes)
      gpuCalls.push({ kernel: k, args: [...args, ...(built[k].runSizes ? [symbolsValue!] : []), out], origin });
      return;
    }
    const tighter = Math.max(2, maxBindings - (k.bindings - limits.maxStorageBuffersPerShaderStage));
    const inner = fuseOps(gfunc(op.params, op.body, op.name), undefined, {
      max: tighter,
      of: (e) => valueBindings(e, limits),
    });
    const ids = new Map<GExpr, number>(op.params.map((p, i) => [p, args[i]]));
    const innerCalls = kernelCalls(inner);
    if (innerCalls.length === 1 && tighter === 2) {
      // fusion cannot split it further: refuse every fusion of it
      const single = fuseOps(gfunc(op.params, op.body, op.name), 1);
      innerCalls.splice(0, 1, ...kernelCalls(single));
    }
    for (const ic of innerCalls) {
      const last = ic === innerCalls[innerCalls.length - 1];
      const id = last ? out : add(ic, { kind: 'intermediate' });
      const icArgs = ic.args.map((a) => ids.get(a) ?? valueId(a));
      emitCall(ic.op, icArgs, id, origin, innerCalls.length > 1 ? maxBindings : tighter);
      ids.set(ic, id);
    }
  };
  const countedBy = new Map([...counted].map(([symbol, c]) => [c as GExpr, opts.symbols!.names.indexOf(symbol)]));
  for (const c of calls) {
    emitCall(c.op, c.args.map(valueId), valueId(c), [...new Set(c.origin)], limits.maxStorageBuffersPerShaderStage);
    // (a counted size: its kernel's output goes on into the symbols value)
    const symbol = countedBy.get(c);
    if (symbol !== undefined) gpuCalls[gpuCalls.length - 1].symbol = symbol;
  }
  // stages that differ only in constants share one shader, the differing constants in uniforms
  const countedNames = new Set(counted.keys());
  shareWgslStages(templates).forEach((stages, i) => {
    const symbolsBuf = built[i].runSizes && built[i].prim.inputs[built[i].prim.inputs.length - 1];
    kernels[i].stages = stages.map(({ code, workgroupSize, grid, bindings, windows, uniforms, runIds, foldedX }) => {
      // (a kernel for run-time sizes: the grid of each run from the symbols)
      const ids =
        symbolsBuf && runIds
          ? launchRunIds({ grid, runIds, foldedX }, symbolsBuf, opts.symbols!.names, countedNames)
          : undefined;
      return {
        code,
        workgroupSize,
        grid,
        bindings,
        ...(windows ? { windows } : {}),
        ...(uniforms ? { uniforms } : {}),
        ...(ids ? { runIds: ids, ...(foldedX ? { foldedX: true as const } : {}) } : {}),
      };
    });
  });
  const section: WebGpuSection = {
    values,
    inputs,
    outputs: outputs.map((o, i) => ({ name: outputNames?.[i] ?? `out${i}`, value: valueId(o) })),
    kernels,
    calls: gpuCalls,
    int64: 'u32x2',
    limits: { ...limits },
    ...(symbolsValue !== undefined ? { symbols: symbolsValue } : {}),
  };
  return { section, kernels: built };
}
