// The compiler pipeline: ONNX or torch.export .pt2 -> graph IR -> graph passes -> fused kernels -> loop IR ->
// WebAssembly (and WGSL or PTX) -> artifact.
import type { Tensor } from '../runtime/tensor.js';
import type { ArtifactHeader } from '../runtime/artifact-format.js';
import type { DType } from '../runtime/dtype.js';
import { KilnError } from '../runtime/errors.js';
import type { FuncNode, GExpr } from '../relay-ir/expr.js';
import { runPasses, type Pass } from '../relay-ir/pass-manager.js';
import { printFunc } from '../relay-ir/printer.js';
import { ConstantFolder } from '../relay-ir/passes/fold-constant.js';
import { foldBatchNorm } from '../relay-ir/passes/fold-batch-norm.js';
import { eliminateCommonSubexpressions } from '../relay-ir/passes/cse.js';
import { eliminateDeadCode } from '../relay-ir/passes/simplify.js';
import { fuseGelu } from '../relay-ir/passes/fuse-gelu.js';
import { distinctOutputs } from '../relay-ir/passes/distinct-outputs.js';
import { fuseOps } from '../relay-ir/passes/fuse-ops.js';
import { specializeDims } from '../relay-ir/passes/specialize-dims.js';
import { WEIGHT_BLOCK, packWeights } from '../relay-ir/passes/pack-weights.js';
import { fuseQdq } from '../relay-ir/passes/fuse-qdq.js';
import { explicitConvPadding } from '../relay-ir/passes/explicit-padding.js';
import { winogradConv } from '../relay-ir/passes/winograd-conv.js';
import type { WinogradTile } from '../tensor-expr/ops/winograd.js';
import { importOnnx } from '../frontend/onnx/import.js';
import { importPt2 } from '../frontend/pytorch/import.js';
import { importTorchScript } from '../frontend/pytorch/torchscript/import.js';
import { type ModelFormat, detectFormat } from '../frontend/detect.js';
import { externalDataReader } from './external-data.js';
import { evaluateCall } from './evaluate.js';
import { interpretSymbolic } from './te-interpreter.js';
import { type Program, type ProgramOptions, buildProgram } from './program.js';
import { writeArtifact } from './artifact-writer.js';
import { type GpuSectionOptions, buildWebGpuSection, valueBindings } from './webgpu-program.js';
import { type WebGpuLimits, type WebGpuProfileName, resolveWebGpuLimits } from '../codegen/common/webgpu-profile.js';
import { splitWideConcat } from '../relay-ir/passes/split-wide-concat.js';
import { buildCudaSection } from './cuda-program.js';
import { asNativeKernel, buildNativeSection, hostCpuFlags, nativeKernel } from './native-program.js';
import { type CpuOption, DEFAULT_CPU, resolveCpu } from '../codegen/native/cpu.js';
import { buildControlProgram, hasControlRegions } from './control-program.js';
import { hasControlFlow, mapBodies } from '../relay-ir/control.js';
import type { BuiltKernel } from './kernel.js';
import { type LoopTarget, loopIRAfterEachPass } from './loop-pipeline.js';
import { printPrimFunc } from '../schedule/loop-ir.js';
import { verifyFunc } from '../relay-ir/verify.js';
import { debugSwitch } from '../util/debug.js';
import type { SmTarget } from '../codegen/ptx/codegen.js';
import type { DimOptions } from '../frontend/dims.js';
import { type DimRanges, withDimRanges } from '../relay-ir/sym-dim.js';

export interface CompileOptions {
  /**
   * The model file's format: 'onnx' (ModelProto), 'pt2' (torch.export.save) or 'torchscript' (torch.jit.save);
   * detected from the bytes when absent.
   */
  format?: ModelFormat;
  /** 'webgpu' adds WGSL kernels to the artifact (which still holds the WebAssembly module). */
  target?: 'wasm' | 'webgpu' | 'cuda' | 'native';
  /**
   * For target 'native': the x86-64 level the library is compiled for ('x86-64', 'x86-64-v3' with AVX2 and FMA,
   * 'x86-64-v4' with AVX-512) or 'native', the best level of the compiling machine. Default 'x86-64-v3'.
   */
  cpu?: CpuOption;
  /**
   * Winograd F(m x m, 3x3) for the 3x3 convolutions where it pays, m = 4 or 2 by output size (default: on for
   * target 'wasm', off for GPUs); 2 or 4 forces that tile size wherever Winograd applies.
   */
  winograd?: boolean | WinogradTile;
  /**
   * For target 'webgpu': the device limits the kernels must fit, a profile name ('default': the WebGPU spec's
   * limits, which every device has; 'desktop': desktop GPUs' adapter limits) or limits by GPUSupportedLimits name
   * (the others the spec's). The artifact records it and load() checks the device against it.
   */
  webgpuLimits?: WebGpuProfileName | Partial<WebGpuLimits>;
  /** For target 'cuda': the SM architecture the PTX targets (80, 86 or 90; default 80). */
  sm?: SmTarget;
  /** Concrete shapes for inputs with symbolic or missing dims. */
  inputShapes?: Record<string, number[]>;
  /**
   * Element types of a TorchScript model's inputs by name, where the file does not record them (a scripted
   * forward's `Tensor` arguments are float32 unless given here). ONNX and .pt2 files record their inputs' types.
   */
  inputDTypes?: Record<string, DType>;
  /**
   * Sizes of the model's symbolic input dims by name, e.g. `{ batch: 1, sequence: 128 }`: ONNX dim_params,
   * unnamed dims as `<input>_d<i>`, torch.export's `s0`, `s1`... A range `[lo, hi]` keeps an ONNX dim symbolic
   * through the graph IR (importAndOptimize, specializeGraph); kernels still need every dim fixed.
   */
  dims?: DimOptions;
  /** Input values the compiler may bake in where an operator needs them at compile time. */
  specialize?: Record<string, Tensor>;
  /** Path of the .onnx file, so external data next to it can be read. */
  modelPath?: string;
  /** binaryen optimization (default on). */
  optimize?: boolean;
  /**
   * Receives the text of each IR level as it is produced: 'graph:PASS' after each graph pass, 'fused', then for
   * every kernel 'loop:KERNEL:PASS' after each step of its loop pipeline (the CPU kernels', then the GPU target's).
   */
  dump?: (level: string, text: string) => void;
  /** Tuned schedules: a trace per kernel, e.g. from the tuning database (src/autotune/apply.ts). */
  traceFor?: ProgramOptions['traceFor'];
  /** Tuned schedules of the GPU kernels (targets 'webgpu' and 'cuda'), e.g. from the tuning database. */
  gpuTraceFor?: GpuSectionOptions['traceFor'];
  /** Tuned schedules of the native kernels (target 'native'), tuned for the same CPU level. */
  nativeTraceFor?: ProgramOptions['traceFor'];
  /**
   * Target 'native' without its library: the native kernels are scheduled and planned, no LLVM tool runs and the
   * artifact has no native section (`kiln inspect` prints the native loop IR and LLVM module this way).
   */
  nativeLibrary?: false;
}

export interface CompileResult {
  artifact: Uint8Array;
  header: ArtifactHeader;
  /** Graph after the graph passes, before fusion. */
  graph: FuncNode;
  /** Graph of kernel calls. */
  fused: FuncNode;
  program: Program;
  /** Inputs baked in through `specialize`. */
  specialized: string[];
  /** GPU kernels (WebGPU or CUDA) built with a schedule from `gpuTraceFor`, by name. */
  gpuTuned: string[];
  /** Native kernels built with a schedule from `nativeTraceFor`, by name. */
  nativeTuned: string[];
  /** The kernels of the WebGPU or CUDA section as scheduled for the GPU, in the section's order (else empty). */
  gpuKernels: BuiltKernel[];
  opset: number;
}

/**
 * The graph passes, in order. Winograd convolution is a CPU choice by default: the GPU schedules of its
 * transforms are not tuned yet, and the direct convolution's shared-memory tiles serve the GPU targets.
 * `folder`: the constant folder the frontend used, so that what it folded is not evaluated again.
 */
export const graphPasses = (
  opts: Pick<CompileOptions, 'target' | 'winograd' | 'cpu'> = {},
  folder = new ConstantFolder(evaluateCall, interpretSymbolic),
): Pass[] => [
  { name: 'eliminate-dead-code', run: eliminateDeadCode },
  // before folding: the quantized weights are still integer constants
  { name: 'fuse-qdq', run: (f) => fuseQdq(f, (e) => folder.value(e)?.value) },
  { name: 'fold-constants', run: (f) => folder.fold(f) },
  { name: 'fold-batch-norm', run: foldBatchNorm },
  { name: 'eliminate-common-subexpressions', run: eliminateCommonSubexpressions },
  { name: 'fold-constants', run: (f) => folder.fold(f) },
  { name: 'fuse-gelu', run: fuseGelu },
  { name: 'eliminate-dead-code', run: eliminateDeadCode },
  { name: 'distinct-outputs', run: distinctOutputs },
  ...((opts.winograd ?? ['wasm', 'native'].includes(opts.target ?? 'wasm'))
    ? [
        {
          name: 'winograd-conv',
          run: (f: FuncNode) => winogradConv(f, typeof opts.winograd === 'number' ? opts.winograd : undefined),
        },
      ]
    : []),
  { name: 'explicit-conv-padding', run: explicitConvPadding },
  { name: 'pack-weights', run: (f) => packWeights(f, weightBlock(opts)) },
];

/** The weight block of packed weights: the native level's float32 vector width, else SIMD128's 4. */
const weightBlock = (opts: Pick<CompileOptions, 'target' | 'cpu'>): number =>
  opts.target === 'native' ? resolveCpu(opts.cpu ?? DEFAULT_CPU, hostCpuFlags).tiles.lanes : WEIGHT_BLOCK;

/** Front half: model bytes -> optimized graph IR (no kernels yet). */
export function importAndOptimize(
  modelBytes: Uint8Array,
  opts: CompileOptions = {},
): { graph: FuncNode; outputNames: string[]; specialized: string[]; opset: number; dimRanges: DimRanges } {
  if (!['wasm', 'webgpu', 'cuda', 'native'].includes(opts.target ?? 'wasm')) {
    throw new KilnError('E_UNSUPPORTED', `target '${opts.target}' is not available yet`, {
      hint: "use target 'wasm', 'webgpu', 'cuda' or 'native'",
    });
  }
  const folder = new ConstantFolder(evaluateCall, interpretSymbolic);
  const format = detectFormat(modelBytes, opts.format);
  const torchOpts = { inputShapes: opts.inputShapes, dims: opts.dims, specialize: opts.specialize };
  const typed = Object.keys(opts.inputDTypes ?? {});
  if (typed.length && format !== 'torchscript')
    throw new KilnError(
      'E_INPUT',
      `inputDTypes names ${typed.map((n) => `'${n}'`).join(', ')}, but a${format === 'onnx' ? 'n ONNX' : ' .pt2'} model records its inputs' element types`,
      { hint: 'leave out inputDTypes (--input-dtype); it is for TorchScript files, whose scripted inputs have none' },
    );
  const imported =
    format === 'pt2'
      ? importPt2(modelBytes, torchOpts)
      : format === 'torchscript'
        ? importTorchScript(modelBytes, { ...torchOpts, inputDTypes: opts.inputDTypes })
        : importOnnx(modelBytes, {
            readExternal: opts.modelPath ? externalDataReader(opts.modelPath) : undefined,
            inputShapes: opts.inputShapes,
            dims: opts.dims,
            specialize: opts.specialize,
            fold: (e: GExpr) => folder.value(e) ?? e,
            symbolic: (e: GExpr) => folder.symbolic(e),
          });
  const dump = opts.dump;
  dump?.('graph:import', printFunc(imported.func));
  // KILN_DEBUG=verify: the graph verified as imported and after every pass
  const verify = debugSwitch('verify') ? (f: FuncNode, where: string) => verifyFunc(f, { where }) : undefined;
  const dimRanges: DimRanges = 'dimRanges' in imported ? (imported.dimRanges as DimRanges) : new Map();
  const graph = withDimRanges(dimRanges, () => {
    verify?.(imported.func, 'as imported');
    return runPasses(imported.func, graphPasses(opts, folder), (name, f) => {
      verify?.(f, `after ${name}`);
      dump?.(`graph:${name}`, printFunc(f));
    });
  });
  // the bodies of If / Loop / Scan regions go through the same passes
  const optimized = withDimRanges(dimRanges, () =>
    mapBodies(graph, (body) =>
      runPasses(body, graphPasses(opts, folder), (name, f) => verify?.(f, `after ${name} (${body.name})`)),
    ),
  );
  return {
    graph: optimized,
    outputNames: imported.outputNames,
    specialized: imported.specialized,
    opset: imported.opset,
    dimRanges,
  };
}

/**
 * Fusion for a target: for WebGPU (`limits` given) every kernel binds at most maxStorageBuffersPerShaderStage
 * buffers, so concatenations of more inputs are split first (the output takes one binding) and fusion grows groups
 * only within the limit. Returns the graph it fused (after the split) and the fused function.
 */
export function fuseForTarget(
  graph: FuncNode,
  limits?: WebGpuLimits,
  dump?: CompileOptions['dump'],
): { graph: FuncNode; fused: FuncNode } {
  if (hasControlFlow(graph)) {
    if (limits)
      throw new KilnError(
        'E_UNSUPPORTED',
        'control flow (If, Loop, Scan) is compiled for WebAssembly and CUDA, not WebGPU',
        {
          hint: "compile with target 'wasm', or export the model without data-dependent control flow",
        },
      );
    return { graph, fused: fuseOps(graph) };
  }
  if (!limits) return { graph, fused: fuseOps(graph) };
  const of = (e: GExpr) => valueBindings(e, limits);
  const split = splitWideConcat(graph, limits.maxStorageBuffersPerShaderStage - 1, of);
  dump?.('graph:split-wide-concat', printFunc(split));
  return { graph: split, fused: fuseOps(split, undefined, { max: limits.maxStorageBuffersPerShaderStage, of }) };
}

/** The WebGPU limits profile the options ask for (target 'webgpu' only), or undefined for other targets. */
export function webgpuLimitsOf(opts: CompileOptions): WebGpuLimits | undefined {
  if (opts.webgpuLimits !== undefined && opts.target !== 'webgpu')
    throw new KilnError('E_INPUT', `webgpuLimits applies to target 'webgpu', not '${opts.target ?? 'wasm'}'`, {
      hint: "compile with target: 'webgpu' (--target webgpu), or leave webgpuLimits out",
    });
  return opts.target === 'webgpu' ? resolveWebGpuLimits(opts.webgpuLimits) : undefined;
}

/** The optimized graph of a model, as importAndOptimize gives it. */
export type OptimizedGraph = ReturnType<typeof importAndOptimize>;

export async function compile(modelBytes: Uint8Array, opts: CompileOptions = {}): Promise<CompileResult> {
  webgpuLimitsOf(opts); // a bad profile fails before the import
  if (opts.cpu !== undefined && opts.target !== 'native')
    throw new KilnError('E_INPUT', `cpu applies to target 'native', not '${opts.target ?? 'wasm'}'`, {
      hint: "compile with target: 'native' (--target native), or leave cpu out",
    });
  return compileGraph(importAndOptimize(modelBytes, opts), opts);
}

/**
 * The optimized graph of a model imported with symbolic dims, made the graph of one size: the symbols bound to
 * `values` (relay-ir/passes/specialize-dims.ts) and the graph passes run again, so what now depends on sizes alone
 * folds. Symbols left out stay symbolic.
 */
export function specializeGraph(
  g: OptimizedGraph,
  values: Readonly<Record<string, number>>,
  opts: Pick<CompileOptions, 'target' | 'winograd' | 'cpu'> = {},
): OptimizedGraph {
  const bound = new Map(Object.entries(values));
  for (const [s, v] of bound) {
    const r = g.dimRanges.get(s);
    if (r && !(v >= r[0] && v <= r[1]))
      throw new KilnError('E_INPUT', `dim '${s}' = ${v} is outside its range ${r[0]}..${r[1]}`, {
        hint: 'give a size inside the range the model was compiled for',
      });
  }
  const dimRanges = new Map([...g.dimRanges].filter(([s]) => !bound.has(s)));
  const graph = withDimRanges(dimRanges, () => runPasses(specializeDims(g.graph, bound), graphPasses(opts)));
  return { ...g, graph, dimRanges };
}

/** Back half: optimized graph IR -> fused kernels -> artifact. */
export async function compileGraph(
  { graph: optimized, outputNames, specialized, opset, dimRanges }: OptimizedGraph,
  opts: CompileOptions = {},
): Promise<CompileResult> {
  const limits = webgpuLimitsOf(opts);
  const { graph, fused } = withDimRanges(dimRanges, () => {
    const f = fuseForTarget(optimized, limits, opts.dump);
    if (debugSwitch('verify')) verifyFunc(f.fused, { where: 'after fuse-ops', fused: true });
    return f;
  });
  opts.dump?.('fused', printFunc(fused));
  const nativeTuned: string[] = [];
  const cpu = opts.target === 'native' ? resolveCpu(opts.cpu ?? DEFAULT_CPU, hostCpuFlags) : undefined;
  const programOpts: ProgramOptions = {
    optimize: opts.optimize,
    outputNames,
    traceFor: opts.traceFor,
    dimRanges,
    ...(cpu && {
      nativeKernel: (fn: FuncNode, k: BuiltKernel) => {
        const trace = opts.nativeTraceFor?.(fn, k);
        if (trace) nativeTuned.push(k.prim.name);
        return nativeKernel(k, cpu, trace);
      },
    }),
  };
  const control = hasControlRegions(fused);
  const program = control ? buildControlProgram(fused, programOpts) : buildProgram(fused, programOpts);
  const gpuTuned: string[] = [];
  let gpuKernels: BuiltKernel[] = [];
  if (opts.target === 'webgpu') {
    const webgpu = buildWebGpuSection(fused, program.weightOffsets, outputNames, {
      limits,
      symbols: program.symbols,
      traceFor:
        opts.gpuTraceFor &&
        ((k) => {
          const t = opts.gpuTraceFor!(k);
          if (t) gpuTuned.push(k.prim.name);
          return t;
        }),
    });
    program.header.webgpu = webgpu.section;
    gpuKernels = webgpu.kernels;
  }
  if (opts.target === 'cuda') {
    const cuda = buildCudaSection(
      program.kernels,
      opts.sm ?? 80,
      program.header.memoryBytes,
      opts.gpuTraceFor,
      program.header.symbols,
    );
    program.header.cuda = cuda.section;
    gpuKernels = cuda.kernels;
    for (const k of cuda.kernels) if (k.tuned) gpuTuned.push(k.prim.name);
  }
  if (opts.target === 'native' && opts.nativeLibrary !== false) {
    const native = buildNativeSection(program, cpu!.level);
    program.header.native = native.section;
    program.native = native.library;
  }
  if (opts.dump) {
    const pipelines: [LoopTarget, readonly BuiltKernel[]][] = [['wasm', program.kernels]];
    if (opts.target === 'webgpu' || opts.target === 'cuda') pipelines.push([opts.target, gpuKernels]);
    if (cpu) pipelines.push(['native', program.kernels.map(asNativeKernel)]);
    for (const [target, kernels] of pipelines) {
      for (const k of kernels)
        for (const s of loopIRAfterEachPass(k, target))
          opts.dump(`loop:${k.prim.name}:${s.pass}`, printPrimFunc(s.prim));
    }
  }
  const { bytes, header } = await writeArtifact(program);
  return { artifact: bytes, header, graph, fused, program, specialized, opset, gpuTuned, nativeTuned, gpuKernels };
}
