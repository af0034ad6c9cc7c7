// A TorchScript call of an ATen operator (`torch.add(x, 1)`, `ops.aten.linear(...)`) through the same converter
// the .pt2 path uses. TorchScript code gives arguments by position and no overload name: the overload is the first
// of the operator's schemas (aten-schemas.ts, in the registry's order) whose arguments accept the values, and the
// schema names the arguments as the converters read them.
import { KilnError } from '../../../runtime/errors.js';
import type { DType } from '../../../runtime/dtype.js';
import { tensor } from '../../../runtime/tensor.js';
import { type GExpr, gcall, gconst } from '../../../relay-ir/expr.js';
import { type AttrValue, getOp } from '../../../relay-ir/op.js';
import { asTensor } from '../../../relay-ir/types.js';
import { ATEN_SCHEMAS } from '../aten-schemas.js';
import { type AtenCtx, type AtenFn, scalarLike } from '../converter.js';
import { type Value, NumberTensor, Tuple, isTensor, typeName } from './values.js';

/** c10::ScalarType codes (TorchScript writes dtypes as these ints) -> Kiln dtypes. */
const C10_DTYPES: Record<number, DType> = {
  0: 'uint8',
  1: 'int8',
  2: 'int16',
  3: 'int32',
  4: 'int64',
  5: 'float16',
  6: 'float32',
  7: 'float64',
  11: 'bool',
  15: 'bfloat16',
};
const C10_NAMES: Record<number, string> = {
  8: 'complex32',
  9: 'complex64',
  10: 'complex128',
};

export function c10DType(code: number, what: string): DType {
  const t = C10_DTYPES[code];
  if (t) return t;
  throw new KilnError(
    'E_UNSUPPORTED',
    `${what} has element type ${C10_NAMES[code] ?? `#${code}`}, which Kiln does not handle`,
    {
      hint: 'convert the model to float32 before saving (model.float())',
    },
  );
}

/** A 0-d tensor for prim::NumToTensor's number: int64 for integers, float32 otherwise. */
export const numberTensor = (n: NumberTensor): GExpr =>
  gconst(tensor(Number.isInteger(n.value) ? 'int64' : 'float32', [], [n.value]));

const isTensorLike = (v: Value): boolean => isTensor(v) || v instanceof NumberTensor;
const isInt = (v: Value): boolean => typeof v === 'number' && Number.isInteger(v);

/** Whether `v` can be passed for an argument of schema type `type`. */
function fits(type: string, v: Value): boolean {
  if (type.startsWith('Optional[')) return v === null || fits(type.slice(9, -1), v);
  const items = Array.isArray(v) ? v : v instanceof Tuple ? v.items : undefined;
  /** Whether v is a list (or tuple) whose items all pass. */
  const all = (pred: (x: Value) => boolean): boolean => (items ? items.every(pred) : false);
  switch (type) {
    case 'Tensor':
      return isTensorLike(v);
    case 'number':
      return typeof v === 'number' || typeof v === 'boolean';
    case 'int':
      return isInt(v) || typeof v === 'boolean';
    case 'float':
      return typeof v === 'number';
    case 'bool':
      return typeof v === 'boolean' || isInt(v);
    case 'str':
      return typeof v === 'string';
    case 'Device':
      return typeof v === 'string' || (typeof v === 'object' && (v as { kind?: string })?.kind === 'device');
    case 'AnyEnumType':
      return typeof v === 'number' || typeof v === 'string';
    case 'List[int]':
      return isInt(v) || all(isInt);
    case 'List[float]':
      return typeof v === 'number' || all((x) => typeof x === 'number');
    case 'List[bool]':
      return all((x) => typeof x === 'boolean');
    case 'List[Tensor]':
      return all(isTensorLike);
    case 'List[Optional[Tensor]]':
      return all((x) => x === null || isTensorLike(x));
    default:
      return false;
  }
}

type SchemaArg = (string | number | boolean | null | number[])[];

/** The arguments bound to the first overload that takes them, by name. */
function bind(
  op: string,
  args: readonly Value[],
  kwargs: ReadonlyMap<string, Value>,
): { overload: string; values: Map<string, Value> } | undefined {
  for (const [overload, params] of ATEN_SCHEMAS[op] ?? []) {
    const values = new Map<string, Value>();
    const positional = (params as SchemaArg[]).filter((p) => p[p.length - 1] !== 'kw' || p.length < 3);
    if (args.length > positional.length) continue;
    let ok = true;
    args.forEach((a, i) => {
      const [name, type] = positional[i] as [string, string];
      if (!fits(type, a)) ok = false;
      values.set(name, a);
    });
    for (const [k, v] of kwargs) {
      const p = (params as SchemaArg[]).find((q) => q[0] === k);
      if (!p || values.has(k) || !fits(p[1] as string, v)) ok = false;
      values.set(k, v);
    }
    // every argument without a default must be given
    for (const p of params as SchemaArg[]) {
      const kwOnly = p.length >= 3 && p[p.length - 1] === 'kw';
      const hasDefault = p.length - (kwOnly ? 1 : 0) >= 3;
      if (!hasDefault && !values.has(p[0] as string)) ok = false;
    }
    if (ok) return { overload, values };
  }
  return undefined;
}

/** Calls the converter `fn` of ATen op `op` on TorchScript values; `origin` names the call site for the graph. */
export function callAten(
  op: string,
  fn: AtenFn,
  args: readonly Value[],
  kwargs: ReadonlyMap<string, Value>,
  origin: string,
): Value {
  const bound = bind(op, args, kwargs);
  if (!bound) {
    const given = [...args.map(typeName), ...[...kwargs].map(([k, v]) => `${k}=${typeName(v)}`)];
    throw new KilnError(
      'E_UNSUPPORTED',
      `no overload of aten::${op} takes (${given.join(', ')})${ATEN_SCHEMAS[op] ? '' : ' (the operator has no schema)'}`,
      {
        hint: 'see README "Operator coverage"; the TorchScript code may call the operator in a way Kiln does not know',
      },
    );
  }
  const { overload, values } = bound;
  const target = `aten.${op}.${overload}`;
  const originList = [`${origin} (${target})`];
  const bad = (arg: string, want: string): never => {
    throw new KilnError(
      'E_MODEL_INVALID',
      `argument '${arg}' of ${target} should be ${want}, is ${typeName(values.get(arg))}`,
      {
        hint: 'the TorchScript code is malformed or was altered; save it again',
      },
    );
  };
  const get = (arg: string): Value | undefined => {
    const v = values.get(arg);
    return v === null ? undefined : v;
  };
  const required = (arg: string): Value => {
    const v = get(arg);
    if (v === undefined) {
      throw new KilnError('E_MODEL_INVALID', `${target}: required argument '${arg}' is missing`, {
        hint: 'the TorchScript code is malformed or was altered; save it again',
      });
    }
    return v;
  };
  const asTensorExpr = (arg: string, v: Value): GExpr => {
    if (v instanceof NumberTensor) return numberTensor(v);
    return isTensor(v) ? v : bad(arg, 'a tensor');
  };
  const list = (arg: string, v: Value): Value[] =>
    Array.isArray(v) ? v : v instanceof Tuple ? v.items : bad(arg, 'a list');
  const number = (arg: string, v: Value): number => {
    if (typeof v === 'number') return v;
    if (typeof v === 'boolean') return v ? 1 : 0;
    if (v instanceof NumberTensor) return v.value;
    return bad(arg, 'a number');
  };
  const type = (e: GExpr) => asTensor(e.type, target);
  const ctx: AtenCtx = {
    target,
    overload,
    name: origin,
    has: (arg) => get(arg) !== undefined,
    isTensor: (arg) => {
      const v = get(arg);
      return v !== undefined && isTensorLike(v);
    },
    tensor: (arg) => asTensorExpr(arg, required(arg)),
    optTensor(arg) {
      const v = get(arg);
      return v === undefined ? undefined : asTensorExpr(arg, v);
    },
    tensors: (arg) => list(arg, required(arg)).map((v) => asTensorExpr(arg, v)),
    optTensors: (arg) => list(arg, required(arg)).map((v) => (v === null ? undefined : asTensorExpr(arg, v))),
    tensorOrScalar(arg, like) {
      const v = required(arg);
      if (isTensorLike(v)) return asTensorExpr(arg, v);
      return scalarLike(number(arg, v), type(like).dtype);
    },
    int(arg, dflt) {
      const v = get(arg);
      if (v === undefined) return dflt !== undefined ? dflt : number(arg, required(arg));
      const n = number(arg, v);
      return Number.isInteger(n) ? n : bad(arg, 'an int');
    },
    ints(arg, dflt, n) {
      const v = get(arg);
      let out: number[];
      if (v === undefined) {
        if (dflt === undefined) required(arg);
        out = [...dflt!];
      } else if (typeof v === 'number') out = [v];
      else out = list(arg, v).map((x) => number(arg, x));
      return n !== undefined && out.length === 1 && n > 1 ? new Array<number>(n).fill(out[0]) : out;
    },
    optInts: (arg) => (get(arg) === undefined ? undefined : ctx.ints(arg)),
    // a TorchScript module is imported at the input shapes it is given: its sizes are numbers
    dim: (arg, dflt) => ctx.float(arg, dflt),
    dims: (arg, dflt, n) => ctx.ints(arg, dflt, n),
    float(arg, dflt) {
      const v = get(arg);
      if (v === undefined) return dflt !== undefined ? dflt : number(arg, required(arg));
      return number(arg, v);
    },
    optFloat(arg) {
      const v = get(arg);
      return v === undefined ? undefined : number(arg, v);
    },
    optFloats(arg) {
      const v = get(arg);
      if (v === undefined) return undefined;
      return typeof v === 'number' ? [v] : list(arg, v).map((x) => number(arg, x));
    },
    bool(arg, dflt) {
      const v = get(arg);
      if (v === undefined) {
        if (dflt === undefined) required(arg);
        return dflt!;
      }
      if (typeof v === 'boolean') return v;
      return typeof v === 'number' ? v !== 0 : bad(arg, 'a bool');
    },
    string(arg, dflt) {
      const v = get(arg);
      if (v === undefined) {
        if (dflt === undefined) required(arg);
        return dflt!;
      }
      return typeof v === 'string' ? v : bad(arg, 'a string');
    },
    optDType(arg) {
      const v = get(arg);
      if (v === undefined) return undefined;
      return typeof v === 'number' ? c10DType(v, `argument '${arg}' of ${target}`) : bad(arg, 'a dtype');
    },
    type,
    call: (kilnOp, callArgs, attrs = {}) =>
      gcall(getOp(kilnOp), callArgs, attrs as Record<string, AttrValue>, originList),
    constant: (t) => gconst(t),
    unsupported(what) {
      throw new KilnError('E_UNSUPPORTED', `${target}: ${what} is not supported`, {
        hint: 'see README "Operator coverage"',
      });
    },
  };
  const out = fn(ctx);
  return Array.isArray(out) ? (out as (GExpr | undefined)[]).map((e) => e ?? null) : (out as GExpr);
}
