// defineOp: the one place an operator is described — its graph-level type rule and fusion pattern (registered
// with the graph IR) and its compute as a tensor expression (used by every backend and by constant folding).
import { type Attrs, type OpSpec, registerOp } from '../relay-ir/op.js';
import type { TensorType } from '../relay-ir/types.js';
import type { Tensor } from './tensor.js';
import { KilnError } from '../runtime/errors.js';

export interface OpDef extends OpSpec {
  /** Builds the output tensor from input tensors; `out` is the (static) inferred output type. */
  readonly compute: (args: readonly Tensor[], attrs: Attrs, out: TensorType & { shape: readonly number[] }) => Tensor;
}

const defs = new Map<string, OpDef>();

export function defineOp(def: OpDef): OpDef {
  registerOp(def);
  defs.set(def.name, def);
  return def;
}

export function getOpDef(name: string): OpDef {
  const d = defs.get(name);
  if (!d)
    throw new KilnError('E_INTERNAL', `no compute for operator ${name}`, { hint: 'please report this with the model' });
  return d;
}
