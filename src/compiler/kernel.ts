// One fused (primitive) function -> tensor expressions -> scheduled -> loop IR.
import { KilnError } from '../runtime/errors.js';
import { BYTES, isFloat } from '../runtime/dtype.js';
import { type FuncNode, type GExpr, isFuncCall, postOrder } from '../relay-ir/expr.js';
import type { OpSpec } from '../relay-ir/op.js';
import { staticShape } from '../relay-ir/types.js';
import { constant } from '../tensor-expr/expr.js';
import { getOpDef } from '../tensor-expr/op-def.js';
import { printTensorExprs } from '../tensor-expr/printer.js';
import { type Tensor, compute, placeholder } from '../tensor-expr/tensor.js';
import { type Expr, mapExpr, visitExpr } from '../tensor-expr/expr.js';
import { guardRunSizes, hoistReductionMasks } from '../schedule/run-size-guards.js';
import { Schedule, topoComputes, type TraceStep } from '../schedule/schedule.js';
import { defaultTrace } from '../schedule/cpu-schedule.js';
import { lower, tempTensors } from '../schedule/lower.js';
import {
  type Buffer,
  type PrimFunc,
  type Stmt,
  childStmts,
  ownExprs,
  printPrimFunc,
  visitStmt,
} from '../schedule/loop-ir.js';
import '../tensor-expr/ops/index.js';
import { elementValue } from '../runtime/half.js';

export interface BuiltKernel {
  prim: PrimFunc;
  inputs: Tensor[];
  output: Tensor;
  trace: TraceStep[];
  ops: string[];
  flops: number;
  bytes: number;
  /** Built with a schedule from ProgramOptions.traceFor (a tuned one) rather than the default. */
  tuned?: boolean;
  /**
   * The kernel as the native library runs it (target 'native': ProgramOptions.nativeKernel), scheduled for the CPU
   * target's vector registers or tuned there, and its schedule; the memory plan reserves the larger of its scratch
   * and `prim`'s.
   */
  native?: NativeVariant;
  /**
   * A kernel for run-time sizes (its last input the symbols' values): for its output and the intermediate tensors,
   * per axis the run-time size as an expression of loads from that input (undefined: static, or not known). Every
   * schedule of it skips outer iterations past them (src/schedule/run-size-guards.ts).
   */
  runSizes?: TensorRunSizes;
}

/** A kernel's native variant (BuiltKernel.native): its loop IR as lowered, and the schedule that made it. */
export interface NativeVariant {
  prim: PrimFunc;
  trace: readonly TraceStep[];
}

/** `trace`: the schedule's steps, or a function giving them for the kernel's stages (default: `defaultTrace`). */
export function buildKernel(
  fn: FuncNode,
  name: string,
  trace?: readonly TraceStep[] | ((sch: Schedule) => TraceStep[]),
): BuiltKernel {
  const { inputs, output, ops } = kernelTensors(fn, name);
  return scheduled(name, inputs, output, ops, trace ?? defaultTrace);
}

/** The tensor expressions of a primitive function of static types: a placeholder per parameter, the output. */
export function kernelTensors(fn: FuncNode, name: string): { inputs: Tensor[]; output: Tensor; ops: string[] } {
  const inputs = fn.params.map((p, i) => placeholder(`in${i}`, staticShape(p.type), p.type.dtype));
  const te = new Map<GExpr, Tensor>(fn.params.map((p, i) => [p, inputs[i]]));
  const ops: string[] = [];
  for (const n of postOrder(fn.body)) {
    if (te.has(n)) continue;
    if (n.kind === 'const') {
      // embedded scalar constant
      const v = n.value.data.length ? elementValue(n.value.dtype, n.value.data, 0) : 0; // a zero-size constant has no element
      te.set(
        n,
        compute('const', staticShape(n.type), () => constant(v, n.type.dtype)),
      );
    } else if (n.kind === 'call' && !isFuncCall(n)) {
      const op = n.op as OpSpec;
      ops.push(op.name);
      const args = n.args.map((a) => te.get(a)!);
      te.set(n, getOpDef(op.name).compute(args, n.attrs, { ...n.type, shape: staticShape(n.type) }));
    } else {
      throw new KilnError('E_INTERNAL', `kernel ${name}: unexpected ${n.kind} in a primitive function`);
    }
  }
  let output = te.get(fn.body)!;
  if (output.kind === 'placeholder')
    output = compute('copy', output.shape, (idx) => ({ k: 'load', buf: output, idx, dtype: output.dtype }) as Expr);
  return { inputs, output, ops };
}

/** The kernel under another schedule (a GPU schedule of a kernel built for the CPU, a tuned one). */
export function reschedule(
  k: BuiltKernel,
  trace: readonly TraceStep[] | ((sch: Schedule) => TraceStep[]),
): BuiltKernel {
  return scheduled(k.prim.name, k.inputs, k.output, k.ops, trace, k.runSizes);
}

/** Run-time sizes per tensor of a kernel, per axis (see BuiltKernel.runSizes). */
export type TensorRunSizes = ReadonlyMap<Tensor, readonly (Expr | undefined)[]>;

export function scheduled(
  name: string,
  inputs: Tensor[],
  output: Tensor,
  ops: string[],
  trace: readonly TraceStep[] | ((sch: Schedule) => TraceStep[]),
  runSizes?: TensorRunSizes,
): BuiltKernel {
  const sch = new Schedule([output]);
  if (runSizes) sch.runTimeAxes = new Map([...runSizes].map(([t, sizes]) => [t, sizes.map((e) => e !== undefined)]));
  for (const step of typeof trace === 'function' ? trace(sch) : trace) sch.apply(step);
  let prim = lower(name, inputs, sch);
  if (runSizes) {
    // the sizes read the symbols' placeholder (the last input), which is the last input buffer once lowered
    const symbolsTensor = inputs[inputs.length - 1];
    const symbolsIn = prim.inputs[prim.inputs.length - 1];
    const onBuffers = (sizes: readonly (Expr | undefined)[]) =>
      sizes.map(
        (e) =>
          e && mapExpr(e, (x) => (x.k === 'load' && x.buf === symbolsTensor ? { ...x, buf: symbolsIn } : undefined)),
      );
    const stored: [Buffer, Tensor][] = [
      [prim.outputs[0], output],
      ...tempTensors(sch, inputs).map((t, i): [Buffer, Tensor] => [prim.temps[i], t]),
    ];
    const guarded = guardRunSizes(
      prim,
      new Map(
        stored.flatMap(([b, t]) => {
          const sizes = runSizes.get(t);
          return sizes ? [[b, { bound: t.shape, sizes: onBuffers(sizes) }]] : [];
        }),
      ),
    );
    prim = hoistReductionMasks(guarded);
  }
  const bytes = [...prim.inputs, ...prim.outputs].reduce((s, b) => s + b.size * BYTES[b.dtype], 0);
  return {
    prim,
    inputs,
    output,
    trace: sch.trace,
    ops,
    flops: countFlops(prim.body),
    bytes,
    ...(runSizes ? { runSizes } : {}),
  };
}

export function printKernelTE(k: BuiltKernel): string {
  return printTensorExprs(k.inputs, topoComputes([k.output]));
}

/**
 * Text of a kernel without its name, with loop variables and local buffers renamed in order of appearance (their
 * generated names carry process-wide counters): equal texts are the same kernel.
 */
export function kernelKey(p: PrimFunc): string {
  const names = new Map<string, string>();
  const note = (n: string) => {
    if (!names.has(n)) names.set(n, `_${names.size}`);
  };
  visitStmt(p.body, (s) => {
    if (s.k === 'for' || s.k === 'decl') note(s.v.name);
    if (s.k === 'alloc') note(s.buf.name);
    for (const e of ownExprs(s))
      visitExpr(e, (x) => {
        if (x.k === 'var') note(x.name);
      });
  });
  return printPrimFunc({ ...p, name: '' }).replace(/\b[A-Za-z_][A-Za-z0-9_]*\b/g, (w) => names.get(w) ?? w);
}

/** Float arithmetic operations executed, counting loop trip counts. */
function countFlops(s: Stmt, mult = 1): number {
  const inExpr = (e: Expr): number => {
    switch (e.k) {
      case 'bin':
        return (isFloat(e.dtype) ? 1 : 0) + inExpr(e.a) + inExpr(e.b);
      case 'un':
        return (isFloat(e.dtype) ? 1 : 0) + inExpr(e.a);
      case 'select':
        return inExpr(e.c) + Math.max(inExpr(e.a), inExpr(e.b));
      case 'cast':
        return inExpr(e.a);
      default:
        return 0;
    }
  };
  switch (s.k) {
    case 'for':
      return countFlops(s.body, mult * s.extent);
    case 'store':
    case 'assign':
      return mult * inExpr(s.value);
    // a guard's else branch is the padding's (constant) side: no work
    case 'if':
      return countFlops(s.then, mult);
    default:
      return childStmts(s).reduce((a, c) => a + countFlops(c, mult), 0);
  }
}
