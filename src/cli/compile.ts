// kiln compile MODEL.onnx|MODEL.pt2|MODEL.pt -o OUT.kiln
import { existsSync, readFileSync } from 'node:fs';
import { compile } from '../compiler/compile.js';
import { describeWebGpuLimits } from '../compiler/wgsl-text.js';
import type { BuiltKernel } from '../compiler/kernel.js';
import { CPU_LEVELS, type CpuOption, DEFAULT_CPU, resolveCpu } from '../codegen/native/cpu.js';
import { KilnError } from '../runtime/errors.js';
import { parseDim, parseNamedDType, parseNamedShape, readTensorFile, writeFileAtomic } from './tensor-files.js';
import { SM_TARGETS, type SmTarget } from '../codegen/ptx/codegen.js';
import { choiceFlag, namedValue, usageError } from './usage.js';
import {
  WEBGPU_PROFILES,
  type WebGpuLimits,
  type WebGpuProfileName,
  resolveWebGpuLimits,
} from '../codegen/common/webgpu-profile.js';

export interface CompileFlags {
  target?: string;
  'webgpu-limits'?: string;
  sm?: string;
  cpu?: string;
  db?: string;
  'no-tuning'?: boolean;
  output?: string;
  'input-shape'?: string[];
  'input-dtype'?: string[];
  dim?: string[];
  specialize?: string[];
  'no-optimize'?: boolean;
  verbose?: boolean;
}

export function readModel(path: string | undefined): Uint8Array {
  if (!path) throw usageError('no model file given', 'kiln compile MODEL.onnx -o OUT.kiln');
  try {
    return readFileSync(path);
  } catch (e) {
    throw new KilnError('E_IO', `cannot read '${path}': ${(e as Error).message}`);
  }
}

export function compileOptions(modelPath: string, v: CompileFlags) {
  if (v.cpu !== undefined && v.target !== 'native')
    throw usageError('--cpu applies to --target native', 'add --target native, or leave --cpu out');
  return {
    modelPath,
    inputShapes: Object.fromEntries((v['input-shape'] ?? []).map(parseNamedShape)),
    ...(v['input-dtype']?.length ? { inputDTypes: Object.fromEntries(v['input-dtype'].map(parseNamedDType)) } : {}),
    dims: Object.fromEntries((v.dim ?? []).map(parseDim)),
    specialize: Object.fromEntries(
      (v.specialize ?? []).map((s) => {
        const [name, file] = namedValue(s, '--specialize', 'name=file.npy');
        return [name, readTensorFile(file)];
      }),
    ),
    optimize: !v['no-optimize'],
    ...(v.target === 'cuda'
      ? { target: 'cuda' as const, sm: cudaSm(v.sm) }
      : v.target === 'native'
        ? { target: 'native' as const, cpu: cpuFlag(v.cpu) }
        : { target: cliTarget(v.target) }),
    ...webgpuLimitsFlag(v['webgpu-limits'], v.target),
  };
}

/** --webgpu-limits default|desktop|FILE.json (target webgpu): a profile name, or limits by GPUSupportedLimits name. */
export function webgpuLimitsFlag(
  flag: string | undefined,
  target: string | undefined,
): { webgpuLimits?: WebGpuProfileName | Partial<WebGpuLimits> } {
  if (flag === undefined) return {};
  if (target !== 'webgpu')
    throw usageError('--webgpu-limits applies to --target webgpu', 'add --target webgpu, or leave --webgpu-limits out');
  if (Object.hasOwn(WEBGPU_PROFILES, flag)) return { webgpuLimits: flag as WebGpuProfileName };
  if (!/\.json$/i.test(flag) && !existsSync(flag))
    throw usageError(
      `--webgpu-limits '${flag}' is neither a profile nor a JSON file`,
      `use ${Object.keys(WEBGPU_PROFILES).join(', ')} or LIMITS.json (e.g. {"maxStorageBuffersPerShaderStage": 10})`,
    );
  let text: string;
  try {
    text = readFileSync(flag, 'utf8');
  } catch (e) {
    throw new KilnError('E_IO', `cannot read WebGPU limits file '${flag}': ${(e as Error).message}`);
  }
  let limits: unknown;
  try {
    limits = JSON.parse(text);
  } catch (e) {
    throw new KilnError('E_INPUT', `WebGPU limits file '${flag}' is not JSON: ${(e as Error).message}`, {
      hint: 'write an object of limits, e.g. {"maxStorageBuffersPerShaderStage": 10}',
    });
  }
  // checked here, so that a bad file stops the command before any work
  resolveWebGpuLimits(limits as Partial<WebGpuLimits>, `WebGPU limits file '${flag}'`);
  return { webgpuLimits: limits as Partial<WebGpuLimits> };
}

function cliTarget(t: string | undefined): 'wasm' | 'webgpu' {
  const target = choiceFlag(t, '--target', ['wasm', 'webgpu', 'cuda', 'native'] as const, 'wasm');
  if (target === 'cuda' || target === 'native') throw new KilnError('E_INTERNAL', `cliTarget called for ${target}`);
  return target;
}

/** --cpu for target native (default x86-64-v3). */
export function cpuFlag(cpu: string | undefined): CpuOption {
  return choiceFlag(cpu, '--cpu', [...CPU_LEVELS, 'native'] as const, DEFAULT_CPU);
}

/** --sm for target cuda (default 80). */
export function cudaSm(sm: string | undefined): SmTarget {
  const n = Number(sm ?? 80);
  if (!(SM_TARGETS as readonly number[]).includes(n))
    throw usageError(`unsupported --sm '${sm}'`, `use one of ${SM_TARGETS.join(', ')}`);
  return n as SmTarget;
}

export async function compileCommand(pos: string[], v: CompileFlags): Promise<number> {
  const modelPath = pos[0];
  const options = compileOptions(modelPath, v); // flags checked before any work
  const bytes = readModel(modelPath);
  const out = v.output ?? `${modelPath.replace(/\.(onnx|pt2|pt)$/, '')}.kiln`;
  const t0 = performance.now();
  const tuning = await tuningLookup(v);
  let r: Awaited<ReturnType<typeof compile>>;
  try {
    r = await compile(bytes, {
      ...options,
      traceFor: tuning?.lookup.traceFor,
      gpuTraceFor: tuning?.gpu && ((k) => tuning.gpu!.traceFor(undefined, k)),
      nativeTraceFor: tuning?.native?.traceFor,
    });
  } finally {
    tuning?.close();
  }
  writeFileAtomic(out, r.artifact);
  const h = r.header;
  const mb = (n: number) => `${(n / 1048576).toFixed(2)} MiB`;
  console.log(
    `compiled ${modelPath} (opset ${r.opset}) -> ${out} in ${((performance.now() - t0) / 1000).toFixed(2)} s`,
  );
  console.log(
    `  ${h.kernels.length} kernels, ${h.calls.length} calls; artifact ${mb(r.artifact.length)} (wasm ${mb(h.sections.wasm.length)}, weights ${mb(h.sections.weights.length)})`,
  );
  console.log(
    `  memory: arena ${mb(h.plan.arenaBytes)} for ${mb(h.plan.intermediateBytes)} of intermediates; total ${mb(h.memoryBytes)}${h.symbols ? " (at the dims' upper bounds)" : ''}`,
  );
  if (r.specialized.length) console.log(`  baked-in inputs: ${r.specialized.join(', ')}`);
  for (const i of h.inputs) console.log(`  input  ${i.name}: ${i.dtype}[${i.dims ?? i.shape}]`);
  for (const s of h.symbols ?? [])
    console.log(
      `  dim    ${s.name}: ${s.declared ? s.declared.join('..') : `${s.min}..${s.max}`} (${s.counted ? 'counted while the model runs, ' : ''}memory planned at ${s.max})`,
    );
  for (const o of h.outputs) console.log(`  output ${o.name}: ${o.dtype}[${o.dims ?? o.shape}]`);
  if (h.webgpu) {
    const stages = h.webgpu.kernels.flatMap((k) => k.stages);
    const dispatches = h.webgpu.calls.reduce((a, c) => a + h.webgpu!.kernels[c.kernel].stages.length, 0);
    const shared = stages.filter((st) => st.uniforms).length;
    console.log(
      `  webgpu: ${h.webgpu.kernels.length} kernels, ${stages.length} stages, ${new Set(stages.map((st) => st.code)).size} distinct shaders (${shared} stages read their constants from uniforms), ${dispatches} dispatches per run`,
    );
    console.log(`  ${describeWebGpuLimits(h.webgpu)}`);
  }
  if (h.cuda) {
    const entries = h.cuda.kernels.reduce((a, k) => a + k.launches.length, 0);
    console.log(
      `  cuda: PTX ${h.cuda.ptxVersion} for sm_${h.cuda.sm}, ${h.cuda.kernels.length} kernels, ${entries} entries, ${(h.cuda.ptx.length / 1024).toFixed(1)} KiB of PTX`,
    );
    if (v.verbose) {
      const { ptxasAvailable, runPtxas, formatResources } = await import('../codegen/ptx/ptxas.js');
      if (!ptxasAvailable())
        console.log('  ptxas not found: no resource usage (install the CUDA toolkit or set KILN_PTXAS)');
      else {
        const res = runPtxas(h.cuda.ptx, h.cuda.sm);
        if (!res.ok)
          throw new KilnError(
            'E_INTERNAL',
            `ptxas rejected the generated PTX:\n${res.errors.map((e) => `${e.entry ?? '?'}: ${e.message}`).join('\n')}`,
            { hint: 'please report this with the model' },
          );
        console.log(`  ptxas -arch=sm_${h.cuda.sm} resource usage per entry:\n${formatResources(res.resources)}`);
      }
    }
  }
  if (tuning) {
    // a kernel whose best record is its default schedule counts as kept, not tuned (by workload: a call whose kernel
    // is another's twin was looked up under a name that the next kernel then takes)
    const { workloadOf } = await import('../autotune/workload.js');
    const keptWorkloads = new Set(tuning.lookup.used.filter((u) => u.isDefault).map((u) => u.workload));
    const isKept = r.program.kernels.map((k) => !!k.tuned && keptWorkloads.has(workloadOf(k).key));
    const tuned = r.program.kernels.filter((k, i) => k.tuned && !isKept[i]).map((k) => k.prim.name);
    const kept = isKept.filter(Boolean).length;
    const keptNote = kept ? `; ${kept} kept their default schedule (tuning found nothing faster)` : '';
    console.log(
      `  tuned schedules: ${tuned.length} of ${h.kernels.length} kernels${tuned.length ? ` (${tuned.join(', ')})` : ''} from ${tuning.path}${keptNote}`,
    );
    for (const s of tuning.lookup.stale)
      console.log(`  warning: tuned record for ${s.kernel} no longer applies (${s.error}); default schedule used`);
    if (tuning.gpu) {
      const n = h.webgpu?.kernels.length ?? h.cuda?.kernels.length ?? 0;
      const used = [...new Set(r.gpuTuned)];
      console.log(
        `  tuned ${v.target} schedules (${tuning.gpuTarget}): ${used.length} of ${n} kernels${used.length ? ` (${used.join(', ')})` : ''}`,
      );
      for (const s of tuning.gpu.stale)
        console.log(
          `  warning: tuned ${v.target} record for ${s.kernel} no longer applies (${s.error}); default schedule used`,
        );
    } else if (tuning.gpuNote) console.log(`  ${tuning.gpuNote}`);
    if (tuning.native) {
      // (as above: a kernel whose best record is its default schedule is kept, not tuned)
      const names = (isDefault: boolean) => [
        ...new Set(tuning.native!.used.filter((u) => u.isDefault === isDefault).map((u) => u.kernel)),
      ];
      const used = names(false),
        kept = names(true).length;
      console.log(
        `  tuned native schedules (${tuning.nativeTarget}): ${used.length} of ${h.kernels.length} kernels${used.length ? ` (${used.join(', ')})` : ''}${kept ? `; ${kept} kept their default schedule` : ''}`,
      );
      for (const s of tuning.native.stale)
        console.log(
          `  warning: tuned native record for ${s.kernel} no longer applies (${s.error}); default schedule used`,
        );
    }
  }
  return 0;
}

/** The tuning database to compile with: --db PATH, else tuning-db/kiln.sqlite when it exists; none with --no-tuning. */
async function tuningLookup(v: CompileFlags) {
  if (v['no-tuning']) return undefined;
  const { DEFAULT_DB_PATH, TuningDatabase } = await import('../autotune/database.js');
  const path = v.db ?? DEFAULT_DB_PATH;
  if (!existsSync(path)) {
    if (v.db)
      throw new KilnError('E_IO', `no tuning database at '${path}'`, {
        hint: 'run kiln tune first, or leave out --db',
      });
    return undefined;
  }
  const { tunedTraces } = await import('../autotune/apply.js');
  const { gpuTarget, note } = await gpuTuningTarget(v);
  const nativeTarget = await nativeTuningTarget(v);
  const db = TuningDatabase.open(path);
  return {
    path,
    lookup: tunedTraces(db),
    gpu: gpuTarget && tunedTraces(db, gpuTarget),
    gpuTarget: gpuTarget?.key,
    native: nativeTarget && tunedTraces(db, nativeTarget.target, { defaultTraceOf: nativeTarget.defaultTraceOf }),
    nativeTarget: nativeTarget?.target.key,
    gpuNote: note,
    close: () => db.close(),
  };
}

/**
 * The target whose records the native kernels use: the --cpu level on this CPU (other CPUs' of that level next),
 * and the native default schedule of a kernel there.
 */
async function nativeTuningTarget(v: CompileFlags) {
  if (v.target !== 'native') return undefined;
  const { nativeTarget } = await import('../autotune/target.js');
  const { hostCpuFlags, nativeDefaultTrace } = await import('../compiler/native-program.js');
  const cpu = resolveCpu(cpuFlag(v.cpu), hostCpuFlags);
  return { target: nativeTarget(cpu), defaultTraceOf: (k: BuiltKernel) => nativeDefaultTrace(k, cpu) };
}

/** The target whose records the GPU kernels use: WebGPU, this machine's adapter (records of the same vendor and
 *  architecture are a fallback); CUDA, the SM (compiling needs no GPU: records of any device with that SM). */
async function gpuTuningTarget(v: CompileFlags) {
  const { cudaTarget, webgpuTarget } = await import('../autotune/target.js');
  if (v.target === 'cuda') return { gpuTarget: cudaTarget(cudaSm(v.sm)) };
  if (v.target !== 'webgpu') return {};
  try {
    const { nodeGpuAdapter } = await import('../conformance/node-webgpu.js');
    return { gpuTarget: webgpuTarget(await nodeGpuAdapter(), 'Dawn (npm webgpu)') };
  } catch (e) {
    return {
      note: `no WebGPU adapter here (${(e as Error).message.split('\n')[0]}): WebGPU kernels use default schedules`,
    };
  }
}
