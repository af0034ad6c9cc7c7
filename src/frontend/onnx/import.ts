// ONNX ModelProto -> graph IR function. Decoding uses the generated @bufbuild/protobuf schema; every node goes
// through the converter registered for its op at the model's opset.
import { fromBinary } from '@bufbuild/protobuf';
import { KilnError, withNodeContext } from '../../runtime/errors.js';
import type { Tensor } from '../../runtime/tensor.js';
import {
  type GExpr,
  type VarNode,
  gcall,
  gconst,
  gfunc,
  gtuple,
  gvar,
  postOrder,
  rewrite,
  type FuncNode,
} from '../../relay-ir/expr.js';
import { getOp, type AttrValue } from '../../relay-ir/op.js';
import { type Dim, type TensorType, tensorType, asTensor, symbolsOf } from '../../relay-ir/types.js';
import {
  type GraphProto,
  type ModelProto,
  ModelProtoSchema,
  type NodeProto,
  type ValueInfoProto,
} from './proto/onnx_pb.js';
import { type OnnxAttr, decodeAttribute } from './attributes.js';
import { type ExternalDataReader, onnxDType, tensorFromProto } from './tensor-proto.js';
import { type ConvertCtx, findConverter } from './converter.js';
import {
  checkDeclaredDims,
  checkInputOptions,
  checkStructure,
  checkSupport,
  declaredInput,
  runtimeInputs,
} from './validate.js';
import { type DimOptions, bindSymbols, checkCountedClaimed, fixDimsHint } from '../dims.js';
import type { SymbolicValue } from '../../relay-ir/passes/fold-constant.js';
import { type DimRanges, withDimRanges } from '../../relay-ir/sym-dim.js';
import '../../tensor-expr/ops/index.js';
import './ops/index.js';

/** Newest default-domain opset whose operator semantics Kiln knows. */
export const MAX_OPSET = 28;

export interface ImportOptions {
  readExternal?: ExternalDataReader;
  /** Concrete shapes for inputs whose model shapes are symbolic or missing. */
  inputShapes?: Record<string, number[]>;
  /** Values of symbolic input dims by name (src/frontend/dims.ts). */
  dims?: DimOptions;
  /**
   * Values Kiln may bake in for inputs that an operator needs at compile time (a Reshape target shape fed
   * as a graph input, say). Only inputs that are needed that way are baked in; they stop being run-time inputs.
   */
  specialize?: Record<string, Tensor>;
  /**
   * Folds an expression to a constant when its inputs allow (the compiler's constant folder). It is asked about
   * overlapping expressions node after node, so it should remember what it has folded.
   */
  fold: (e: GExpr) => GExpr;
  /** A small integer expression's elements as dims, symbolic where they depend on symbolic dims (the folder's). */
  symbolic?: (e: GExpr) => SymbolicValue | undefined;
}

export interface ImportedModel {
  func: FuncNode;
  opset: number;
  outputNames: string[];
  /** Inputs whose values were baked in through `specialize`. */
  specialized: string[];
  producer: string;
  /** The ranges the options gave the symbols that stay symbolic. */
  dimRanges: DimRanges;
}

export function decodeModel(bytes: Uint8Array): ModelProto {
  let model: ModelProto;
  try {
    model = fromBinary(ModelProtoSchema, bytes);
  } catch (e) {
    throw new KilnError('E_MODEL_DECODE', `not a valid ONNX model: ${(e as Error).message}`, {
      hint: 'the file is truncated or corrupt, or not an .onnx file; re-export it',
    });
  }
  if (!model.graph || model.graph.node.length + model.graph.output.length === 0) {
    throw new KilnError('E_MODEL_DECODE', 'not a valid ONNX model: no graph', {
      hint: 'the file is truncated or corrupt, or not an .onnx file; re-export it',
    });
  }
  return model;
}

function valueType(
  vi: ValueInfoProto,
  shapes: Record<string, number[]> | undefined,
  symbolValues: ReadonlyMap<string, number>,
): TensorType {
  const t = vi.type?.value;
  if (vi.type?.value.case !== 'tensorType' || !t) {
    throw new KilnError(
      'E_UNSUPPORTED',
      `input '${vi.name}' is a ${vi.type?.value.case ?? 'untyped value'}, only tensors are supported`,
    );
  }
  const tt = t.value as { elemType: number; shape?: unknown };
  const dtype = onnxDType(tt.elemType, `input '${vi.name}'`);
  const given = shapes?.[vi.name];
  if (given) return tensorType(given, dtype);
  if (!tt.shape)
    throw new KilnError('E_DYNAMIC', `input '${vi.name}' has no shape in the model`, {
      hint: `give it with inputShapes (kiln compile --input-shape ${vi.name}=...)`,
    });
  const shape: Dim[] = declaredInput(vi).dims.map((d) => (typeof d === 'string' ? (symbolValues.get(d) ?? d) : d!));
  return tensorType(shape, dtype);
}

export function importOnnx(bytes: Uint8Array, opts: ImportOptions): ImportedModel {
  const model = decodeModel(bytes);
  const graph = model.graph!;
  const opsetEntry = model.opsetImport.find((o) => o.domain === '' || o.domain === 'ai.onnx');
  const opset = opsetEntry ? Number(opsetEntry.version) : 1;
  if (opset > MAX_OPSET) {
    throw new KilnError('E_UNSUPPORTED_OPSET', `model opset ${opset} is newer than Kiln knows (up to ${MAX_OPSET})`, {
      opset,
      hint: `convert it with onnx.version_converter.convert_version(model, ${MAX_OPSET})`,
    });
  }
  // the whole graph is checked before any node is converted (src/frontend/onnx/validate.ts)
  checkInputOptions(graph, opts.inputShapes, opts.specialize);
  checkDeclaredDims(graph, opts.inputShapes);
  const { values: symbolValues, ranges } = bindSymbols(
    runtimeInputs(graph).map(declaredInput),
    opts.dims,
    opts.inputShapes,
  );
  return withDimRanges(ranges, () => {
    const imported = convertGraph(model, opset, symbolValues, opts);
    checkCountedClaimed(ranges);
    return { ...imported, dimRanges: ranges };
  });
}

function convertGraph(
  model: ModelProto,
  opset: number,
  symbolValues: ReadonlyMap<string, number>,
  opts: ImportOptions,
): Omit<ImportedModel, 'dimRanges'> {
  const graph = model.graph!;
  const nodes = checkStructure(graph);
  checkSupport(model, opset);
  const values = new Map<string, GExpr>();
  const initNames = new Set(graph.initializer.map((t) => t.name));
  for (const t of graph.initializer) values.set(t.name, gconst(tensorFromProto(t, opts.readExternal)));
  const params: VarNode[] = [];
  const specialized: string[] = [];
  const pinnable = new Map<VarNode, Tensor>();
  for (const vi of graph.input) {
    if (initNames.has(vi.name)) continue; // IR < 4 lists initializers as inputs too
    const v = gvar(vi.name, valueType(vi, opts.inputShapes, symbolValues));
    params.push(v);
    values.set(vi.name, v);
    const s = opts.specialize?.[vi.name];
    if (s) pinnable.set(v, s);
  }

  // Folding for compile-time values: inputs given in `specialize` count as constants here. They are baked in
  // only where a compile-time value needs them, and only if the value then folds. The substitution is remembered
  // across values (each node is copied once), with the inputs each copy reads.
  const substituted = new Map<GExpr, GExpr>();
  const pinnedIn = new Map<GExpr, readonly string[]>();
  const pinnedOf = (kids: readonly GExpr[]): readonly string[] | undefined => {
    const names = new Set(kids.flatMap((k) => pinnedIn.get(k) ?? []));
    return names.size ? [...names] : undefined;
  };
  const fold = (e: GExpr): GExpr => {
    if (!pinnable.size) return opts.fold(e);
    const sub = rewrite(
      e,
      (_, orig) => {
        const names =
          orig.kind === 'var' && pinnable.has(orig)
            ? [orig.name]
            : pinnedOf(orig.kind === 'call' ? orig.args : orig.kind === 'tuple' ? orig.fields : []);
        if (names) pinnedIn.set(orig, names);
        return orig.kind === 'var' && pinnable.has(orig) ? gconst(pinnable.get(orig)!) : undefined;
      },
      substituted,
    );
    const folded = opts.fold(sub);
    if (folded.kind === 'const')
      for (const n of pinnedIn.get(e) ?? []) if (!specialized.includes(n)) specialized.push(n);
    return folded;
  };

  const symbolic = [...new Set(params.flatMap((p) => symbolsOf(p.type)))];
  for (const node of nodes) {
    const outs = withNodeContext({ node: node.name || node.output[0], op: node.opType, opset }, () => {
      try {
        return convertNode(node, opset, values, fold, opts);
      } catch (e) {
        // a value needed at compile time that is not known: with symbolic inputs, most often a shape computed
        // from them, which fixing the dims makes known
        if (!(e instanceof KilnError && e.code === 'E_DYNAMIC' && symbolic.length)) throw e;
        throw new KilnError('E_DYNAMIC', e.detail, {
          node: e.node,
          op: e.op,
          opset: e.opset,
          hint: `${fixDimsHint(symbolic)}${e.hint ? `; if the value comes from elsewhere: ${e.hint}` : ''}`,
        });
      }
    });
    node.output.forEach((name, i) => {
      if (name && outs[i]) values.set(name, outs[i]);
    });
  }
  const outputs = graph.output.map((o) => {
    const v = values.get(o.name);
    if (!v)
      throw new KilnError('E_MODEL_INVALID', `graph output '${o.name}' is not produced by any node`, {
        hint: 'the model is malformed; check it with onnx.checker.check_model',
      });
    return v;
  });
  const body = outputs.length === 1 ? outputs[0] : gtuple(outputs);
  const usedParams = params.filter((p) => !specialized.includes(p.name) || refersTo(body, p));
  return {
    func: gfunc(usedParams, body, 'main'),
    opset,
    outputNames: graph.output.map((o) => o.name),
    specialized: specialized.filter((n) => !usedParams.some((p) => p.name === n)),
    producer: `${model.producerName} ${model.producerVersion}`.trim(),
  };
}

function refersTo(root: GExpr, v: VarNode): boolean {
  const seen = new Set<GExpr>();
  const stack = [root];
  while (stack.length) {
    const n = stack.pop()!;
    if (n === v) return true;
    if (seen.has(n)) continue;
    seen.add(n);
    if (n.kind === 'call') stack.push(...n.args);
    else if (n.kind === 'tuple') stack.push(...n.fields);
  }
  return false;
}

function convertNode(
  node: NodeProto,
  opset: number,
  values: Map<string, GExpr>,
  fold: (e: GExpr) => GExpr,
  opts: ImportOptions,
): GExpr[] {
  const fn = findConverter(node.domain, node.opType, opset, node.name);
  const attrs = new Map<string, OnnxAttr>(node.attribute.map((a) => [a.name, decodeAttribute(a, opts.readExternal)]));
  const inputs = node.input.map((name) => {
    if (!name) return undefined;
    const v = values.get(name);
    if (!v)
      throw new KilnError('E_MODEL_INVALID', `input '${name}' is not defined before this node`, {
        hint: 'nodes must be in topological order; check the model with onnx.checker.check_model',
      });
    return v;
  });
  const nodeName = node.name || node.output[0] || node.opType;
  const get = <T>(name: string, type: string, dflt: T | undefined): T => {
    const a = attrs.get(name);
    if (!a) {
      if (dflt === undefined) throw new KilnError('E_MODEL_INVALID', `required attribute '${name}' is missing`);
      return dflt;
    }
    if (a.type !== type && !(type === 'float' && a.type === 'int') && !(type === 'floats' && a.type === 'ints')) {
      throw new KilnError('E_MODEL_INVALID', `attribute '${name}' should be ${type}, is ${a.type}`);
    }
    return a.value as T;
  };
  const notKnown = (what: string): never => {
    throw new KilnError('E_DYNAMIC', `${what} must be known at compile time`, {
      hint: 'Kiln compiles ahead of time: feed it from an initializer or a shape computation, or pass the input value with the specialize option (kiln compile --specialize name=file.pb)',
    });
  };
  const knownDims = (e: GExpr): Dim[] | undefined => {
    const f = fold(e);
    if (f.kind === 'const') return Array.from(f.value.data as ArrayLike<number | bigint>, Number);
    const s = opts.symbolic?.(e);
    return s ? [...s.values] : undefined;
  };
  const ctx: ConvertCtx = {
    opType: node.opType,
    name: nodeName,
    opset,
    numInputs: node.input.length,
    numOutputs: node.output.length,
    outputNames: node.output,
    input(i) {
      const v = inputs[i];
      if (!v) throw new KilnError('E_MODEL_INVALID', `required input ${i} is missing`);
      return v;
    },
    optInput: (i) => inputs[i],
    type: (e) => asTensor(e.type, node.opType),
    attr: (name) => attrs.get(name),
    int: (name, d) => get(name, 'int', d),
    float: (name, d) => get(name, 'float', d),
    ints: (name, d) => get(name, 'ints', d),
    floats: (name, d) => get(name, 'floats', d),
    string: (name, d) => get(name, 'string', d),
    call: (op, args, a = {}) => gcall(getOp(op), args, a as Record<string, AttrValue>, [nodeName]),
    constant: (t) => gconst(t),
    dims(e, what) {
      return knownDims(e) ?? notKnown(what);
    },
    knownDims,
    constValue(e, what) {
      const f = fold(e);
      return f.kind === 'const' ? f.value : notKnown(what);
    },
    unsupported(what) {
      throw new KilnError('E_UNSUPPORTED', `${node.opType}: ${what} is not supported`, {
        hint: 'see README "Operator coverage"',
      });
    },
    knownValue(e) {
      const f = fold(e);
      return f.kind === 'const' ? f.value : undefined;
    },
    subgraphFunction(name, inputTypes) {
      const g = graphAttr(name);
      if (!g)
        throw new KilnError('E_MODEL_INVALID', `required graph attribute '${name}' is missing`, {
          hint: 'check the model with onnx.checker.check_model',
        });
      const formals = g.input.map((vi, i) => gvar(vi.name || `${name}_in${i}`, inputTypes[i]));
      const outs = convertBody(g, name, formals);
      // the outer-scope values the body reads (not constants): each becomes a param, passed by the call
      const outer = new Map<GExpr, string>();
      for (const [n, v] of values) if (v.kind !== 'const' && !outer.has(v)) outer.set(v, n);
      const captured = new Set<GExpr>();
      for (const n of postOrder(gtuple(outs), (x) => outer.has(x))) {
        const kids = n.kind === 'call' ? n.args : n.kind === 'tuple' ? n.fields : [];
        for (const k of kids) if (outer.has(k)) captured.add(k);
      }
      const captures = [...captured];
      const memo = new Map<GExpr, GExpr>(captures.map((x) => [x, gvar(outer.get(x)!, x.type as TensorType)]));
      const body = outs.map((o) => rewrite(o, () => undefined, memo));
      const params = [...formals, ...captures.map((x) => memo.get(x) as VarNode)];
      const func = gfunc(
        params,
        body.length === 1 ? body[0] : gtuple(body),
        `${node.output.find(Boolean) ?? nodeName}_${name}`,
      );
      return { func, captures };
    },
    subgraph(name, args) {
      const g = graphAttr(name);
      if (!g) return undefined;
      if (g.input.length !== args.length)
        throw new KilnError('E_MODEL_INVALID', `graph '${name}' takes ${g.input.length} inputs, given ${args.length}`, {
          hint: `the ${node.opType} operator calls it with ${args.length}; check the model with onnx.checker.check_model`,
        });
      return convertBody(g, name, args);
    },
  };
  function graphAttr(name: string): GraphProto | undefined {
    const a = attrs.get(name);
    if (!a) return undefined;
    if (a.type !== 'graph') throw new KilnError('E_MODEL_INVALID', `attribute '${name}' should be graph, is ${a.type}`);
    return a.value;
  }
  /** The outputs of graph `g` (attribute `name`) with its inputs bound to `args`; outer-scope values visible. */
  function convertBody(g: GraphProto, name: string, args: readonly GExpr[]): GExpr[] {
    const inner = new Map(values);
    for (const t of g.initializer) inner.set(t.name, gconst(tensorFromProto(t, opts.readExternal)));
    g.input.forEach((vi, i) => inner.set(vi.name, args[i]));
    for (const n of g.node) {
      const outs = convertNode(n, opset, inner, fold, opts);
      n.output.forEach((o, i) => {
        if (o && outs[i]) inner.set(o, outs[i]);
      });
    }
    return g.output.map((o) => {
      const v = inner.get(o.name);
      if (!v)
        throw new KilnError('E_MODEL_INVALID', `output '${o.name}' of graph '${name}' is not produced by any node`, {
          hint: 'the model is malformed; check it with onnx.checker.check_model',
        });
      return v;
    });
  }
  const out = fn(ctx);
  return Array.isArray(out) ? [...out] : [out as GExpr];
}
