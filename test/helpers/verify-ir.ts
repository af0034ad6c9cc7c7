// Builds the IR a compile makes, level by level, without emitting code (no binaryen): the graph after each graph
// pass, the fused graph, and every kernel's loop IR under the CPU, WebGPU and CUDA default schedules. The
// verifier tests run the IR verifiers over it.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { type CompileOptions, graphPasses } from '../../src/compiler/compile.js';
import { evaluateCall } from '../../src/compiler/evaluate.js';
import { externalDataReader } from '../../src/compiler/external-data.js';
import { buildKernel, type BuiltKernel } from '../../src/compiler/kernel.js';
import { gpuPrimFunc } from '../../src/compiler/cuda-program.js';
import { importOnnx, decodeModel } from '../../src/frontend/onnx/import.js';
import { decodeTensorProto } from '../../src/frontend/onnx/tensor-proto.js';
import type { FuncNode, GExpr } from '../../src/relay-ir/expr.js';
import { runPasses } from '../../src/relay-ir/pass-manager.js';
import { ConstantFolder } from '../../src/relay-ir/passes/fold-constant.js';
import { fuseOps, kernelCalls } from '../../src/relay-ir/passes/fuse-ops.js';
import { bodiesOf, isControlCall } from '../../src/relay-ir/control.js';
import type { Tensor } from '../../src/runtime/tensor.js';
import { gpuTrace } from '../../src/schedule/gpu-schedule.js';
import type { PrimFunc } from '../../src/schedule/loop-ir.js';

export interface StagedIR {
  /** The imported graph, then the graph after each pass (name, graph). */
  graphs: { pass: string; fn: FuncNode }[];
  fused: FuncNode;
  kernels: BuiltKernel[];
}

/** Imports, runs the graph passes (recording each result) and fuses; `after` sees each graph as it is made. */
export function stageGraph(
  bytes: Uint8Array,
  opts: CompileOptions = {},
): { graphs: { pass: string; fn: FuncNode }[]; fused: FuncNode } {
  const folder = new ConstantFolder(evaluateCall);
  const imported = importOnnx(bytes, {
    readExternal: opts.modelPath ? externalDataReader(opts.modelPath) : undefined,
    inputShapes: opts.inputShapes,
    specialize: opts.specialize,
    fold: (e: GExpr) => folder.value(e) ?? e,
  });
  const graphs = [{ pass: 'import', fn: imported.func }];
  const graph = runPasses(imported.func, graphPasses(opts, folder), (pass, fn) => graphs.push({ pass, fn }));
  return { graphs, fused: fuseOps(graph) };
}

/** The kernel calls of a fused graph and of its control regions' bodies (each body once; regions have no kernel). */
function allKernelCalls(fused: FuncNode, seen = new Set<FuncNode>()): ReturnType<typeof kernelCalls> {
  return kernelCalls(fused).flatMap((c) => {
    const body = c.op.body;
    if (!isControlCall(body)) return [c];
    const bodies = bodiesOf(body.op.control).filter((b) => !seen.has(b));
    for (const b of bodies) seen.add(b);
    return bodies.flatMap((b) => allKernelCalls(b, seen));
  });
}

/** The kernels of a fused graph under the CPU default schedule (as buildProgram builds them, before dedup). */
export function cpuKernels(fused: FuncNode): BuiltKernel[] {
  return allKernelCalls(fused).map((c, i) => buildKernel(c.op, `k${i}`));
}

/** The WebGPU target's loop IR of each kernel (buildWebGpuSection's default schedule). */
export function webgpuPrims(fused: FuncNode): PrimFunc[] {
  return allKernelCalls(fused).map((c, i) => buildKernel(c.op, `g${i}`, (sch) => gpuTrace(sch)).prim);
}

/** The CUDA target's loop IR of each kernel (buildCudaSection's default schedule). */
export function cudaPrims(kernels: readonly BuiltKernel[]): PrimFunc[] {
  return kernels.map(gpuPrimFunc);
}

/** An ONNX backend test case's model and the compile options runCase uses (inputs of its first data set baked in). */
export function nodeCase(dir: string): { bytes: Uint8Array; opts: CompileOptions } | undefined {
  const modelPath = join(dir, 'model.onnx');
  if (!existsSync(modelPath)) return undefined;
  const set = readdirSync(dir)
    .filter((d) => d.startsWith('test_data_set_'))
    .sort()[0];
  if (!set) return undefined;
  const bytes = readFileSync(modelPath);
  const graph = decodeModel(bytes).graph!;
  const inits = new Set(graph.initializer.map((t) => t.name));
  const inputNames = graph.input.map((i) => i.name).filter((n) => !inits.has(n));
  const files = readdirSync(join(dir, set))
    .filter((f) => f.startsWith('input_') && f.endsWith('.pb'))
    .sort((a, b) => Number(a.slice(6, -3)) - Number(b.slice(6, -3)));
  const inputs = files.map((f) => decodeTensorProto(readFileSync(join(dir, set, f)), f));
  const feeds: Record<string, Tensor> = {};
  inputNames.forEach((n, i) => {
    if (inputs[i]) feeds[n] = inputs[i];
  });
  return {
    bytes,
    opts: {
      modelPath,
      specialize: feeds,
      inputShapes: Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, v.shape])),
    },
  };
}
