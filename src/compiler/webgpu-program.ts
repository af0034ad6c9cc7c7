// A fused main function -> the artifact's WebGPU section: kernels built with the default GPU schedule and
// compiled to WGSL, GPU values (inputs, outputs, intermediates, weights shared with the WebAssembly part's
// weights section) and the call list.
import { KilnError } from '../runtime/errors.js';
import type { GpuCall, GpuKernel, GpuValue, WebGpuSection } from '../runtime/artifact-format.js';
import type { ConstNode, FuncNode, GExpr } from '../relay-ir/expr.js';
import { kernelCalls } from '../relay-ir/passes/fuse-ops.js';
import { type TensorType, staticShape, numel } from '../relay-ir/types.js';
import { gpuTrace } from '../schedule/gpu-schedule.js';
import { type WgslTemplate, emitWgslTemplates, shareWgslStages } from '../codegen/wgsl/codegen.js';
import { type BuiltKernel, buildKernel, kernelKey } from './kernel.js';
import type { TraceStep } from '../schedule/schedule.js';

export interface GpuSectionOptions {
  /** A schedule instead of the default GPU schedule for a kernel (a tuned record, a tuner's candidate). */
  traceFor?: (def: BuiltKernel) => readonly TraceStep[] | undefined;
}

/** The section, and its distinct kernels as built (in the section's order). */
export function buildWebGpuSection(
  main: FuncNode,
  weightOffsets: ReadonlyMap<ConstNode, number>,
  outputNames?: readonly string[],
  opts: GpuSectionOptions = {},
): { section: WebGpuSection; kernels: BuiltKernel[] } {
  const outputs: GExpr[] = main.body.kind === 'tuple' ? [...main.body.fields] : [main.body];
  const calls = kernelCalls(main);

  const values: GpuValue[] = [];
  const valueIds = new Map<GExpr, number>();
  const add = (e: GExpr, v: Omit<GpuValue, 'dtype' | 'size'>): number => {
    const t = e.type as TensorType;
    valueIds.set(e, values.length);
    values.push({ dtype: t.dtype, size: numel(staticShape(t)), ...v });
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
  for (const c of calls) add(c, { kind: outputs.includes(c) ? 'output' : 'intermediate' });

  const kernels: GpuKernel[] = [];
  const templates: WgslTemplate[][] = [];
  const built: BuiltKernel[] = [];
  const kernelOf = new Map<string, number>();
  const gpuCalls: GpuCall[] = calls.map((c) => {
    const origin = [...new Set(c.origin)];
    let k = buildKernel(c.op, `g${kernels.length}`, (sch) => gpuTrace(sch));
    const tuned = opts.traceFor?.(k);
    if (tuned) k = { ...buildKernel(c.op, k.prim.name, tuned), tuned: true };
    const key = kernelKey(k.prim);
    let idx = kernelOf.get(key);
    if (idx === undefined) {
      let stages: WgslTemplate[];
      try {
        stages = emitWgslTemplates(k.prim);
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
      idx = kernels.length;
      kernels.push({
        name: k.prim.name,
        ops: k.ops,
        temps: k.prim.temps.map((t) => ({ dtype: t.dtype, size: t.size })),
        stages: [],
      });
      templates.push(stages);
      built.push(k);
      kernelOf.set(key, idx);
    }
    return { kernel: idx, args: [...c.args.map(valueId), valueId(c)], origin };
  });
  // stages that differ only in constants share one shader, the differing constants in uniforms
  shareWgslStages(templates).forEach((stages, i) => {
    kernels[i].stages = stages.map(({ code, workgroupSize, grid, bindings, uniforms }) => ({
      code,
      workgroupSize,
      grid,
      bindings,
      ...(uniforms ? { uniforms } : {}),
    }));
  });
  const section: WebGpuSection = {
    values,
    inputs,
    outputs: outputs.map((o, i) => ({ name: outputNames?.[i] ?? `out${i}`, value: valueId(o) })),
    kernels,
    calls: gpuCalls,
    int64: 'u32x2',
  };
  return { section, kernels: built };
}
