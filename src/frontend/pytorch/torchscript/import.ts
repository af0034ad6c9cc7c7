// TorchScript .pt (torch.jit.trace / torch.jit.script + torch.jit.save) -> graph IR function. The importer runs
// the module's forward over graph expressions: Python numbers, lists and control flow are evaluated while
// importing (shapes are static), submodule methods are inlined, and every ATen operator goes through the converter
// the .pt2 path registered for it (aten-call.ts). Control flow that depends on tensor values is refused. Operators
// without a converter are collected while the program runs on and reported together, with their counts.
import { KilnError, withNodeContext } from '../../../runtime/errors.js';
import type { DType } from '../../../runtime/dtype.js';
import { type GExpr, type VarNode, gcall, gconst, gfunc, gtuple, gvar } from '../../../relay-ir/expr.js';
import { type AttrValue, getOp } from '../../../relay-ir/op.js';
import { QUANTIZED_RANGES, dequantized, fakeQuantize } from '../ops/quantized.js';
import { tensorType } from '../../../relay-ir/types.js';
import type { DimOptions } from '../../dims.js';
import { lookupAten } from '../converter.js';
import { type PickledTensor, PyObject, PyTuple, type PyValue } from '../pickle.js';
import type { ImportedPt2 } from '../import.js';
import { type TorchScriptArchive, readTorchScriptArchive } from './archive.js';
import { callAten, numberTensor } from './aten-call.js';
import type { Expr, FuncDef, Stmt } from './parse.js';
import {
  BoundMethod,
  Dict,
  ModuleValue,
  Namespace,
  NumberTensor,
  Tuple,
  Unsupported,
  type Value,
  isNumber,
  isTensor,
  typeName,
} from './values.js';
import '../../../tensor-expr/ops/index.js';
import '../ops/index.js';

export interface TorchScriptImportOptions {
  /** Shapes of forward's tensor inputs by name (a scripted model records none; a traced one its example's). */
  inputShapes?: Record<string, number[]>;
  /**
   * Element types of forward's tensor inputs by name: a scripted forward's `Tensor` arguments record none (float32
   * unless given); a traced one records its example's, which a given type must match.
   */
  inputDTypes?: Record<string, DType>;
  /** TorchScript programs have no named dims: any name given is an error. */
  dims?: DimOptions;
  /** Not used by TorchScript programs: any name given is an error. */
  specialize?: Record<string, unknown>;
}

/** Loop iterations one `while` may run while importing (the loop is unrolled into the graph). */
const MAX_LOOP_ITERATIONS = 100_000;

const C10_CODES: Partial<Record<DType, number>> = {
  uint8: 0,
  int8: 1,
  int16: 2,
  int32: 3,
  int64: 4,
  float16: 5,
  float32: 6,
  float64: 7,
  bool: 11,
  bfloat16: 15,
};

export function importTorchScript(bytes: Uint8Array, opts: TorchScriptImportOptions = {}): ImportedPt2 {
  for (const [what, given] of [
    ['specialize', opts.specialize],
    ['dims', opts.dims],
  ] as const) {
    const names = Object.keys(given ?? {});
    if (names.length) {
      throw new KilnError(
        'E_INPUT',
        `${what} names ${names.map((n) => `'${n}'`).join(', ')}, but a TorchScript program has no ${what === 'dims' ? 'named dims' : 'inputs to bake in'}`,
        { hint: 'give the inputs’ shapes instead (--input-shape name=...)' },
      );
    }
  }
  const archive = readTorchScriptArchive(bytes);
  const run = new Interpreter(archive);
  const top = run.moduleValue(archive.module, '');
  const forward = top.cls.methods.get('forward');
  if (!forward) {
    throw new KilnError('E_MODEL_INVALID', `module ${top.cls.qualName} has no forward method`, {
      hint: 'save a module with a forward method',
    });
  }
  const { params, args } = forwardInputs(forward, archive, opts, run);
  const result = run.callFunction(forward, args, new Map(), top);
  run.reportUnsupported();
  const outputs = flattenOutputs(result);
  if (outputs.length === 0) {
    throw new KilnError('E_MODEL_INVALID', 'forward returns no tensors', { hint: 'save a model that returns tensors' });
  }
  return {
    func: gfunc(params, outputs.length === 1 ? outputs[0] : gtuple(outputs), 'main'),
    opset: 0,
    outputNames: outputs.length === 1 ? ['output'] : outputs.map((_, i) => `output_${i}`),
    specialized: [],
    producer: 'TorchScript',
    dimRanges: new Map(), // imported at the given input shapes: no symbolic dims
  };
}

/** forward's tensor parameters become the graph's inputs; others take their default values. */
function forwardInputs(
  forward: FuncDef,
  archive: TorchScriptArchive,
  opts: TorchScriptImportOptions,
  run: Interpreter,
): { params: VarNode[]; args: Value[] } {
  const declared = forward.params.slice(1);
  const names = declared.map((p) => p.name);
  for (const [option, flag, given] of [
    ['inputShapes', '--input-shape', opts.inputShapes],
    ['inputDTypes', '--input-dtype', opts.inputDTypes],
  ] as const) {
    const unknown = Object.keys(given ?? {}).filter((n) => !names.includes(n));
    if (unknown.length) {
      throw new KilnError(
        'E_INPUT',
        `${option} names ${unknown.map((n) => `'${n}'`).join(', ')}, the model's inputs are ${names.map((n) => `'${n}'`).join(', ')}`,
        { hint: `check the spelling (names are case-sensitive); on the command line this is ${flag} name=...` },
      );
    }
  }
  const params: VarNode[] = [];
  const args: Value[] = [];
  const traced = archive.tracedInputs;
  declared.forEach((p, i) => {
    const type = p.type ? printTypeExpr(p.type) : 'Tensor';
    if (type === 'Tensor') {
      const given = opts.inputShapes?.[p.name];
      const example = traced?.[i];
      const shape = given ?? example?.shape;
      if (!shape) {
        const missing = declared.filter((q, k) => isTensorParam(q) && !opts.inputShapes?.[q.name] && !traced?.[k]);
        throw new KilnError(
          'E_INPUT',
          `input${missing.length > 1 ? 's' : ''} ${missing.map((q) => `'${q.name}'`).join(', ')} ha${missing.length > 1 ? 've' : 's'} no recorded shape (a scripted TorchScript program does not store its inputs' shapes or element types)`,
          {
            hint: `give each input's shape, and its element type where it is not float32: ${missing.map((q) => `--input-shape ${q.name}=1,3,224,224`).join(' ')} [--input-dtype ${missing[0].name}=int64] (API: inputShapes, inputDTypes)`,
          },
        );
      }
      const dtype = opts.inputDTypes?.[p.name];
      if (example && dtype && dtype !== example.dtype) {
        throw new KilnError(
          'E_INPUT',
          `inputDTypes['${p.name}'] is ${dtype}, the model was traced with ${example.dtype}`,
          { hint: 'a traced program is only valid for inputs of the traced element type; leave inputDTypes out' },
        );
      }
      if (example && given && given.length !== example.shape.length) {
        throw new KilnError(
          'E_INPUT',
          `inputShapes['${p.name}'] has rank ${given.length}, the model was traced with [${example.shape}]`,
          { hint: 'a traced program is only valid for inputs of the traced rank' },
        );
      }
      const v = gvar(p.name, tensorType(shape, example?.dtype ?? dtype ?? 'float32'));
      params.push(v);
      args.push(v);
    } else if (p.dflt) args.push(run.constantExpr(p.dflt));
    else {
      throw new KilnError('E_UNSUPPORTED', `forward's argument '${p.name}' is a ${type}, and has no default value`, {
        hint: 'only tensor inputs are supported; give the other arguments default values',
      });
    }
  });
  return { params, args };
}

const isTensorParam = (p: FuncDef['params'][number]) => (p.type ? printTypeExpr(p.type) : 'Tensor') === 'Tensor';

const printTypeExpr = (e: Expr): string => {
  if (e.k === 'name') return e.id;
  if (e.k === 'attr') return `${printTypeExpr(e.obj)}.${e.name}`;
  if (e.k === 'index') return `${printTypeExpr(e.obj)}[${printTypeExpr(e.index)}]`;
  if (e.k === 'tuple') return e.items.map(printTypeExpr).join(', ');
  if (e.k === 'const') return String(e.value);
  return '?';
};

function flattenOutputs(v: Value): GExpr[] {
  if (isTensor(v)) return [v];
  if (v instanceof NumberTensor) return [numberTensor(v)];
  if (v instanceof Tuple) return v.items.flatMap(flattenOutputs);
  if (Array.isArray(v)) return v.flatMap(flattenOutputs);
  if (v instanceof Dict) return v.entries.flatMap(([, x]) => flattenOutputs(x));
  throw new KilnError(
    'E_UNSUPPORTED',
    `forward returns a ${typeName(v)}: only tensors (and tuples or lists of them) are supported`,
    {
      hint: 'return tensors from forward',
    },
  );
}

const ATEN_CALL = /^(?:torch\.ops\.aten|ops\.aten|torch)\.([A-Za-z_]\w*)$/;
const PRIM_CALL = /^ops\.prim\.(\w+)$/;
/** torch.* names the importer evaluates itself (Python arithmetic, lists, shapes), not ATen tensor operators. */
const NOT_ATEN = new Set([
  ...['size', 'dim', 'numel', 'len', 'append', '__getitem__', 'list', 'device', 'warn', '__is__', '__isnot__'],
  ...['Int', 'Float', 'Bool', 'ScalarImplicit', 'floordiv', '__and__', '__or__', '__not__'],
]);
/** The ops.prim.* the importer evaluates. */
const PRIMS = new Set([
  ...['NumToTensor', 'device', 'dtype', 'is_cuda', 'is_quantized', 'is_mkldnn', 'is_sparse', 'is_meta'],
  ...['unchecked_cast', 'data', 'min', 'max', 'RaiseException'],
]);

class Return {
  constructor(readonly value: Value) {}
}

const dataDependent = (what: string): never => {
  throw new KilnError(
    'E_UNSUPPORTED_OP',
    `${what} depends on tensor values (data-dependent control flow), which Kiln does not compile yet`,
    {
      hint: 'make the condition depend on shapes or constants only, trace the model (torch.jit.trace) for the inputs you use, or export it with torch.export',
    },
  );
};

class Interpreter {
  readonly unsupported = new Map<string, number>();
  private readonly weights = new Map<PickledTensor, GExpr>();
  /** Where the call being converted is (module path, method and line), for the graph nodes' origins. */
  private where = '';

  constructor(private readonly archive: TorchScriptArchive) {}

  moduleValue(obj: PyObject, path: string): ModuleValue {
    const cls = this.archive.lookup(obj.className);
    if (!cls || !('methods' in cls)) {
      throw new KilnError('E_MODEL_INVALID', `the archive has no code for class ${obj.className}`, {
        hint: 'the archive is incomplete or was altered; save it again with torch.jit.save',
      });
    }
    return new ModuleValue(obj, cls, path);
  }

  /** Throws the one error listing every operator that has no converter, when there are any. */
  reportUnsupported(): void {
    if (!this.unsupported.size) return;
    const list = [...this.unsupported].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    throw new KilnError(
      'E_UNSUPPORTED_OP',
      `${list.length} operator${list.length > 1 ? 's are' : ' is'} not supported: ${list.map(([t, k]) => `${t} (${k} call${k > 1 ? 's' : ''})`).join(', ')}`,
      {
        hint: 'export the model with torch.export (Core ATen ops after run_decompositions()), or open an issue; see README "Operator coverage"',
      },
    );
  }

  private missing(op: string): Unsupported {
    this.unsupported.set(op, (this.unsupported.get(op) ?? 0) + 1);
    return new Unsupported(op);
  }

  /** A default value in a signature (literals only). */
  constantExpr(e: Expr): Value {
    return this.eval(e, new Map());
  }

  callFunction(f: FuncDef, args: readonly Value[], kwargs: ReadonlyMap<string, Value>, self?: ModuleValue): Value {
    const env = new Map<string, Value>();
    const params = self ? f.params.slice(1) : f.params;
    if (self) env.set(f.params[0]?.name ?? 'self', self);
    if (args.length > params.length) {
      throw new KilnError(
        'E_MODEL_INVALID',
        `${f.qualName} takes ${params.length} arguments, is called with ${args.length}`,
        {
          hint: 'the TorchScript code is malformed or was altered; save it again',
        },
      );
    }
    params.forEach((p, i) => {
      if (i < args.length) env.set(p.name, args[i]);
      else if (kwargs.has(p.name)) env.set(p.name, kwargs.get(p.name)!);
      else if (p.dflt) env.set(p.name, this.eval(p.dflt, new Map()));
      else {
        throw new KilnError('E_MODEL_INVALID', `${f.qualName} is called without its argument '${p.name}'`, {
          hint: 'the TorchScript code is malformed or was altered; save it again',
        });
      }
    });
    const saved = this.where;
    const path = self?.path ? `${self.path}.` : '';
    try {
      const r = this.exec(f.body, env, `${path}${f.name}`);
      return r ? r.value : null;
    } finally {
      this.where = saved;
    }
  }

  private exec(body: readonly Stmt[], env: Map<string, Value>, fn: string): Return | undefined {
    for (const s of body) {
      this.where = `${fn}:${s.line}`;
      switch (s.k) {
        case 'pass':
          break;
        case 'expr':
          this.eval(s.value, env);
          break;
        case 'assign':
          this.assign(s.targets, this.eval(s.value, env), env);
          break;
        case 'return':
          return new Return(s.value ? this.eval(s.value, env) : null);
        case 'if': {
          const r = this.exec(this.truth(this.eval(s.cond, env), 'an if condition') ? s.then : s.else, env, fn);
          if (r) return r;
          break;
        }
        case 'for': {
          const iter = this.eval(s.iter, env);
          const items = Array.isArray(iter) ? [...iter] : iter instanceof Tuple ? iter.items : undefined;
          if (!items) {
            if (isTensor(iter)) dataDependent(`a for loop over a tensor (line ${s.line})`);
            if (iter instanceof Unsupported) this.reportUnsupported();
            throw new KilnError('E_UNSUPPORTED', `a for loop over a ${typeName(iter)}`, {
              hint: 'loops over ranges, lists and tuples are supported',
            });
          }
          for (const item of items) {
            this.assign(s.target, item, env);
            const r = this.exec(s.body, env, fn);
            if (r) return r;
          }
          break;
        }
        case 'while': {
          let n = 0;
          while (this.truth(this.eval(s.cond, env), 'a while condition')) {
            if (++n > MAX_LOOP_ITERATIONS) {
              throw new KilnError(
                'E_UNSUPPORTED',
                `the while loop at ${fn}:${s.line} runs more than ${MAX_LOOP_ITERATIONS} times`,
                {
                  hint: 'loops are unrolled while importing: use fewer iterations',
                },
              );
            }
            const r = this.exec(s.body, env, fn);
            if (r) return r;
            this.where = `${fn}:${s.line}`;
          }
          break;
        }
      }
    }
    return undefined;
  }

  /** A condition's value; a tensor's (aten::Bool) is known only when the program runs. */
  private truth(v: Value, what: string): boolean {
    if (typeof v === 'boolean') return v;
    if (typeof v === 'number') return v !== 0;
    if (v === null) return false;
    if (v instanceof NumberTensor) return v.value !== 0;
    if (Array.isArray(v)) return v.length > 0;
    if (v instanceof Tuple) return v.items.length > 0;
    if (typeof v === 'string') return v.length > 0;
    if (v instanceof Unsupported) {
      this.reportUnsupported();
    }
    if (isTensor(v)) return dataDependent(`${what} at ${this.where}`);
    return true;
  }

  private assign(target: Expr, v: Value, env: Map<string, Value>): void {
    if (target.k === 'name') env.set(target.id, v);
    else if (target.k === 'tuple' || target.k === 'list') {
      if (v instanceof Unsupported) {
        for (const t of target.items) this.assign(t, v, env);
        return;
      }
      const items = Array.isArray(v) ? v : v instanceof Tuple ? v.items : undefined;
      if (!items || items.length !== target.items.length) {
        throw new KilnError(
          'E_MODEL_INVALID',
          `${this.where}: cannot unpack a ${typeName(v)} into ${target.items.length} names`,
          { hint: 'the TorchScript code is malformed or was altered; save it again' },
        );
      }
      target.items.forEach((t, i) => this.assign(t, items[i], env));
    } else if (target.k === 'index') {
      const obj = this.eval(target.obj, env);
      const i = this.eval(target.index, env);
      if (!Array.isArray(obj) || typeof i !== 'number') {
        throw new KilnError('E_UNSUPPORTED', `${this.where}: assigning to an element of a ${typeName(obj)}`, {
          hint: 'in-place writes into tensors are not supported; see README "Operator coverage"',
        });
      }
      obj[i < 0 ? i + obj.length : i] = v;
    } else {
      throw new KilnError(
        'E_UNSUPPORTED',
        `${this.where}: assigning to a module attribute (module state that forward changes)`,
        {
          hint: 'save a model whose forward does not change its attributes',
        },
      );
    }
  }

  private eval(e: Expr, env: Map<string, Value>): Value {
    switch (e.k) {
      case 'num':
        return e.value;
      case 'str':
        return e.value;
      case 'const':
        return e.value;
      case 'name': {
        const v = env.get(e.id);
        if (v !== undefined) return v;
        if (env.has(e.id)) return null;
        return new Namespace(e.id);
      }
      case 'attr':
        return this.attr(this.eval(e.obj, env), e.name);
      case 'tuple':
        return new Tuple(e.items.map((x) => this.eval(x, env)));
      case 'list':
        return e.items.map((x) => this.eval(x, env));
      case 'dict':
        return new Dict(e.items.map(([k, v]) => [this.eval(k, env), this.eval(v, env)]));
      case 'ifexp':
        return this.truth(this.eval(e.cond, env), 'a conditional expression')
          ? this.eval(e.a, env)
          : this.eval(e.b, env);
      case 'unary':
        return this.unary(e.op, this.eval(e.x, env));
      case 'binary':
        if (e.op === 'and') {
          const a = this.eval(e.a, env);
          return this.truth(a, "an 'and'") ? this.eval(e.b, env) : a;
        }
        if (e.op === 'or') {
          const a = this.eval(e.a, env);
          return this.truth(a, "an 'or'") ? a : this.eval(e.b, env);
        }
        return this.binary(e.op, this.eval(e.a, env), this.eval(e.b, env));
      case 'index':
        return this.index(this.eval(e.obj, env), e.index, env);
      case 'slice':
        throw new KilnError('E_MODEL_INVALID', `${this.where}: a slice outside a subscript`, {
          hint: 'the TorchScript code is malformed; save it again',
        });
      case 'call':
        return this.call(e, env);
    }
  }

  private attr(obj: Value, name: string): Value {
    if (obj instanceof Unsupported) return obj;
    if (obj instanceof Namespace) {
      if (obj.name === 'CONSTANTS') {
        const i = /^c(\d+)$/.exec(name);
        const c = i ? this.archive.constants[Number(i[1])] : undefined;
        if (c === undefined) {
          throw new KilnError('E_MODEL_INVALID', `the code reads CONSTANTS.${name}, which constants.pkl lacks`, {
            hint: 'the archive is incomplete or was altered; save it again with torch.jit.save',
          });
        }
        return this.fromPickle(c, `CONSTANTS.${name}`);
      }
      return new Namespace(`${obj.name}.${name}`);
    }
    if (obj instanceof ModuleValue) {
      if (obj.obj.state.has(name)) {
        return this.fromPickle(obj.obj.state.get(name)!, obj.path ? `${obj.path}.${name}` : name);
      }
      if (obj.cls.methods.has(name)) return new BoundMethod(obj, name);
      // a constant the class declares with its value (`repeat : Final[int] = 2`)
      const declared = obj.cls.attrs.get(name)?.value;
      if (declared) return this.constantExpr(declared);
      throw new KilnError('E_MODEL_INVALID', `module ${obj.path || obj.cls.name} has no attribute '${name}'`, {
        hint: 'the archive is incomplete or was altered; save it again with torch.jit.save',
      });
    }
    throw new KilnError('E_UNSUPPORTED', `${this.where}: attribute '${name}' of a ${typeName(obj)}`, {
      hint: 'see README "Operator coverage"',
    });
  }

  private fromPickle(v: PyValue, name: string): Value {
    if (v instanceof PyObject && v.className.startsWith('__torch__.torch.classes.')) {
      // quantized linear's packed parameters: their state is (weight, bias)
      const state = v.state.get('__state__');
      if (v.className === '__torch__.torch.classes.quantized.LinearPackedParamsBase' && state instanceof PyTuple)
        return this.fromPickle(state, name);
      throw new KilnError('E_UNSUPPORTED', `attribute ${name} is a ${v.className.slice('__torch__.'.length)} object`, {
        hint: 'of the quantized modules Kiln reads Linear (per-tensor); see README "Operator coverage"',
      });
    }
    if (v instanceof PyObject) return this.moduleValue(v, name);
    if (v instanceof PyTuple) return new Tuple(v.items.map((x, i) => this.fromPickle(x, `${name}[${i}]`)));
    if (Array.isArray(v)) return v.map((x, i) => this.fromPickle(x, `${name}[${i}]`));
    if (v instanceof Map) {
      throw new KilnError('E_UNSUPPORTED', `attribute ${name} is a dict, which Kiln does not read`, {
        hint: 'keep tensors, numbers, lists and submodules as module attributes',
      });
    }
    if (v !== null && typeof v === 'object') {
      if (v.kind === 'tensor') {
        let g = this.weights.get(v);
        if (!g) {
          g = gconst(this.archive.tensor(v, name));
          // a quantized tensor is carried as the float values it stands for (ops/quantized.ts)
          if (v.quantized) g = dequantized(this.graphCall(name), g, v.quantized.scale, v.quantized.zeroPoint);
          this.weights.set(v, g);
        }
        return g;
      }
      if (v.kind === 'device') return { kind: 'device', type: v.type };
      throw new KilnError('E_MODEL_INVALID', `attribute ${name} is a bare ${v.kind}`, {
        hint: 'the archive was altered; save it again with torch.jit.save',
      });
    }
    return v;
  }

  private unary(op: string, x: Value): Value {
    if (x instanceof Unsupported) return x;
    const n = x instanceof NumberTensor ? x.value : x;
    if (op === 'not') return !this.truth(x, "a 'not'");
    if (!isNumber(n)) {
      throw new KilnError('E_UNSUPPORTED', `${this.where}: unary '${op}' of a ${typeName(x)}`, {
        hint: 'see README "Operator coverage"',
      });
    }
    const v = Number(n);
    const r = op === '-' ? -v : op === '+' ? v : ~v;
    return x instanceof NumberTensor ? new NumberTensor(r) : r;
  }

  private binary(op: string, a: Value, b: Value): Value {
    if (a instanceof Unsupported) return a;
    if (b instanceof Unsupported) return b;
    if (op === 'is' || op === 'is not') {
      const same = a === b || ((a === null) === (b === null) && (a === null || a === b));
      return op === 'is' ? same : !same;
    }
    if (op === 'in' || op === 'not in') {
      const items = Array.isArray(b) ? b : b instanceof Tuple ? b.items : undefined;
      if (!items) throw new KilnError('E_UNSUPPORTED', `${this.where}: 'in' on a ${typeName(b)}`, { hint: '' });
      const found = items.some((x) => x === a);
      return op === 'in' ? found : !found;
    }
    if ((Array.isArray(a) || a instanceof Tuple) && op === '+') {
      const items = (v: Value) => (Array.isArray(v) ? v : v instanceof Tuple ? v.items : []);
      return Array.isArray(a) ? [...a, ...items(b)] : new Tuple([...a.items, ...items(b)]);
    }
    if (typeof a === 'string' && typeof b === 'string') {
      if (op === '==') return a === b;
      if (op === '!=') return a !== b;
      if (op === '+') return a + b;
    }
    const r = scalarOp(op, [a, b]);
    if (r !== undefined) return r;
    if (isTensor(a) || isTensor(b)) {
      // the printer writes tensor arithmetic as torch.* calls; a Python operator on tensors is a TorchScript form Kiln does not know
      throw new KilnError('E_UNSUPPORTED', `${this.where}: Python operator '${op}' on tensors`, {
        hint: 'see README "Operator coverage"',
      });
    }
    throw new KilnError('E_UNSUPPORTED', `${this.where}: '${op}' of a ${typeName(a)} and a ${typeName(b)}`, {
      hint: 'see README "Operator coverage"',
    });
  }

  private index(obj: Value, indexExpr: Expr, env: Map<string, Value>): Value {
    if (obj instanceof Unsupported) return obj;
    const items = Array.isArray(obj) ? obj : obj instanceof Tuple ? obj.items : undefined;
    if (items && indexExpr.k === 'slice') {
      const bound = (x: Expr | undefined, dflt: number) => {
        if (!x) return dflt;
        const v = this.eval(x, env);
        return typeof v === 'number' ? v : dflt;
      };
      const step = bound(indexExpr.step, 1);
      const n = items.length;
      const clamp = (i: number) => Math.max(0, Math.min(n, i < 0 ? i + n : i));
      if (step !== 1) {
        throw new KilnError('E_UNSUPPORTED', `${this.where}: a list slice with step ${step}`, { hint: '' });
      }
      const out = items.slice(clamp(bound(indexExpr.lo, 0)), clamp(bound(indexExpr.hi, n)));
      return Array.isArray(obj) ? out : new Tuple(out);
    }
    const i = this.eval(indexExpr, env);
    if (obj instanceof Dict) {
      const entry = obj.entries.find(([k]) => k === i);
      if (entry) return entry[1];
    }
    if (items && typeof i === 'number') {
      const k = i < 0 ? i + items.length : i;
      if (k < 0 || k >= items.length) {
        throw new KilnError('E_MODEL_INVALID', `${this.where}: index ${i} is out of range for ${items.length} items`, {
          hint: 'the TorchScript code indexes past the end of a list',
        });
      }
      return items[k];
    }
    throw new KilnError('E_UNSUPPORTED', `${this.where}: indexing a ${typeName(obj)} with a ${typeName(i)}`, {
      hint: 'see README "Operator coverage"',
    });
  }

  private call(e: Extract<Expr, { k: 'call' }>, env: Map<string, Value>): Value {
    // builtins whose first argument is a type, not a value
    if (e.fn.k === 'name' && !env.has(e.fn.id)) {
      if (e.fn.id === 'annotate') {
        const v = this.eval(e.args[1], env);
        // annotate(number, t) turns a prim::NumToTensor value back into a Python number
        const toNumber = e.args[0].k === 'name' && ['number', 'int', 'float'].includes(e.args[0].id);
        return toNumber && v instanceof NumberTensor ? v.value : v;
      }
      if (e.fn.id === 'uninitialized') return null;
      if (e.fn.id === 'unchecked_cast') return this.eval(e.args[1] ?? e.args[0], env);
    }
    const fn = this.eval(e.fn, env);
    const args = e.args.map((a) => this.eval(a, env));
    const kwargs = new Map(e.kwargs.map(([k, v]) => [k, this.eval(v, env)] as const));
    if (fn instanceof Unsupported) return fn;
    if (fn instanceof BoundMethod) {
      const method = fn.self.cls.methods.get(fn.name)!;
      return this.callFunction(method, args, kwargs, fn.self);
    }
    if (fn instanceof Namespace) return this.callNamed(fn.name, args, kwargs);
    throw new KilnError('E_UNSUPPORTED', `${this.where}: calling a ${typeName(fn)}`, {
      hint: 'see README "Operator coverage"',
    });
  }

  private callNamed(name: string, args: Value[], kwargs: Map<string, Value>): Value {
    const aten = ATEN_CALL.exec(name)?.[1];
    const prim = PRIM_CALL.exec(name)?.[1];
    const blocked = [...args, ...kwargs.values()].find((a) => a instanceof Unsupported);
    if (blocked) {
      // a call on an unsupported op's result still counts when its own operator is unsupported too
      if (aten !== undefined && !lookupAten(`aten.${aten}`) && !NOT_ATEN.has(aten)) return this.missing(`aten.${aten}`);
      if (prim !== undefined && !PRIMS.has(prim)) return this.missing(`prim.${prim}`);
      return blocked;
    }
    if (name.startsWith('__torch__.')) {
      const f = this.archive.lookup(name);
      if (f && 'body' in f) return this.callFunction(f, args, kwargs);
      throw new KilnError('E_MODEL_INVALID', `the code calls ${name}, which the archive's code does not define`, {
        hint: 'the archive is incomplete or was altered; save it again with torch.jit.save',
      });
    }
    const builtin = this.builtin(name, args);
    if (builtin !== undefined) return builtin;
    if (aten !== undefined) {
      const scalar = scalarOp(aten, args);
      if (scalar !== undefined && kwargs.size === 0) return scalar;
      const special = this.torchSpecial(aten, args);
      if (special !== undefined) return special;
      const fn = lookupAten(`aten.${aten}`);
      if (!fn) return this.missing(`aten.${aten}`);
      const where = this.where;
      return withNodeContext({ node: where, op: `aten.${aten}` }, () => callAten(aten, fn, args, kwargs, where));
    }
    if (prim !== undefined) {
      const v = this.prim(prim, args);
      return v !== undefined ? v : this.missing(`prim.${prim}`);
    }
    if (name === 'ops.quantized.linear' || name === 'ops.quantized.linear_relu')
      return withNodeContext({ node: this.where, op: name.slice(4) }, () => this.quantizedLinear(name, args));
    return this.missing(name.replace(/^ops\./, ''));
  }

  /** Graph calls with this import position as their origin. */
  private graphCall(origin: string) {
    return (op: string, args: readonly GExpr[], attrs: Record<string, AttrValue> = {}) =>
      gcall(getOp(op), args, attrs, [origin]);
  }

  /**
   * quantized::linear(x, packed (weight, bias), scale, zero_point): x @ weight^T + bias over the float values of
   * the quantized input and weight, (relu,) requantized to the output's scale and zero point as quint8 (the
   * activation type of torch.ao.quantization's default qconfigs).
   */
  private quantizedLinear(name: string, args: Value[]): Value {
    const [x, packed, scale, zeroPoint] = args;
    const items = packed instanceof Tuple ? packed.items : [];
    const [w, b] = items;
    if (!isTensor(x) || !isTensor(w) || !(b === null || isTensor(b)) || !isNumber(scale) || !isNumber(zeroPoint))
      throw new KilnError('E_MODEL_INVALID', `${this.where}: ${name} with arguments it does not take`, {
        hint: 'the TorchScript code is malformed or was altered; save it again',
      });
    const call = this.graphCall(this.where);
    let y = call('matmul', [x, call('transpose', [w], { perm: [1, 0] })]);
    if (b) y = call('add', [y, b]);
    if (name.endsWith('_relu')) y = call('relu', [y]);
    return fakeQuantize(call, y, Number(scale), Number(zeroPoint), QUANTIZED_RANGES[13]);
  }

  /** Python builtins TorchScript prints unqualified. */
  private builtin(name: string, args: Value[]): Value | undefined {
    const [a] = args;
    const plain = a instanceof NumberTensor ? a.value : a;
    switch (name) {
      case 'int':
      case 'float':
      case 'bool': {
        if (isNumber(plain))
          return name === 'bool' ? Boolean(plain) : name === 'int' ? Math.trunc(Number(plain)) : Number(plain);
        if (typeof plain === 'string' && name !== 'bool') return Number(plain);
        if (isTensor(a)) {
          const c = constantScalar(a);
          if (c !== undefined) return name === 'bool' ? c !== 0 : name === 'int' ? Math.trunc(c) : c;
          return dataDependent(
            `${name}() of a tensor (aten::${name === 'bool' ? 'Bool' : name === 'int' ? 'Int' : 'Float'}) at ${this.where}`,
          );
        }
        return undefined;
      }
      case 'len':
        if (Array.isArray(a)) return a.length;
        if (a instanceof Tuple) return a.items.length;
        if (typeof a === 'string') return a.length;
        return undefined;
      case 'range': {
        const n = args.map((x) => (x instanceof NumberTensor ? x.value : x));
        if (!n.every((x) => typeof x === 'number')) return undefined;
        const [start, end, step] =
          n.length === 1 ? [0, n[0] as number, 1] : [n[0] as number, n[1] as number, (n[2] as number) ?? 1];
        const out: number[] = [];
        for (let i = start; step > 0 ? i < end : i > end; i += step) out.push(i);
        return out;
      }
      case 'getattr':
        return typeof args[1] === 'string' ? this.attr(a, args[1]) : undefined;
      case 'str':
        return isNumber(plain) || typeof plain === 'string' ? String(plain) : undefined;
      case 'isinstance':
        return undefined;
      default:
        return undefined;
    }
  }

  /** torch.* functions on lists, shapes and devices (not tensor operators). */
  private torchSpecial(op: string, args: Value[]): Value | undefined {
    const [a, b] = args;
    const shapeOf = (x: GExpr): number[] => {
      const s = (x.type as { shape: readonly (number | string)[] }).shape;
      if (s.some((d) => typeof d !== 'number')) {
        throw new KilnError('E_DYNAMIC', `${this.where}: the code reads a symbolic size`, {
          hint: 'give the inputs fixed shapes (--input-shape)',
        });
      }
      return s as number[];
    };
    switch (op) {
      case 'size':
        if (!isTensor(a)) return undefined;
        if (typeof b === 'number') {
          const s = shapeOf(a);
          return s[b < 0 ? b + s.length : b];
        }
        return shapeOf(a);
      case 'dim':
        return isTensor(a) ? shapeOf(a).length : undefined;
      case 'numel':
        return isTensor(a) ? shapeOf(a).reduce((x, y) => x * y, 1) : undefined;
      case 'len':
        if (Array.isArray(a)) return a.length;
        if (isTensor(a)) return shapeOf(a)[0];
        return undefined;
      case 'append':
        if (!Array.isArray(a)) return undefined;
        a.push(b);
        return null;
      case '__getitem__':
        if ((Array.isArray(a) || a instanceof Tuple) && typeof b === 'number') {
          const items = Array.isArray(a) ? a : a.items;
          return items[b < 0 ? b + items.length : b];
        }
        return undefined;
      case 'list':
        return Array.isArray(a) ? [...a] : a instanceof Tuple ? [...a.items] : undefined;
      case 'device':
        return typeof a === 'string' ? { kind: 'device', type: a } : undefined;
      case 'Int':
      case 'Float':
      case 'Bool':
      case 'ScalarImplicit':
        if (a instanceof NumberTensor) return op === 'Bool' ? a.value !== 0 : a.value;
        if (isTensor(a)) {
          const c = constantScalar(a);
          if (c !== undefined) return op === 'Bool' ? c !== 0 : c;
          return dataDependent(`aten::${op} of a computed tensor at ${this.where}`);
        }
        return undefined;
      case 'warn':
        return null;
      case '__is__':
      case '__isnot__':
        return op === '__is__' ? a === b : a !== b;
      default:
        return undefined;
    }
  }

  private prim(op: string, args: Value[]): Value | undefined {
    const [a] = args;
    switch (op) {
      case 'NumToTensor':
        return isNumber(a) ? new NumberTensor(Number(a)) : a instanceof NumberTensor ? a : undefined;
      case 'device':
        return { kind: 'device', type: 'cpu' };
      case 'dtype':
        if (isTensor(a)) return C10_CODES[(a.type as { dtype: DType }).dtype] ?? null;
        return a instanceof NumberTensor ? 4 : undefined;
      case 'is_cuda':
      case 'is_quantized':
      case 'is_mkldnn':
      case 'is_sparse':
      case 'is_meta':
        return false;
      case 'unchecked_cast':
      case 'data':
        return a;
      case 'min':
      case 'max': {
        const items = Array.isArray(a) ? a : args;
        const nums = items.map((x) => (x instanceof NumberTensor ? x.value : x));
        if (!nums.every((x) => typeof x === 'number')) return undefined;
        return op === 'min' ? Math.min(...(nums as number[])) : Math.max(...(nums as number[]));
      }
      case 'RaiseException':
        throw new KilnError('E_INPUT', `the model raises an exception at ${this.where}: ${String(a)}`, {
          hint: "the inputs do not meet the model's own checks (the shapes given, or the traced ones)",
        });
      default:
        return undefined;
    }
  }
}

/** The value of a 0-d or 1-element constant tensor, else undefined. */
function constantScalar(e: GExpr): number | undefined {
  if (e.kind !== 'const' || e.value.data.length !== 1) return undefined;
  return Number(e.value.data[0]);
}

/** Python arithmetic on numbers (and prim::NumToTensor values), as torch.add(int, int) and `a + b` compute it. */
function scalarOp(op: string, given: readonly Value[]): Value | undefined {
  if (given.length === 0 || given.length > 2) return undefined;
  // traced size arithmetic may mix a NumToTensor value with a 0-d tensor constant (CONSTANTS.c0)
  const sized = given.some((x) => x instanceof NumberTensor);
  const args = given.map((x) => {
    const c = sized && isTensor(x) ? constantScalar(x) : undefined;
    return c !== undefined ? new NumberTensor(c) : x;
  });
  if (!args.every((x) => isNumber(x) || x instanceof NumberTensor)) return undefined;
  const wrap = args.some((x) => x instanceof NumberTensor);
  const [a, b] = args.map((x) => (x instanceof NumberTensor ? x.value : Number(x)));
  const floorDiv = (x: number, y: number) => Math.floor(x / y);
  const bool = (v: boolean) => v;
  const table: Record<string, () => number | boolean> = {
    add: () => a + b,
    '+': () => a + b,
    sub: () => a - b,
    '-': () => a - b,
    mul: () => a * b,
    '*': () => a * b,
    div: () => a / b,
    '/': () => a / b,
    floordiv: () => floorDiv(a, b),
    floor_divide: () => floorDiv(a, b),
    '//': () => floorDiv(a, b),
    remainder: () => a - floorDiv(a, b) * b,
    '%': () => a - floorDiv(a, b) * b,
    pow: () => a ** b,
    '**': () => a ** b,
    neg: () => -a,
    gt: () => bool(a > b),
    '>': () => bool(a > b),
    lt: () => bool(a < b),
    '<': () => bool(a < b),
    ge: () => bool(a >= b),
    '>=': () => bool(a >= b),
    le: () => bool(a <= b),
    '<=': () => bool(a <= b),
    eq: () => bool(a === b),
    '==': () => bool(a === b),
    ne: () => bool(a !== b),
    '!=': () => bool(a !== b),
    __and__: () => (typeof args[0] === 'boolean' ? Boolean(a && b) : a & b),
    '&': () => (typeof args[0] === 'boolean' ? Boolean(a && b) : a & b),
    __or__: () => (typeof args[0] === 'boolean' ? Boolean(a || b) : a | b),
    '|': () => (typeof args[0] === 'boolean' ? Boolean(a || b) : a | b),
    __not__: () => !a,
    abs: () => Math.abs(a),
    min: () => Math.min(a, b),
    max: () => Math.max(a, b),
    floor: () => Math.floor(a),
    ceil: () => Math.ceil(a),
  };
  const f = table[op];
  const unary = op === 'neg' || op === '__not__' || op === 'abs' || op === 'floor' || op === 'ceil';
  if (!f || (unary ? args.length !== 1 : args.length !== 2)) return undefined;
  const r = f();
  // NumToTensor values stay 0-d tensors through arithmetic; comparisons give Python bools
  return wrap && typeof r === 'number' ? new NumberTensor(r) : r;
}
