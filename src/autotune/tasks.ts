// Tuning tasks: the distinct kernels (workloads) of a fused model, with how often the model calls each, and a
// plain-data form of each kernel's primitive function that worker threads rebuild it from.
import type { Tensor } from '../runtime/tensor.js';
import { KilnError } from '../runtime/errors.js';
import {
  type FuncNode,
  type GExpr,
  type VarNode,
  gcall,
  gcallFunc,
  gconst,
  gfunc,
  gvar,
  isFuncCall,
  postOrder,
} from '../relay-ir/expr.js';
import { kernelCalls } from '../relay-ir/passes/fuse-ops.js';
import { placedConcatCalls } from '../compiler/program.js';
import { getOp, type Attrs, type OpSpec } from '../relay-ir/op.js';
import type { TensorType } from '../relay-ir/types.js';
import { type BuiltKernel, buildKernel } from '../compiler/kernel.js';
import { type SymbolTable, buildDynamicKernel, hasSymbolicDims } from '../compiler/dynamic-kernel.js';
import { Schedule } from '../schedule/schedule.js';
import { type Workload, workloadOf } from './workload.js';
import { type DecisionSpace, SearchSpace } from './space.js';
import type { ArtifactHeader } from '../runtime/artifact-format.js';
import type { EntryResources } from '../codegen/ptx/ptxas.js';

/** A built candidate's artifact header (its sections are the builder's output, not a file's). */
export type BuiltHeader = Omit<ArtifactHeader, 'sections'>;
/**
 * `header.webgpu` / `header.cuda` hold a GPU program (then `wasm` is empty); `resources`: ptxas -v of a CUDA one;
 * `native`: a native candidate's shared library (`header.native` describes it; `wasm` is empty).
 */
export interface BuildOutput {
  header: BuiltHeader;
  wasm: Uint8Array;
  resources?: EntryResources[];
  native?: Uint8Array;
}

/** A primitive function as structured-clonable data. */
export interface KernelSpec {
  params: { name: string; type: TensorType }[];
  /** A kernel for run-time sizes: the model's symbols, in the order of the symbols' buffer, with their ranges. */
  symbols?: { names: string[]; ranges: [number, number][] };
  nodes: (
    | { k: 'param'; i: number }
    | { k: 'const'; value: Tensor }
    | { k: 'call'; op: string; args: number[]; attrs: Attrs; origin: string[] }
  )[];
}

export function kernelSpec(fn: FuncNode, symbols?: SymbolTable): KernelSpec {
  const order = postOrder(fn.body);
  const id = new Map<GExpr, number>();
  const nodes: KernelSpec['nodes'] = [];
  for (const n of order) {
    if (n.kind === 'var') nodes.push({ k: 'param', i: fn.params.indexOf(n) });
    else if (n.kind === 'const') nodes.push({ k: 'const', value: n.value });
    else if (n.kind === 'call' && !isFuncCall(n))
      nodes.push({
        k: 'call',
        op: (n.op as OpSpec).name,
        args: n.args.map((a) => id.get(a)!),
        attrs: n.attrs,
        origin: [...n.origin],
      });
    else
      throw new KilnError('E_INTERNAL', `kernelSpec: unexpected ${n.kind} in a primitive function`, {
        hint: 'please report this with the model',
      });
    id.set(n, nodes.length - 1);
  }
  return {
    params: fn.params.map((p) => ({ name: p.name, type: p.type })),
    nodes,
    ...(symbols && {
      symbols: { names: [...symbols.names], ranges: symbols.names.map((s) => [...symbols.ranges.get(s)!]) },
    }),
  };
}

/** The symbol table of a kernel for run-time sizes' spec (undefined for a static kernel). */
export function specSymbols(spec: KernelSpec): SymbolTable | undefined {
  const s = spec.symbols;
  return s && { names: s.names, ranges: new Map(s.names.map((n, i) => [n, s.ranges[i]])) };
}

export function kernelFromSpec(spec: KernelSpec): FuncNode {
  const params = spec.params.map((p) => gvar(p.name, p.type));
  const built: GExpr[] = [];
  for (const n of spec.nodes) {
    if (n.k === 'param') built.push(params[n.i]);
    else if (n.k === 'const') built.push(gconst(n.value));
    else
      built.push(
        gcall(
          getOp(n.op),
          n.args.map((a) => built[a]),
          n.attrs,
          n.origin,
        ),
      );
  }
  return gfunc(params, built[built.length - 1], 'kernel', true);
}

/**
 * A one-kernel program: every kernel argument becomes a model input, so it is measured on random data. With
 * `symbols` (a kernel for run-time sizes), each symbol that no argument has as a dim of its own gets an unused
 * int32 input of that length, so that a run's input shapes give every symbol's value.
 */
export function kernelMain(fn: FuncNode, symbols?: SymbolTable): FuncNode {
  const params: VarNode[] = fn.params.map((p, i) => gvar(`x${i}`, p.type));
  const given = new Set(fn.params.flatMap((p) => (p.type as TensorType).shape));
  const sizes = (symbols?.names ?? [])
    .filter((s) => !given.has(s))
    .map((s, i) => gvar(`size${i}`, { kind: 'tensor', shape: [s], dtype: 'int32' } satisfies TensorType));
  return gfunc([...params, ...sizes], gcallFunc(fn, params, []), 'main');
}

export interface TuneTask {
  index: number;
  workload: Workload;
  fn: FuncNode;
  spec: KernelSpec;
  /** The kernel built with its default schedule. */
  kernel: BuiltKernel;
  /** How many times one model run calls it. */
  calls: number;
  ops: string[];
  space: DecisionSpace;
}

/**
 * The distinct workloads of a fused model, in first-call order. `spaceFor`: another target's search space (default:
 * the WebAssembly one). `symbols`: the program's symbol table where the model has run-time sizes; a kernel with
 * symbolic dims is then built as compiling builds it (buildDynamicKernel), so its workload is the one compiling
 * looks up. `cpuProgram`: the kernels run in the CPU program (WebAssembly or native; by default when `spaceFor`
 * is not given), which places concats instead of running a kernel for them.
 */
export function extractTasks(
  fused: FuncNode,
  spaceFor?: (kernel: BuiltKernel) => DecisionSpace,
  symbols?: SymbolTable,
  cpuProgram = !spaceFor,
): TuneTask[] {
  const tasks: TuneTask[] = [];
  const byKey = new Map<string, TuneTask>();
  // the CPU program runs no kernel for a concat done by placement: nothing to tune
  const placed = cpuProgram ? placedConcatCalls(fused) : new Set();
  for (const c of kernelCalls(fused)) {
    if (placed.has(c)) continue;
    const dynamic = symbols && hasSymbolicDims(c.op) ? symbols : undefined;
    const kernel = dynamic
      ? buildDynamicKernel(c.op, `k${tasks.length}`, dynamic)
      : buildKernel(c.op, `k${tasks.length}`);
    const workload = workloadOf(kernel);
    const t = byKey.get(workload.key);
    if (t) {
      t.calls++;
      continue;
    }
    const task: TuneTask = {
      index: tasks.length,
      workload,
      fn: c.op,
      spec: kernelSpec(c.op, dynamic),
      kernel,
      calls: 1,
      ops: kernel.ops,
      space: spaceFor ? spaceFor(kernel) : new SearchSpace(() => new Schedule([kernel.output])),
    };
    byKey.set(workload.key, task);
    tasks.push(task);
  }
  return tasks;
}
