// A pickle reader for the subset TorchScript archives write (data.pkl, constants.pkl, traced_inputs.pkl), and
// torch.save state dicts (the legacy .pt2 layout): protocol
// 2 opcodes, tensors as torch._utils._rebuild_tensor_v2 over persistent-id storages, module objects of classes
// from the archive's own code (__torch__.*), typed containers. It builds plain values and never runs or
// constructs what a pickle names: any global outside a short allow-list is refused.
import { KilnError } from '../../runtime/errors.js';

/** A Python tuple (lists are JS arrays). */
export class PyTuple {
  constructor(readonly items: PyValue[]) {}
}

/** An object of a class from the archive's code (a module), with the state its pickle set. */
export class PyObject {
  constructor(
    readonly className: string,
    public state: Map<string, PyValue> = new Map(),
  ) {}
}

/** A tensor as the pickle describes it: a view (sizes, strides, offset) of a storage. */
export interface PickledTensor {
  kind: 'tensor';
  /** The storage class, e.g. 'FloatStorage'. */
  storageType: string;
  /** The storage's archive entry, e.g. 'data/3' or 'constants/0'. */
  key: string;
  /** Elements in the storage. */
  numel: number;
  offset: number;
  sizes: number[];
  strides: number[];
  /** A per-tensor affine quantized tensor's parameters (torch._utils._rebuild_qtensor): value = (q - zeroPoint) * scale. */
  quantized?: { scale: number; zeroPoint: number };
}

/** A storage a persistent id names: the archive entry `key` ('data/3'), of `numel` elements. */
export interface PyStorage {
  kind: 'storage';
  storageType: string;
  key: string;
  numel: number;
}

export interface PyDevice {
  kind: 'device';
  type: string;
}

export type PyValue =
  | null
  | boolean
  | number
  | string
  | PyValue[]
  | PyTuple
  | Map<PyValue, PyValue>
  | PyObject
  | PickledTensor
  | PyDevice
  | PyStorage
  | { kind: 'global'; name: string };

const HINT = 'the archive is truncated or corrupt, or not a TorchScript file; save it again with torch.jit.save';

/** Globals a TorchScript pickle may name, other than its own module classes. */
const STORAGE = /^torch (Float|Double|Long|Int|Short|Char|Byte|Bool|Half|BFloat16|QInt8|QUInt8|QInt32)Storage$/;
/** The quantization schemes a quantized tensor's parameters name (only per-tensor affine is read). */
const QSCHEMES = new Set([
  'torch per_tensor_affine',
  'torch per_channel_affine',
  'torch per_channel_affine_float_qparams',
]);
const IDENTITY_GLOBALS = new Set([
  // typed containers: the value with its static type attached
  'torch.jit._pickle restore_type_tag',
  // older archives' typed lists
  'torch.jit._pickle build_intlist',
  'torch.jit._pickle build_tensorlist',
  'torch.jit._pickle build_doublelist',
  'torch.jit._pickle build_boollist',
]);

function fail(message: string): never {
  throw new KilnError('E_MODEL_DECODE', message, { hint: HINT });
}

/**
 * Reads one pickle; `where` names the archive entry in messages, and `folder` is where its storages are (data.pkl's
 * in data/, constants.pkl's in constants/): a storage's key is '<folder>/<name>'.
 */
export function unpickle(bytes: Uint8Array, where: string, folder = 'data'): PyValue {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const text = new TextDecoder('utf-8', { fatal: false });
  const stack: (PyValue | typeof MARK)[] = [];
  const memo = new Map<number, PyValue>();
  let pos = 0;
  const need = (n: number) => {
    if (pos + n > bytes.length) fail(`${where} ends in the middle of a pickle opcode (at byte ${pos})`);
  };
  /** The offset of the next n bytes, checked to be inside the pickle. */
  const take = (n: number) => {
    need(n);
    pos += n;
    return pos - n;
  };
  const u8 = () => bytes[take(1)];
  const u16 = () => view.getUint16(take(2), true);
  const u32 = () => view.getUint32(take(4), true);
  const i32 = () => view.getInt32(take(4), true);
  const str = (n: number) => {
    need(n);
    pos += n;
    return text.decode(bytes.subarray(pos - n, pos));
  };
  const line = () => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) fail(`${where}: unterminated text in a pickle opcode`);
    const s = text.decode(bytes.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const pop = (): PyValue => {
    if (!stack.length) fail(`${where}: a pickle opcode pops an empty stack`);
    const v = stack.pop()!;
    if (v === MARK) fail(`${where}: a pickle opcode pops a mark`);
    return v as PyValue;
  };
  const top = (): PyValue => {
    const v = stack[stack.length - 1];
    if (v === undefined || v === MARK) fail(`${where}: a pickle opcode needs a value on the stack`);
    return v as PyValue;
  };
  const popMark = (): PyValue[] => {
    const at = stack.lastIndexOf(MARK);
    if (at < 0) fail(`${where}: a pickle opcode has no mark to pop to`);
    const items = stack.splice(at) as PyValue[];
    return items.slice(1);
  };
  const setItems = (d: PyValue, kv: PyValue[]) => {
    if (d instanceof Map) {
      for (let i = 0; i + 1 < kv.length; i += 2) d.set(kv[i], kv[i + 1]);
    } else fail(`${where}: SETITEMS on something that is not a dict`);
  };

  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 2) fail(`${where} uses a pickle protocol above 2, which TorchScript does not write`);
        break;
      case 0x2e: // STOP
        return pop();
      case 0x28: // MARK
        stack.push(MARK);
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x4a: // BININT
        stack.push(i32());
        break;
      case 0x8a: {
        // LONG1: a little-endian two's-complement integer of n bytes
        const n = u8();
        need(n);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[pos + i]);
        if (n && bytes[pos + n - 1] & 0x80) v -= 1n << BigInt(8 * n);
        pos += n;
        stack.push(Number(v));
        break;
      }
      case 0x47: // BINFLOAT (big-endian)
        need(8);
        stack.push(view.getFloat64(pos, false));
        pos += 8;
        break;
      case 0x58: // BINUNICODE
        stack.push(str(u32()));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(str(u8()));
        break;
      case 0x55: // SHORT_BINSTRING
        stack.push(str(u8()));
        break;
      case 0x54: // BINSTRING
        stack.push(str(u32()));
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push(new PyTuple([]));
        break;
      case 0x85: // TUPLE1
        stack.push(new PyTuple([pop()]));
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        stack.push(new PyTuple([pop(), b]));
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop(),
          b = pop();
        stack.push(new PyTuple([pop(), b, c]));
        break;
      }
      case 0x74: // TUPLE
        stack.push(new PyTuple(popMark()));
        break;
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x6c: // LIST
        stack.push(popMark());
        break;
      case 0x61: {
        // APPEND
        const v = pop();
        const l = top();
        if (!Array.isArray(l)) fail(`${where}: APPEND to something that is not a list`);
        l.push(v);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        const l = top();
        if (!Array.isArray(l)) fail(`${where}: APPENDS to something that is not a list`);
        l.push(...items);
        break;
      }
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x64: // DICT
        {
          const d = new Map<PyValue, PyValue>();
          setItems(d, popMark());
          stack.push(d);
        }
        break;
      case 0x73: {
        // SETITEM
        const v = pop(),
          k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        // SETITEMS
        const kv = popMark();
        setItems(top(), kv);
        break;
      }
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x68: // BINGET
      case 0x6a: {
        // LONG_BINGET
        const k = op === 0x68 ? u8() : u32();
        if (!memo.has(k)) fail(`${where}: a pickle refers to memo entry ${k}, which was never stored`);
        stack.push(memo.get(k)!);
        break;
      }
      case 0x63: {
        // GLOBAL 'module name'
        const name = `${line()} ${line()}`;
        stack.push(global(name, where));
        break;
      }
      case 0x81: {
        // NEWOBJ cls args: only the archive's own classes (modules), created empty
        const args = pop(),
          cls = pop();
        if (!isGlobal(cls) || !cls.name.startsWith('__torch__')) {
          fail(`${where}: a pickle creates an object of ${isGlobal(cls) ? cls.name : 'a non-class'}`);
        }
        if (!(args instanceof PyTuple) || args.items.length) fail(`${where}: ${cls.name} is created with arguments`);
        stack.push(new PyObject(cls.name.replace(' ', '.')));
        break;
      }
      case 0x62: {
        // BUILD: an object's state (a module's attributes; a TorchScript class's __getstate__ tuple, such as the
        // weight and bias of quantized linear's packed parameters)
        const state = pop();
        const obj = top();
        if (
          obj instanceof PyObject &&
          obj.className.startsWith('__torch__.torch.classes.') &&
          state instanceof PyTuple
        ) {
          obj.state.set('__state__', state);
          break;
        }
        if (!(obj instanceof PyObject) || !(state instanceof Map))
          fail(`${where}: BUILD of something other than a module`);
        for (const [k, v] of state) if (typeof k === 'string') obj.state.set(k, v);
        break;
      }
      case 0x51: {
        // BINPERSID ('storage', StorageType, key, location, numel)
        const pid = pop();
        const t = pid instanceof PyTuple ? pid.items : [];
        if (t[0] !== 'storage' || !isGlobal(t[1]) || typeof t[2] !== 'string' || typeof t[4] !== 'number') {
          fail(`${where}: a persistent id that is not a storage`);
        }
        const storageType = (t[1] as { name: string }).name.split(' ')[1];
        stack.push({ kind: 'storage', storageType, key: `${folder}/${t[2]}`, numel: t[4] as number });
        break;
      }
      case 0x52: {
        // REDUCE callable args: only the allow-listed functions
        const args = pop(),
          fn = pop();
        stack.push(reduce(fn, args, where));
        break;
      }
      default:
        fail(
          `${where} holds pickle opcode 0x${op.toString(16).padStart(2, '0')} (at byte ${pos - 1}), outside what TorchScript writes`,
        );
    }
  }
}

/** _rebuild_qtensor's quantizer parameters: (per_tensor_affine, scale, zero_point) is read, other schemes refused. */
function perTensorAffine(q: PyValue, where: string): { scale: number; zeroPoint: number } {
  const items = q instanceof PyTuple ? q.items : [];
  const scheme = isGlobal(items[0]) ? items[0].name.split(' ')[1] : undefined;
  if (scheme && scheme !== 'per_tensor_affine')
    throw new KilnError(
      'E_UNSUPPORTED',
      `${where} holds a ${scheme} quantized tensor; Kiln reads per-tensor affine ones`,
      {
        hint: "quantize with a per-tensor qconfig (e.g. torch.ao.quantization.get_default_qconfig('qnnpack')), or export the float model",
      },
    );
  const [, scale, zeroPoint] = items;
  if (!scheme || typeof scale !== 'number' || typeof zeroPoint !== 'number')
    fail(`${where}: _rebuild_qtensor with malformed quantizer parameters`);
  return { scale: scale as number, zeroPoint: zeroPoint as number };
}

const MARK = Symbol('mark');

const isGlobal = (v: unknown): v is { kind: 'global'; name: string } =>
  typeof v === 'object' && v !== null && (v as { kind?: string }).kind === 'global';

function global(name: string, where: string): PyValue {
  if (
    name === 'torch._utils _rebuild_tensor_v2' ||
    name === 'torch._utils _rebuild_parameter' ||
    name === 'torch._utils _rebuild_qtensor' ||
    QSCHEMES.has(name) ||
    name === 'collections OrderedDict' ||
    name === 'torch device' ||
    IDENTITY_GLOBALS.has(name) ||
    STORAGE.test(name) ||
    /^__torch__(\.[A-Za-z_][\w]*)* [A-Za-z_][\w]*$/.test(name)
  ) {
    return { kind: 'global', name };
  }
  throw new KilnError(
    'E_UNSUPPORTED',
    `${where} references the Python global '${name.replace(' ', '.')}', which is outside the TorchScript subset Kiln reads (tensors, storages, typed containers, the archive's own module classes)`,
    {
      hint: 'Kiln never runs code a pickle names; save the model with torch.jit.save (plain modules and tensors), or export it with torch.export',
    },
  );
}

function reduce(fn: PyValue, args: PyValue, where: string): PyValue {
  if (!isGlobal(fn) || !(args instanceof PyTuple))
    fail(`${where}: REDUCE of something that is not an allowed function`);
  const a = args.items;
  if (fn.name === 'collections OrderedDict') return new Map();
  if (IDENTITY_GLOBALS.has(fn.name)) return a[0];
  if (fn.name === 'torch device') return { kind: 'device', type: String(a[0]) };
  // an nn.Parameter (torch.save of a state dict): its tensor
  if (fn.name === 'torch._utils _rebuild_parameter') return a[0];
  if (fn.name === 'torch._utils _rebuild_tensor_v2' || fn.name === 'torch._utils _rebuild_qtensor') {
    const [storage, offset, sizes, strides, qparams] = a;
    const ints = (v: PyValue) =>
      v instanceof PyTuple && v.items.every((x) => typeof x === 'number') ? (v.items as number[]) : undefined;
    const isStorage = (v: PyValue): v is PyStorage => (v as PyStorage | null)?.kind === 'storage';
    if (!isStorage(storage) || typeof offset !== 'number') fail(`${where}: _rebuild_tensor_v2 without a storage`);
    const s = ints(sizes),
      st = ints(strides);
    if (!s || !st || s.length !== st.length) fail(`${where}: _rebuild_tensor_v2 with malformed sizes or strides`);
    const { storageType, key, numel } = storage;
    const t: PickledTensor = { kind: 'tensor', storageType, key, numel, offset, sizes: s, strides: st };
    if (fn.name === 'torch._utils _rebuild_qtensor') t.quantized = perTensorAffine(qparams, where);
    return t;
  }
  return fail(`${where}: a pickle calls ${fn.name.replace(' ', '.')}`);
}
