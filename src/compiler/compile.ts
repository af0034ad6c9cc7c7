// The compiler pipeline: ONNX or torch.export .pt2 -> graph IR -> graph passes -> fused kernels -> loop IR ->
// WebAssembly (and WGSL or PTX) -> artifact.
import type { Tensor } from '../runtime/tensor.js';
import type { ArtifactHeader } from '../runtime/artifact-format.js';
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
import { packWeights } from '../relay-ir/passes/pack-weights.js';
import { explicitConvPadding } from '../relay-ir/passes/explicit-padding.js';
import { winogradConv } from '../relay-ir/passes/winograd-conv.js';
import type { WinogradTile } from '../tensor-expr/ops/winograd.js';
import { importOnnx } from '../frontend/onnx/import.js';
import { importPt2 } from '../frontend/pytorch/import.js';
import { importTorchScript } from '../frontend/pytorch/torchscript/import.js';
import { type ModelFormat, detectFormat } from '../frontend/detect.js';
import { externalDataReader } from './external-data.js';
import { evaluateCall } from './evaluate.js';
import { type Program, type ProgramOptions, buildProgram } from './program.js';
import { writeArtifact } from './artifact-writer.js';
import { type GpuSectionOptions, buildWebGpuSection } from './webgpu-program.js';
import { buildCudaSection } from './cuda-program.js';
import type { BuiltKernel } from './kernel.js';
import { type LoopTarget, loopIRAfterEachPass } from './loop-pipeline.js';
import { printPrimFunc } from '../schedule/loop-ir.js';
import { verifyFunc } from '../relay-ir/verify.js';
import { debugSwitch } from '../util/debug.js';
import type { SmTarget } from '../codegen/ptx/codegen.js';
import type { DimOptions } from '../frontend/dims.js';

export interface CompileOptions {
  /**
   * The model file's format: 'onnx' (ModelProto), 'pt2' (torch.export.save) or 'torchscript' (torch.jit.save);
   * detected from the bytes when absent.
   */
  format?: ModelFormat;
  /** 'webgpu' adds WGSL kernels to the artifact (which still holds the WebAssembly module). */
  target?: 'wasm' | 'webgpu' | 'cuda';
  /**
   * Winograd F(m x m, 3x3) for the 3x3 convolutions where it pays, m = 4 or 2 by output size (default: on for
   * target 'wasm', off for GPUs); 2 or 4 forces that tile size wherever Winograd applies.
   */
  winograd?: boolean | WinogradTile;
  /** For target 'cuda': the SM architecture the PTX targets (80, 86 or 90; default 80). */
  sm?: SmTarget;
  /** Concrete shapes for inputs with symbolic or missing dims. */
  inputShapes?: Record<string, number[]>;
  /**
   * Sizes of the model's symbolic input dims by name, e.g. `{ batch: 1, sequence: 128 }`: ONNX dim_params,
   * unnamed dims as `<input>_d<i>`, torch.export's `s0`, `s1`... (ranges `[lo, hi]` are not supported yet).
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
  opts: Pick<CompileOptions, 'target' | 'winograd'> = {},
  folder = new ConstantFolder(evaluateCall),
): Pass[] => [
  { name: 'eliminate-dead-code', run: eliminateDeadCode },
  { name: 'fold-constants', run: (f) => folder.fold(f) },
  { name: 'fold-batch-norm', run: foldBatchNorm },
  { name: 'eliminate-common-subexpressions', run: eliminateCommonSubexpressions },
  { name: 'fold-constants', run: (f) => folder.fold(f) },
  { name: 'fuse-gelu', run: fuseGelu },
  { name: 'eliminate-dead-code', run: eliminateDeadCode },
  { name: 'distinct-outputs', run: distinctOutputs },
  ...((opts.winograd ?? (opts.target ?? 'wasm') === 'wasm')
    ? [
        {
          name: 'winograd-conv',
          run: (f: FuncNode) => winogradConv(f, typeof opts.winograd === 'number' ? opts.winograd : undefined),
        },
      ]
    : []),
  { name: 'explicit-conv-padding', run: explicitConvPadding },
  { name: 'pack-weights', run: packWeights },
];

/** Front half: model bytes -> optimized graph IR (no kernels yet). */
export function importAndOptimize(
  modelBytes: Uint8Array,
  opts: CompileOptions = {},
): { graph: FuncNode; outputNames: string[]; specialized: string[]; opset: number } {
  if (!['wasm', 'webgpu', 'cuda'].includes(opts.target ?? 'wasm')) {
    throw new KilnError('E_UNSUPPORTED', `target '${opts.target}' is not available yet`, {
      hint: "use target 'wasm', 'webgpu' or 'cuda'",
    });
  }
  const folder = new ConstantFolder(evaluateCall);
  const format = detectFormat(modelBytes, opts.format);
  const torchOpts = { inputShapes: opts.inputShapes, dims: opts.dims, specialize: opts.specialize };
  const imported =
    format === 'pt2'
      ? importPt2(modelBytes, torchOpts)
      : format === 'torchscript'
        ? importTorchScript(modelBytes, torchOpts)
        : importOnnx(modelBytes, {
            readExternal: opts.modelPath ? externalDataReader(opts.modelPath) : undefined,
            inputShapes: opts.inputShapes,
            dims: opts.dims,
            specialize: opts.specialize,
            fold: (e: GExpr) => folder.value(e) ?? e,
          });
  const dump = opts.dump;
  dump?.('graph:import', printFunc(imported.func));
  // KILN_DEBUG=verify: the graph verified as imported and after every pass
  const verify = debugSwitch('verify') ? (f: FuncNode, where: string) => verifyFunc(f, { where }) : undefined;
  verify?.(imported.func, 'as imported');
  const graph = runPasses(imported.func, graphPasses(opts, folder), (name, f) => {
    verify?.(f, `after ${name}`);
    dump?.(`graph:${name}`, printFunc(f));
  });
  return { graph, outputNames: imported.outputNames, specialized: imported.specialized, opset: imported.opset };
}

export async function compile(modelBytes: Uint8Array, opts: CompileOptions = {}): Promise<CompileResult> {
  const { graph, outputNames, specialized, opset } = importAndOptimize(modelBytes, opts);
  const fused = fuseOps(graph);
  if (debugSwitch('verify')) verifyFunc(fused, { where: 'after fuse-ops', fused: true });
  opts.dump?.('fused', printFunc(fused));
  const program = buildProgram(fused, { optimize: opts.optimize, outputNames, traceFor: opts.traceFor });
  const gpuTuned: string[] = [];
  let gpuKernels: BuiltKernel[] = [];
  if (opts.target === 'webgpu') {
    const webgpu = buildWebGpuSection(fused, program.weightOffsets, outputNames, {
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
    const cuda = buildCudaSection(program.kernels, opts.sm ?? 80, program.header.memoryBytes, opts.gpuTraceFor);
    program.header.cuda = cuda.section;
    gpuKernels = cuda.kernels;
    for (const k of cuda.kernels) if (k.tuned) gpuTuned.push(k.prim.name);
  }
  if (opts.dump) {
    const pipelines: [LoopTarget, readonly BuiltKernel[]][] = [['wasm', program.kernels]];
    if (opts.target === 'webgpu' || opts.target === 'cuda') pipelines.push([opts.target, gpuKernels]);
    for (const [target, kernels] of pipelines) {
      for (const k of kernels)
        for (const s of loopIRAfterEachPass(k, target))
          opts.dump(`loop:${k.prim.name}:${s.pass}`, printPrimFunc(s.prim));
    }
  }
  const { bytes, header } = await writeArtifact(program);
  return { artifact: bytes, header, graph, fused, program, specialized, opset, gpuTuned, gpuKernels };
}
