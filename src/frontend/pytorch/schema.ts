// The parts of torch.export's serialized ExportedProgram (torch/_export/serde/schema.py) that Kiln reads, and
// the schema versions it knows. Unions are JSON objects with one key ({"as_tensor": {...}}, {"as_int": 3}, ...).
import { KilnError } from '../../runtime/errors.js';
import type { DType } from '../../runtime/dtype.js';

/** Schema major versions whose layout Kiln reads (torch 2.6 .. 2.13 write 8.x). */
export const SCHEMA_MAJORS = [8] as const;

export type SymIntJson = { as_int: number } | { as_expr: { expr_str: string; hint?: { as_int?: number } | null } };

export interface TensorMetaJson {
  dtype: number;
  sizes: SymIntJson[];
  strides?: SymIntJson[];
  storage_offset?: SymIntJson;
  requires_grad?: boolean;
  layout?: number;
}

export interface TensorArgJson {
  name: string;
}

/** An argument: exactly one key set. */
export type ArgumentJson = Partial<{
  as_none: boolean | null;
  as_tensor: TensorArgJson;
  as_tensors: TensorArgJson[];
  as_optional_tensors: ({ as_tensor: TensorArgJson } | { as_none: unknown })[];
  as_optional_tensor: { as_tensor: TensorArgJson } | { as_none: unknown };
  as_int: number;
  as_ints: number[];
  as_float: number;
  as_floats: number[];
  as_bool: boolean;
  as_bools: boolean[];
  as_string: string;
  as_strings: string[];
  as_sym_int: { as_int: number } | { as_name: string };
  as_sym_ints: ({ as_int: number } | { as_name: string })[];
  as_sym_float: { as_float: number } | { as_name: string };
  as_scalar_type: number;
  as_memory_format: number;
  as_layout: number;
  as_device: { type: string; index?: number | null };
  as_graph: unknown;
}>;

export interface NamedArgumentJson {
  name: string;
  arg: ArgumentJson;
  /** 1 positional, 2 keyword */
  kind?: number;
}

export interface NodeJson {
  target: string;
  name?: string;
  inputs: NamedArgumentJson[];
  outputs: ArgumentJson[];
  metadata?: Record<string, string>;
}

export interface GraphJson {
  inputs: ArgumentJson[];
  outputs: ArgumentJson[];
  nodes: NodeJson[];
  tensor_values: Record<string, TensorMetaJson>;
  sym_int_values?: Record<string, unknown>;
  is_single_tensor_return?: boolean;
}

export type InputSpecJson = Partial<{
  user_input: { arg: ArgumentJson };
  parameter: { arg: TensorArgJson; parameter_name: string };
  buffer: { arg: TensorArgJson; buffer_name: string; persistent?: boolean };
  tensor_constant: { arg: TensorArgJson; tensor_constant_name: string };
  custom_obj: unknown;
  token: unknown;
  constant_input: { name: string; value: unknown };
}>;

export type OutputSpecJson = Partial<{
  user_output: { arg: ArgumentJson };
  loss_output: unknown;
  buffer_mutation: { arg: TensorArgJson; buffer_name: string };
  gradient_to_parameter: unknown;
  gradient_to_user_input: unknown;
  user_input_mutation: unknown;
  token: unknown;
  parameter_mutation: unknown;
}>;

export interface ExportedProgramJson {
  graph_module: {
    graph: GraphJson;
    signature: { input_specs: InputSpecJson[]; output_specs: OutputSpecJson[] };
  };
  opset_version?: Record<string, number>;
  range_constraints?: Record<string, { min_val?: number | null; max_val?: number | null }>;
  schema_version?: { major: number; minor: number };
  torch_version?: string;
  verifiers?: string[];
}

export interface PayloadMetaJson {
  path_name: string;
  is_param?: boolean;
  use_pickle?: boolean;
  tensor_meta?: TensorMetaJson | null;
}

export interface PayloadConfigJson {
  config: Record<string, PayloadMetaJson>;
}

/** Rejects programs whose schema Kiln does not know before anything else is read from them. */
export function checkSchemaVersion(p: ExportedProgramJson): void {
  const v = p.schema_version;
  if (!v || typeof v.major !== 'number') {
    throw new KilnError('E_MODEL_DECODE', 'the ExportedProgram has no schema_version', {
      hint: 'the archive is truncated or was altered; save it again with torch.export.save',
    });
  }
  if (!(SCHEMA_MAJORS as readonly number[]).includes(v.major)) {
    const by = p.torch_version ? ` (written by torch ${p.torch_version})` : '';
    throw new KilnError(
      'E_UNSUPPORTED',
      `ExportedProgram schema version ${v.major}.${v.minor}${by} is not supported; Kiln reads schema ${SCHEMA_MAJORS.join(', ')}.x`,
      { hint: 'save the model with a torch release that writes schema 8.x (torch 2.6 to 2.13)' },
    );
  }
  if (!p.graph_module?.graph?.nodes || !p.graph_module.signature?.input_specs) {
    throw new KilnError('E_MODEL_DECODE', 'the ExportedProgram has no graph or no signature', {
      hint: 'the archive is truncated or was altered; save it again with torch.export.save',
    });
  }
}

/** torch.export's ScalarType enum -> Kiln dtype. */
const SCALAR_TYPES: Record<number, DType | string> = {
  1: 'uint8',
  2: 'int8',
  3: 'int16',
  4: 'int32',
  5: 'int64',
  6: 'float16',
  7: 'float32',
  8: 'float64',
  9: 'complex32',
  10: 'complex64',
  11: 'complex128',
  12: 'bool',
  13: 'bfloat16',
  28: 'uint16',
  29: 'float8_e4m3fn',
  30: 'float8_e5m2',
  31: 'float8_e4m3fnuz',
  32: 'float8_e5m2fnuz',
  33: 'float8_e8m0fnu',
  34: 'uint32',
  35: 'uint64',
};
const KILN_DTYPES = new Set([
  'uint8',
  'int8',
  'int16',
  'int32',
  'int64',
  'float32',
  'float64',
  'float16',
  'bfloat16',
  'bool',
  'uint16',
  'uint32',
  'uint64',
]);

export function scalarDType(code: number, what: string): DType {
  const t = SCALAR_TYPES[code];
  if (t && KILN_DTYPES.has(t)) return t as DType;
  throw new KilnError('E_UNSUPPORTED', `${what} has element type ${t ?? `#${code}`}, which Kiln does not handle`, {
    hint: 'convert the model to float32 before exporting (model.float())',
  });
}

/** A SymInt's value when it is a plain integer, else `symbolic()` (which throws or supplies a value). */
export function symIntValue(v: SymIntJson, symbolic: (expr: string) => number): number {
  if (v && 'as_int' in v && typeof v.as_int === 'number') return v.as_int;
  const e = v && 'as_expr' in v ? v.as_expr?.expr_str : undefined;
  return symbolic(e ?? JSON.stringify(v));
}

/** The one key of a union object. */
export const unionKey = (u: object | null | undefined): string => (u ? (Object.keys(u)[0] ?? 'empty') : 'empty');
