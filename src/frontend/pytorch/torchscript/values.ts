// The values a TorchScript program computes with while the importer runs it: graph expressions for tensors,
// Python numbers, strings, lists and tuples, the modules of the archive, and the names of namespaces.
import type { GExpr } from '../../../relay-ir/expr.js';
import type { PyObject } from '../pickle.js';
import type { ClassDef } from './parse.js';

/** prim::NumToTensor: a Python number that traced code uses as a 0-d tensor (a size read from a shape). */
export class NumberTensor {
  constructor(readonly value: number) {}
}

export class Tuple {
  constructor(readonly items: Value[]) {}
}

/** A dict (traced models may return one): its entries in order. */
export class Dict {
  constructor(readonly entries: [Value, Value][]) {}
}

/** A module object of the archive with its class's code. */
export class ModuleValue {
  constructor(
    readonly obj: PyObject,
    readonly cls: ClassDef,
    /** Its attribute path from the top module ('layer1.0.conv1'), for messages and tensor names. */
    readonly path: string,
  ) {}
}

/** A dotted name not yet called: torch, ops.aten, __torch__.a.b, CONSTANTS. */
export class Namespace {
  constructor(readonly name: string) {}
}

/** A method of a module (`(conv).forward`), called with the module bound to self. */
export class BoundMethod {
  constructor(
    readonly self: ModuleValue,
    readonly name: string,
  ) {}
}

/** The result of an operator Kiln does not convert: it flows on so every unsupported operator is found. */
export class Unsupported {
  constructor(readonly op: string) {}
}

export interface Device {
  kind: 'device';
  type: string;
}

export type Value =
  | GExpr
  | number
  | boolean
  | string
  | null
  | Value[]
  | Tuple
  | Dict
  | ModuleValue
  | Namespace
  | BoundMethod
  | NumberTensor
  | Unsupported
  | Device;

const TENSOR_KINDS = new Set(['var', 'const', 'call']);

export const isTensor = (v: Value | undefined): v is GExpr =>
  typeof v === 'object' &&
  v !== null &&
  !Array.isArray(v) &&
  TENSOR_KINDS.has((v as { kind?: string }).kind ?? '') &&
  'type' in v;

export const isNumber = (v: Value | undefined): v is number | boolean =>
  typeof v === 'number' || typeof v === 'boolean';

/** A short description of a value's type for messages. */
export function typeName(v: Value | undefined): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'None';
  if (isTensor(v)) return 'Tensor';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'string') return 'str';
  if (Array.isArray(v)) return `List[${v.length ? typeName(v[0]) : ''}]`;
  if (v instanceof Tuple) return `Tuple[${v.items.map(typeName).join(', ')}]`;
  if (v instanceof Dict) return 'Dict';
  if (v instanceof ModuleValue) return v.cls.qualName;
  if (v instanceof NumberTensor) return 'Tensor';
  if (v instanceof Namespace) return v.name;
  if (v instanceof BoundMethod) return 'method';
  if (v instanceof Unsupported) return `the result of ${v.op}`;
  return 'Device';
}
