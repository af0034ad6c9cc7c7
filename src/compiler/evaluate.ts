// Compile-time evaluation of one operator call on constant inputs, for constant folding. Both ways run the
// operator's own compute: small calls (shape arithmetic) through the tensor-expression interpreter, the others
// through the same schedule, codegen and runtime as a compiled model (unoptimized, for speed).
import { fromParts } from '../runtime/index.js';
import { WasmExecutor } from '../runtime/executor.js';
import type { Tensor } from '../runtime/tensor.js';
import { type CallNode, gcall, gconst, gfunc } from '../relay-ir/expr.js';
import type { OpSpec } from '../relay-ir/op.js';
import { fuseOps } from '../relay-ir/passes/fuse-ops.js';
import { buildProgram } from './program.js';
import { buildControlProgram } from './control-program.js';
import { isControlOp } from '../relay-ir/control.js';
import { interpretCall } from './te-interpreter.js';

export function evaluateCall(call: CallNode & { op: OpSpec }, args: readonly Tensor[]): Tensor {
  if (isControlOp(call.op)) return evaluateOnWasm(call, args);
  return interpretCall(call, args) ?? evaluateOnWasm(call, args);
}

/** The call built as a one-kernel program and run on the WebAssembly runtime. */
export function evaluateOnWasm(call: CallNode & { op: OpSpec }, args: readonly Tensor[]): Tensor {
  const fn = gfunc([], gcall(call.op, args.map(gconst), call.attrs, call.origin), 'fold');
  // a control region (all its arguments constant) runs its bodies' kernels under its control program
  const prog = isControlOp(call.op)
    ? buildControlProgram(fuseOps(fn), { optimize: false })
    : buildProgram(fuseOps(fn), { optimize: false });
  const ex = WasmExecutor.createSync({
    header: { ...prog.header, sections: { wasm: { offset: 0, length: 0 }, weights: { offset: 0, length: 0 } } },
    wasm: prog.wasm,
    weights: prog.weights,
  });
  return fromParts(ex.header, ex).runSync({}).out0;
}
