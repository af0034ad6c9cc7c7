// torch.export .pt2 -> graph IR function. The archive is read (archive.ts), the ExportedProgram's schema version
// checked, every node's ATen operator looked up before any is converted (all unsupported ones are reported at
// once), the graph signature binds parameters, buffers and lifted constants to the archive's weights, and each
// node goes through the converter registered for its ATen op. Graph nodes carry '<node> (aten.op.overload)' as
// their origin, so `kiln inspect --level graph` shows where each came from.
import { KilnError, withNodeContext } from '../../runtime/errors.js';
import type { DType } from '../../runtime/dtype.js';
import { type FuncNode, type GExpr, type VarNode, gcall, gconst, gfunc, gtuple, gvar } from '../../relay-ir/expr.js';
import { type AttrValue, getOp } from '../../relay-ir/op.js';
import { type Dim, type TensorType, asTensor, tensorType } from '../../relay-ir/types.js';
import { type DimRanges, dimEquals, dimSymbols, withDimRanges } from '../../relay-ir/sym-dim.js';
import { type Pt2Archive, readPt2Archive } from './archive.js';
import { type SymExpr, parseSymExpr, printSymExpr, symExprToDim } from './sym-expr.js';
import { type DimOptions, bindSymbols, checkCountedClaimed, fixDimsHint, inputSymbols } from '../dims.js';
import {
  type ArgumentJson,
  type ExportedProgramJson,
  type NamedArgumentJson,
  type NodeJson,
  type SymIntJson,
  type TensorMetaJson,
  checkSchemaVersion,
  scalarDType,
  unionKey,
} from './schema.js';
import { type AtenCtx, lookupAten, parseTarget, scalarLike, shortTarget } from './converter.js';
import '../../tensor-expr/ops/index.js';
import './ops/index.js';

export interface Pt2ImportOptions {
  /** Concrete shapes for inputs with symbolic dims (torch.export's dynamic shapes), by input name. */
  inputShapes?: Record<string, number[]>;
  /**
   * Values of the program's size symbols (`s0`, `s1`...) by name (src/frontend/dims.ts); a range `[lo, hi]` narrows
   * the range torch.export recorded. Symbols left out stay symbolic dims of the graph, in their recorded ranges.
   */
  dims?: DimOptions;
  /** Not used by .pt2 programs (their shape arguments are constants already): any name given is an error. */
  specialize?: Record<string, unknown>;
}

export interface ImportedPt2 {
  func: FuncNode;
  /** The aten opset version the program was exported with. */
  opset: number;
  outputNames: string[];
  specialized: string[];
  producer: string;
  /** The ranges of the symbols that stay symbolic (torch.export's range_constraints, narrowed by `dims`). */
  dimRanges: DimRanges;
}

const NON_FINITE: ReadonlySet<string> = new Set(['Infinity', '-Infinity', 'NaN']);
const GETITEM = new Set(['_operator.getitem', 'operator.getitem', 'getitem']);

export function importPt2(bytes: Uint8Array, opts: Pt2ImportOptions = {}): ImportedPt2 {
  const baked = Object.keys(opts.specialize ?? {});
  if (baked.length) {
    throw new KilnError(
      'E_INPUT',
      `specialize names ${baked.map((n) => `'${n}'`).join(', ')}, but a .pt2 program needs no input values at compile time`,
      {
        hint: 'leave out specialize (--specialize) for .pt2 models',
      },
    );
  }
  const archive = readPt2Archive(bytes);
  const program = archive.program;
  checkSchemaVersion(program);
  const sizes = programSizes(program, opts);
  return withDimRanges(sizes.ranges, () => convertProgram(archive, opts, sizes));
}

function convertProgram(archive: Pt2Archive, opts: Pt2ImportOptions, sizes: ProgramSizes): ImportedPt2 {
  const program = archive.program;
  const graph = program.graph_module.graph;
  // nodes that compute sizes (sym_size, operator.mul on SymInts...): their values are the program's recorded
  // size expressions, read as dims (numbers where the symbols are fixed, symbolic dims otherwise)
  const nodes = graph.nodes.filter((n) => !(n.outputs.length && n.outputs.every((o) => o.as_sym_int)));
  checkOperators(nodes);

  const values = new Map<string, GExpr | (() => GExpr)>();
  const params: VarNode[] = [];
  bindInputs(archive, opts, sizes, values, params);

  const value = (name: string): GExpr => {
    const v = values.get(name);
    if (v === undefined) {
      throw new KilnError('E_MODEL_INVALID', `value '${name}' is used before any node defines it`, {
        hint: 'the exported program is malformed or was altered; export it again',
      });
    }
    if (typeof v === 'function') {
      const e = v();
      values.set(name, e);
      return e;
    }
    return v;
  };

  for (const node of nodes) {
    const name = node.name ?? outputNames(node.outputs)[0] ?? node.target;
    const outs = withNodeContext({ node: name, op: shortTarget(node.target) }, () =>
      convertNode(node, name, value, sizes),
    );
    const names = outputNames(node.outputs);
    names.forEach((n, i) => {
      if (!n) return;
      const e = outs[i];
      if (e) {
        checkMeta(node, n, e, graph.tensor_values[n], sizes);
        values.set(n, e);
      } else {
        values.set(n, () => {
          throw new KilnError('E_UNSUPPORTED', `output ${i} ('${n}') of ${shortTarget(node.target)} is not supported`, {
            node: name,
            op: shortTarget(node.target),
            hint: 'only the first output of this operator is computed',
          });
        });
      }
    });
  }

  const outputs: GExpr[] = [];
  const problems: string[] = [];
  for (const spec of program.graph_module.signature.output_specs) {
    const kind = unionKey(spec);
    if (kind === 'user_output') {
      const arg = spec.user_output!.arg;
      if (!arg.as_tensor)
        problems.push(`a ${unionKey(arg).replace(/^as_/, '')} output (only tensor outputs are supported)`);
      else outputs.push(value(arg.as_tensor.name));
    } else if (kind === 'buffer_mutation') {
      problems.push(
        `a write to buffer '${spec.buffer_mutation!.buffer_name}' (training-mode state such as batch-norm running stats)`,
      );
    } else {
      problems.push(`a ${kind.replace(/_/g, ' ')} output`);
    }
  }
  if (problems.length) {
    throw new KilnError('E_UNSUPPORTED', `the exported program has ${problems.join(', ')}`, {
      hint: 'export the model in eval mode (model.eval()) for inference, returning tensors only',
    });
  }
  if (outputs.length === 0) {
    throw new KilnError('E_MODEL_INVALID', 'the exported program has no outputs', {
      hint: 'export a model that returns tensors',
    });
  }
  const body = outputs.length === 1 ? outputs[0] : gtuple(outputs);
  return {
    func: gfunc(params, body, 'main'),
    opset: program.opset_version?.aten ?? 0,
    outputNames: outputs.length === 1 ? ['output'] : outputs.map((_, i) => `output_${i}`),
    specialized: [],
    producer: `torch ${program.torch_version ?? ''}`.trim(),
    dimRanges: sizes.ranges,
  };
}

/** Every node's operator must have a converter: the ones that do not are listed together, with counts. */
function checkOperators(nodes: readonly NodeJson[]): void {
  const missing = new Map<string, number>();
  for (const n of nodes) {
    if (GETITEM.has(n.target) || lookupAten(n.target)) continue;
    const t = shortTarget(n.target);
    missing.set(t, (missing.get(t) ?? 0) + 1);
  }
  if (!missing.size) return;
  const list = [...missing].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  const count = (k: number) => `${k} node${k > 1 ? 's' : ''}`;
  // higher-order ops (torch.cond, torch.while_loop, ...) carry their branches and bodies as subgraphs
  const controlFlow = list.filter(([t]) => t.startsWith('higher_order.'));
  const others = list.filter(([t]) => !t.startsWith('higher_order.'));
  if (controlFlow.length) {
    const named = controlFlow.map(([t, k]) => `torch.${t.slice('higher_order.'.length)} (${t}, ${count(k)})`);
    const rest = others.length ? `; and ${others.map(([t, k]) => `${t} (${count(k)})`).join(', ')}` : '';
    throw new KilnError('E_UNSUPPORTED_OP', `control flow is not supported yet: ${named.join(', ')}${rest}`, {
      hint: 'its branches and loop bodies are subgraphs, which need control flow in the graph IR (in progress); until then export the branch the model takes (call it directly) or a loop unrolled in Python; see README "Operator coverage"',
    });
  }
  throw new KilnError(
    'E_UNSUPPORTED_OP',
    `${list.length} operator${list.length > 1 ? 's are' : ' is'} not supported: ${list.map(([t, k]) => `${t} (${count(k)})`).join(', ')}`,
    {
      hint: 'try ep.run_decompositions() before torch.export.save (Core ATen ops), or open an issue; see README "Operator coverage"',
    },
  );
}

function inputType(name: string, meta: TensorMetaJson | undefined, sizes: ProgramSizes, given?: number[]): TensorType {
  if (!meta) {
    throw new KilnError('E_MODEL_INVALID', `input '${name}' has no tensor metadata`, {
      hint: 'the exported program is malformed; export it again',
    });
  }
  const dtype = scalarDType(meta.dtype, `input '${name}'`);
  if (given) {
    if (given.length !== meta.sizes.length || given.some((d) => !Number.isInteger(d) || d < 0)) {
      throw new KilnError('E_INPUT', `inputShapes['${name}'] is [${given}], the input has rank ${meta.sizes.length}`, {
        hint: `give ${meta.sizes.length} non-negative integer dims`,
      });
    }
    meta.sizes.forEach((s, i) => {
      const fixed = sizes.value(s);
      if (fixed !== undefined && fixed !== given[i]) {
        throw new KilnError(
          'E_INPUT',
          `inputShapes['${name}'] gives dim ${i} as ${given[i]}, the program ${'as_int' in s ? 'fixes it at' : 'makes it'} ${fixed}`,
          {
            hint:
              'as_int' in s
                ? 'torch.export specialized this dim; export with dynamic_shapes to vary it'
                : 'the inputs must agree on the dims they share',
          },
        );
      }
    });
    return tensorType(given, dtype);
  }
  return tensorType(
    meta.sizes.map((s) => sizes.dim(s)),
    dtype,
  );
}

/** The program's sizes under the symbols' values (from `dims` and `inputShapes`). */
interface ProgramSizes {
  /** A SymInt as a graph dim: a number, or a symbolic dim over the symbols that have no value. */
  dim(s: SymIntJson | { as_name: string }): Dim;
  /** A SymInt's value; undefined while a symbol it reads has none. */
  value(s: SymIntJson | { as_name: string }): number | undefined;
  /** A SymInt as text for messages. */
  print(s: SymIntJson): string;
  /** " in lo..hi" as torch.export records it for a symbol, or "". */
  range(symbol: string): string;
  /** The symbols of the inputs' dims that have no value. */
  readonly missing: readonly string[];
  /** The range of each symbol without a value. */
  readonly ranges: DimRanges;
}

function programSizes(program: ExportedProgramJson, opts: Pt2ImportOptions): ProgramSizes {
  const metas = program.graph_module.graph.tensor_values;
  const named = program.graph_module.graph.sym_int_values ?? {};
  const parsed = new Map<string, SymExpr>();
  const expr = (s: SymIntJson): SymExpr | undefined => {
    if ('as_int' in s) return { k: 'int', value: s.as_int };
    const text = s.as_expr?.expr_str;
    if (typeof text !== 'string') return undefined;
    if (!parsed.has(text)) parsed.set(text, parseSymExpr(text));
    return parsed.get(text);
  };
  const userNames = userInputNames(program);
  const unknown = Object.keys(opts.inputShapes ?? {}).filter((n) => !userNames.includes(n));
  if (unknown.length) {
    throw new KilnError(
      'E_INPUT',
      `inputShapes names ${unknown.map((n) => `'${n}'`).join(', ')}, the model's inputs are ${userNames.map((n) => `'${n}'`).join(', ')}`,
      {
        hint: 'check the spelling (names are case-sensitive); on the command line this is --input-shape name=...',
      },
    );
  }
  // an input dim is a symbol torch.export named (s0, s17...) or a fixed size; a dim that is an expression of
  // symbols is evaluated from them
  const declared = userNames.map((name) => ({
    name,
    dims: (metas[name]?.sizes ?? []).map((s) => {
      const e = expr(s);
      return e?.k === 'int' ? e.value : e?.k === 'sym' ? e.name : undefined;
    }),
  }));
  const { values, ranges: narrowed } = bindSymbols(declared, opts.dims, opts.inputShapes);
  checkCountedClaimed(narrowed); // (no ATen converter counts a declared size)
  const ranges = program.range_constraints ?? {};
  const recorded = (symbol: string): [number, number] => {
    const r = ranges[symbol];
    const hi = r?.max_val;
    return [r?.min_val ?? 0, typeof hi === 'number' && Number.isFinite(hi) ? hi : Number.POSITIVE_INFINITY];
  };
  const rangeText = (symbol: string) => {
    const [lo, hi] = recorded(symbol);
    return `${lo}..${hi === Number.POSITIVE_INFINITY ? 'inf' : hi}`;
  };
  const outside = (symbol: string, what: string) =>
    new KilnError('E_INPUT', `${what} is outside the range ${rangeText(symbol)} the model was exported for`, {
      hint: 'the program is only valid in that range (torch.export.Dim min/max); give a size inside it',
    });
  for (const [symbol, v] of values) {
    const [lo, hi] = recorded(symbol);
    if (ranges[symbol] && (v < lo || v > hi)) throw outside(symbol, `dim ${symbol} = ${v}`);
  }
  // the symbols left symbolic keep torch.export's range, narrowed by a range in `dims`
  const symbolRanges = new Map<string, readonly [number, number]>();
  for (const symbol of new Set([...Object.keys(ranges), ...inputSymbols(declared).keys()])) {
    if (values.has(symbol)) continue;
    const [lo, hi] = recorded(symbol);
    const given = narrowed.get(symbol);
    if (given && (given[0] < lo || given[1] > hi))
      throw outside(symbol, `dims['${symbol}'] = ${given[0]}..${given[1]}`);
    symbolRanges.set(symbol, given ?? [lo, hi]);
  }
  const dims = new Map<string, Dim>();
  const sizes: ProgramSizes = {
    dim(s) {
      if ('as_name' in s) {
        const entry = named[s.as_name] as SymIntJson | undefined;
        if (!entry)
          throw new KilnError('E_MODEL_INVALID', `the size ${s.as_name} has no recorded value`, {
            hint: 'the exported program is malformed or was altered; export it again',
          });
        return sizes.dim(entry);
      }
      if ('as_int' in s) return s.as_int;
      const e = expr(s);
      if (!e)
        throw new KilnError('E_MODEL_INVALID', `cannot read the size ${JSON.stringify(s)}`, {
          hint: 'the exported program is malformed or was altered; export it again',
        });
      const text = s.as_expr!.expr_str;
      let d = dims.get(text);
      if (d === undefined) {
        d = withDimRanges(symbolRanges, () => symExprToDim(e, values));
        dims.set(text, d);
      }
      return d;
    },
    value(s) {
      try {
        const d = sizes.dim(s);
        return typeof d === 'number' ? d : undefined;
      } catch {
        return undefined;
      }
    },
    print: (s) => {
      const e = expr(s);
      return e ? printSymExpr(e) : JSON.stringify(s);
    },
    range: (symbol) => (ranges[symbol] ? ` in ${rangeText(symbol)}` : ''),
    missing: [...inputSymbols(declared).keys()].filter((u) => !values.has(u)),
    ranges: symbolRanges,
  };
  return sizes;
}

const userInputNames = (program: ExportedProgramJson): string[] =>
  program.graph_module.signature.input_specs
    .filter((s) => s.user_input?.arg.as_tensor)
    .map((s) => s.user_input!.arg.as_tensor!.name);

function bindInputs(
  archive: Pt2Archive,
  opts: Pt2ImportOptions,
  sizes: ProgramSizes,
  values: Map<string, GExpr | (() => GExpr)>,
  params: VarNode[],
): void {
  const { program } = archive;
  const specs = program.graph_module.signature.input_specs;
  const metas = program.graph_module.graph.tensor_values;
  const weight = (store: Pt2Archive['weights'], key: string) => () => gconst(store.get(key));
  for (const spec of specs) {
    const kind = unionKey(spec);
    if (spec.parameter) values.set(spec.parameter.arg.name, weight(archive.weights, spec.parameter.parameter_name));
    else if (spec.buffer) {
      const b = spec.buffer.buffer_name;
      // non-persistent buffers are saved with the constants
      values.set(
        spec.buffer.arg.name,
        weight(archive.weights.has(b) || !archive.constants.has(b) ? archive.weights : archive.constants, b),
      );
    } else if (spec.tensor_constant) {
      values.set(spec.tensor_constant.arg.name, weight(archive.constants, spec.tensor_constant.tensor_constant_name));
    } else if (spec.user_input) {
      const arg = spec.user_input.arg;
      if (!arg.as_tensor) {
        throw new KilnError(
          'E_UNSUPPORTED',
          `a ${unionKey(arg).replace(/^as_/, '')} input: only tensor inputs are supported`,
          {
            hint: 'export the model with tensor arguments only',
          },
        );
      }
      const name = arg.as_tensor.name;
      const v = gvar(name, inputType(name, metas[name], sizes, opts.inputShapes?.[name]));
      params.push(v);
      values.set(name, v);
    } else {
      throw new KilnError('E_UNSUPPORTED', `the exported program has a ${kind.replace(/_/g, ' ')} input`, {
        hint: 'only tensor inputs, parameters, buffers and tensor constants are supported',
      });
    }
  }
}

function outputNames(outs: readonly ArgumentJson[]): (string | undefined)[] {
  if (outs.length === 1 && outs[0].as_tensors) return outs[0].as_tensors.map((t) => t.name);
  return outs.map((o) => o.as_tensor?.name);
}

/** The converter's result must agree with the shape and dtype torch.export recorded (a converter bug otherwise). */
function checkMeta(
  node: NodeJson,
  name: string,
  e: GExpr,
  meta: TensorMetaJson | undefined,
  sizes: ProgramSizes,
): void {
  if (!meta || e.type.kind !== 'tensor') return;
  let want: Dim[];
  try {
    want = meta.sizes.map((s) => sizes.dim(s));
  } catch {
    return; // a size Kiln cannot express symbolically: the converter's own type rule stands
  }
  const got = e.type.shape;
  let dtype: DType | undefined;
  try {
    dtype = scalarDType(meta.dtype, name);
  } catch {
    return;
  }
  if (got.length !== want.length || got.some((d, i) => !dimEquals(d, want[i])) || dtype !== e.type.dtype) {
    throw new KilnError(
      'E_INTERNAL',
      `converting ${shortTarget(node.target)} gave ${e.type.dtype}[${got}] for '${name}', the program records ${dtype}[${want}]`,
      { hint: 'please report this with the model' },
    );
  }
}

function convertNode(
  node: NodeJson,
  name: string,
  value: (n: string) => GExpr,
  sizes: ProgramSizes,
): (GExpr | undefined)[] {
  if (GETITEM.has(node.target)) {
    const [src, idx] = node.inputs;
    const list = src?.arg.as_tensors;
    const i = idx?.arg.as_int;
    if (!list || i === undefined || !list[i]) {
      throw new KilnError('E_UNSUPPORTED', 'getitem of something other than a list of tensors', {
        hint: 'see README "Operator coverage"',
      });
    }
    return [value(list[i].name)];
  }
  const fn = lookupAten(node.target)!;
  const { overload } = parseTarget(node.target);
  const args = new Map<string, ArgumentJson>(node.inputs.map((a: NamedArgumentJson) => [a.name, a.arg]));
  const aten = shortTarget(node.target);
  const origin = [`${name} (${aten})`];
  const bad = (arg: string, want: string, a: ArgumentJson): never => {
    throw new KilnError(
      'E_MODEL_INVALID',
      `argument '${arg}' should be ${want}, is ${unionKey(a).replace(/^as_/, '')}`,
      {
        hint: 'the exported program is malformed or was altered; export it again',
      },
    );
  };
  const get = (arg: string): ArgumentJson | undefined => {
    const a = args.get(arg);
    return a && !('as_none' in a) ? a : undefined;
  };
  const required = (arg: string): ArgumentJson => {
    const a = get(arg);
    if (!a) {
      throw new KilnError('E_MODEL_INVALID', `required argument '${arg}' is missing`, {
        hint: 'the exported program is malformed or was altered; export it again',
      });
    }
    return a;
  };
  const symDim = (v: { as_int: number } | { as_name: string }): Dim => ('as_int' in v ? v.as_int : sizes.dim(v));
  const symInt = (v: { as_int: number } | { as_name: string }, arg: string): number => {
    const d = symDim(v);
    if (typeof d === 'number') return d;
    throw new KilnError(
      'E_DYNAMIC',
      `argument '${arg}' of ${aten} is the symbolic size ${d}, which it needs as a number`,
      {
        hint: `fix the symbolic dims it reads: ${fixDimsHint([...new Set(dimSymbols(d))])}`,
      },
    );
  };
  const dimList = (arg: string, a: ArgumentJson): Dim[] => {
    if (a.as_ints) return [...a.as_ints];
    if (a.as_sym_ints) return a.as_sym_ints.map(symDim);
    if (typeof a.as_int === 'number') return [a.as_int];
    if (a.as_sym_int) return [symDim(a.as_sym_int)];
    return bad(arg, 'a list of ints', a);
  };
  const number = (arg: string, a: ArgumentJson): number => {
    if (typeof a.as_int === 'number') return a.as_int;
    if (typeof a.as_float === 'number') return a.as_float;
    // JSON has no inf/nan: torch.export writes them as strings
    if (NON_FINITE.has(a.as_float as unknown as string)) return Number(a.as_float);
    if (typeof a.as_bool === 'boolean') return a.as_bool ? 1 : 0;
    if (a.as_sym_int) return symInt(a.as_sym_int, arg);
    if (a.as_sym_float && 'as_float' in a.as_sym_float) return a.as_sym_float.as_float;
    return bad(arg, 'a number', a);
  };
  const type = (e: GExpr) => asTensor(e.type, aten);
  const ctx: AtenCtx = {
    target: aten,
    overload,
    name,
    has: (arg) => get(arg) !== undefined,
    isTensor: (arg) => get(arg)?.as_tensor !== undefined,
    tensor(arg) {
      const a = required(arg);
      return a.as_tensor ? value(a.as_tensor.name) : bad(arg, 'a tensor', a);
    },
    optTensor(arg) {
      const a = get(arg);
      if (!a) return undefined;
      if (a.as_optional_tensor)
        return 'as_tensor' in a.as_optional_tensor ? value(a.as_optional_tensor.as_tensor.name) : undefined;
      return a.as_tensor ? value(a.as_tensor.name) : bad(arg, 'a tensor', a);
    },
    tensors(arg) {
      const a = required(arg);
      if (a.as_tensors) return a.as_tensors.map((t) => value(t.name));
      return bad(arg, 'a list of tensors', a);
    },
    optTensors(arg) {
      const a = required(arg);
      if (a.as_optional_tensors)
        return a.as_optional_tensors.map((t) => ('as_tensor' in t ? value(t.as_tensor.name) : undefined));
      return a.as_tensors ? a.as_tensors.map((t) => value(t.name)) : bad(arg, 'a list of optional tensors', a);
    },
    tensorOrScalar(arg, like) {
      const a = required(arg);
      if (a.as_tensor) return value(a.as_tensor.name);
      return scalarLike(number(arg, a), type(like).dtype);
    },
    int(arg, dflt) {
      const a = get(arg);
      if (!a) {
        if (dflt === undefined) return number(arg, required(arg));
        return dflt;
      }
      const v = number(arg, a);
      return Number.isInteger(v) ? v : bad(arg, 'an int', a);
    },
    ints(arg, dflt, n) {
      const a = get(arg);
      let v: number[];
      if (!a) {
        if (dflt === undefined) required(arg);
        v = dflt!;
      } else if (a.as_ints) v = a.as_ints;
      else if (a.as_sym_ints) v = a.as_sym_ints.map((s) => symInt(s, arg));
      else if (typeof a.as_int === 'number') v = [a.as_int];
      else v = bad(arg, 'a list of ints', a);
      return n !== undefined && v.length === 1 && n > 1 ? new Array<number>(n).fill(v[0]) : [...v];
    },
    optInts(arg) {
      const a = get(arg);
      if (!a) return undefined;
      return ctx.ints(arg);
    },
    dim(arg, dflt) {
      const a = get(arg);
      if (!a) {
        if (dflt === undefined) required(arg);
        return dflt!;
      }
      return a.as_sym_int ? symDim(a.as_sym_int) : number(arg, a);
    },
    dims(arg, dflt, n) {
      const a = get(arg);
      let v: Dim[];
      if (!a) {
        if (dflt === undefined) required(arg);
        v = [...dflt!];
      } else v = dimList(arg, a);
      return n !== undefined && v.length === 1 && n > 1 ? new Array<Dim>(n).fill(v[0]) : v;
    },
    float(arg, dflt) {
      const a = get(arg);
      if (!a) return dflt !== undefined ? dflt : number(arg, required(arg));
      return number(arg, a);
    },
    optFloat(arg) {
      const a = get(arg);
      return a ? number(arg, a) : undefined;
    },
    optFloats(arg) {
      const a = get(arg);
      if (!a) return undefined;
      if (a.as_floats) return a.as_floats.map(Number);
      return [number(arg, a)];
    },
    bool(arg, dflt) {
      const a = get(arg);
      if (!a) {
        if (dflt === undefined) required(arg);
        return dflt!;
      }
      if (typeof a.as_bool === 'boolean') return a.as_bool;
      return bad(arg, 'a bool', a);
    },
    string(arg, dflt) {
      const a = get(arg);
      if (!a) {
        if (dflt === undefined) required(arg);
        return dflt!;
      }
      if (typeof a.as_string === 'string') return a.as_string;
      return bad(arg, 'a string', a);
    },
    optDType(arg) {
      const a = get(arg);
      if (!a) return undefined;
      if (typeof a.as_scalar_type !== 'number') return bad(arg, 'a dtype', a);
      return scalarDType(a.as_scalar_type, `argument '${arg}'`);
    },
    type,
    call: (op, callArgs, attrs = {}) => gcall(getOp(op), callArgs, attrs as Record<string, AttrValue>, origin),
    constant: (t) => gconst(t),
    unsupported(what) {
      throw new KilnError('E_UNSUPPORTED', `${aten}: ${what} is not supported`, {
        hint: 'see README "Operator coverage"',
      });
    },
  };
  const out = fn(ctx);
  return Array.isArray(out) ? [...out] : [out as GExpr];
}
