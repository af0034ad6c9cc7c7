// A functional PTX simulator for exactly the instruction subset Kiln's PTX backend emits (test support only; the
// runtime never imports it). It parses a module, and runs a kernel's grid block by block: the threads of a block
// run one after the other up to the next bar.sync (or their exit), then all continue, so shared memory written
// before a barrier is seen after it. Anything outside the subset (an unknown opcode, type or modifier, an
// operand form it does not know) throws at parse time; an access outside a buffer, a barrier not reached by
// every thread of a block, or a runaway loop throws while running. Semantics follow the PTX ISA: integer
// registers wrap, float->int conversions saturate (NaN -> 0), shifts clamp, setp's unordered compares, min.NaN.
// The .approx instructions (ex2, lg2, sin, cos) are computed exactly: what the simulator checks is the code
// around them (range reduction, special cases), their own error bound is the hardware's.

type Val = number | bigint | boolean;
interface Thread {
  r: Val[];
  pc: number;
  tid: [number, number, number];
  local: DataView;
}
interface Ctx {
  ctaid: [number, number, number];
  ntid: [number, number, number];
  nctaid: [number, number, number];
  global: DataView;
  shared: DataView;
  params: Map<string, bigint>;
  steps: number;
}
type Op = (t: Thread, c: Ctx) => number | undefined;
const BAR = 1,
  EXIT = 2;

/** Global addresses start here, so that a shared or local address used as a global one faults. */
export const GLOBAL_BASE = 0x10000000;

export class PtxSimError extends Error {}
const fail = (msg: string): never => {
  throw new PtxSimError(msg);
};

interface Entry {
  name: string;
  params: string[];
  regs: Map<string, number>;
  shared: Map<string, number>;
  sharedBytes: number;
  local: Map<string, number>;
  localBytes: number;
  code: Op[];
  text: string[];
}

export interface PtxProgram {
  version: string;
  target: string;
  entries: Map<string, Entry>;
}

const TYPES = new Set([
  'f32',
  'f64',
  's8',
  'u8',
  's16',
  'u16',
  's32',
  'u32',
  's64',
  'u64',
  'b8',
  'b16',
  'b32',
  'b64',
  'pred',
]);
const width = (t: string) => (t === 'pred' ? 1 : Number(t.slice(1)));
const isF = (t: string) => t === 'f32' || t === 'f64';
const isSigned = (t: string) => t.startsWith('s');

function f32FromHex(h: string): number {
  const d = new DataView(new ArrayBuffer(4));
  d.setUint32(0, parseInt(h, 16));
  return d.getFloat32(0);
}
function f64FromHex(h: string): number {
  const d = new DataView(new ArrayBuffer(8));
  d.setBigUint64(0, BigInt(`0x${h}`));
  return d.getFloat64(0);
}

/** Canonical register value of type t (32-bit ints signed, 64-bit BigInt signed, f32 rounded). */
function norm(v: number | bigint | boolean, t: string): Val {
  if (t === 'pred') return !!v;
  if (t === 'f32') return Math.fround(Number(v));
  if (t === 'f64') return Number(v);
  if (width(t) === 64) return BigInt.asIntN(64, typeof v === 'bigint' ? v : BigInt(Math.trunc(Number(v))));
  return typeof v === 'bigint' ? Number(BigInt.asIntN(32, v)) : Number(v) | 0;
}
/** A register value read as type t: 32-bit signed/unsigned number, 64-bit signed/unsigned BigInt, narrow ints truncated. */
function asType(v: Val, t: string): number | bigint {
  if (isF(t)) return v as number;
  const w = width(t);
  if (w === 64) {
    const b = typeof v === 'bigint' ? v : BigInt(v as number);
    return t === 'u64' ? BigInt.asUintN(64, b) : BigInt.asIntN(64, b);
  }
  let n = typeof v === 'bigint' ? Number(BigInt.asIntN(32, v)) : typeof v === 'boolean' ? +v : (v as number);
  if (w === 8) n = isSigned(t) ? (n << 24) >> 24 : n & 0xff;
  else if (w === 16) n = isSigned(t) ? (n << 16) >> 16 : n & 0xffff;
  else n = t === 'u32' ? n >>> 0 : n | 0;
  return n;
}

const SPECIALS = /^%(tid|ntid|ctaid|nctaid)\.([xyz])$/;

export function parsePtx(text: string): PtxProgram {
  const src = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/[^\n]*/g, '');
  const version = /\.version\s+([\d.]+)/.exec(src)?.[1] ?? fail('no .version');
  const target = /\.target\s+(\w+)/.exec(src)?.[1] ?? fail('no .target');
  if (!/\.address_size\s+64/.test(src)) fail('only 64-bit addressing is supported');
  const entries = new Map<string, Entry>();
  const re = /\.visible\s+\.entry\s+([\w$]+)\s*\(([^)]*)\)([^{]*)\{/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(src))) {
    // body up to the matching brace (the only braces inside are vector operands, {%f0, %f1, %f2, %f3})
    const start = re.lastIndex;
    let end = -1;
    for (let i = start, depth = 1; i < src.length; i++) {
      if (src[i] === '{') depth++;
      else if (src[i] === '}' && --depth === 0) {
        end = i;
        break;
      }
    }
    if (end < 0) fail(`entry ${m[1]}: no closing brace`);
    const params = m[2]
      .split(',')
      .map((p) => p.trim())
      .filter(Boolean)
      .map((p) => {
        const pm = /^\.param\s+\.u64\s+([\w$]+)$/.exec(p);
        return pm ? pm[1] : fail(`entry ${m![1]}: unsupported parameter '${p}'`);
      });
    for (const d of m[3]
      .trim()
      .split('\n')
      .map((x) => x.trim())
      .filter(Boolean)) {
      if (!/^\.maxntid\s+\d+\s*,\s*\d+\s*,\s*\d+$/.test(d)) fail(`entry ${m[1]}: unsupported directive '${d}'`);
    }
    entries.set(m[1], parseEntry(m[1], params, src.slice(start, end)));
    re.lastIndex = end + 1;
  }
  return { version, target, entries };
}

function parseEntry(name: string, params: string[], body: string): Entry {
  const e: Entry = {
    name,
    params,
    regs: new Map(),
    shared: new Map(),
    sharedBytes: 0,
    local: new Map(),
    localBytes: 0,
    code: [],
    text: [],
  };
  const labels = new Map<string, number>();
  const stmts: string[] = [];
  for (let s of body.split(';')) {
    s = s.trim();
    // labels precede statements
    let lm: RegExpExecArray | null;
    while ((lm = /^([\w$]+):\s*/.exec(s))) {
      labels.set(lm[1], stmts.length);
      s = s.slice(lm[0].length).trim();
    }
    if (!s) continue;
    if (s.startsWith('.reg')) continue; // registers are found by name
    const dm = /^\.(shared|local)\s+\.align\s+(\d+)\s+\.b8\s+([\w$]+)\[(\d+)\]$/.exec(s);
    if (dm) {
      const align = Number(dm[2]),
        bytes = Number(dm[4]);
      if (dm[1] === 'shared') {
        e.sharedBytes = Math.ceil(e.sharedBytes / align) * align;
        e.shared.set(dm[3], e.sharedBytes);
        e.sharedBytes += bytes;
      } else {
        e.localBytes = Math.ceil(e.localBytes / align) * align;
        e.local.set(dm[3], e.localBytes);
        e.localBytes += bytes;
      }
      continue;
    }
    if (s.startsWith('.')) fail(`entry ${name}: unsupported declaration '${s}'`);
    stmts.push(s);
  }
  e.text = stmts;
  e.code = stmts.map((s) => compileInstr(s, e, labels));
  return e;
}

function compileInstr(s: string, e: Entry, labels: Map<string, number>): Op {
  const where = `${e.name}: '${s}'`;
  let guard: { reg: number; neg: boolean } | undefined;
  const gm = /^@(!?)(%\w+)\s+/.exec(s);
  if (gm) {
    guard = { reg: regIndex(e, gm[2]), neg: gm[1] === '!' };
    s = s.slice(gm[0].length);
  }
  const sp = s.search(/\s/);
  const opcode = sp < 0 ? s : s.slice(0, sp);
  const ops = sp < 0 ? [] : splitOperands(s.slice(sp + 1));
  const op = buildOp(opcode, ops, e, labels, where);
  if (!guard) return op;
  const g = guard;
  return (t, c) => ((t.r[g.reg] as boolean) !== g.neg ? op(t, c) : undefined);
}

/** Operands split at commas outside braces (a vector operand `{%f0, %f1, %f2, %f3}` stays one). */
function splitOperands(s: string): string[] {
  const out: string[] = [];
  let depth = 0,
    cur = '';
  for (const ch of s) {
    if (ch === '{') depth++;
    else if (ch === '}') depth--;
    if (ch === ',' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out.map((x) => x.trim()).filter(Boolean);
}

/** The registers of a vector operand `{%a, %b, ...}` of `n` elements. */
function vectorOperand(o: string, n: number, where: string): string[] {
  const m = /^\{(.*)\}$/.exec(o) ?? fail(`${where}: expected a vector operand, got '${o}'`);
  const regs = m[1].split(',').map((x) => x.trim());
  if (regs.length !== n || regs.some((r) => !/^%[a-z]+\d+$/.test(r))) fail(`${where}: bad vector operand '${o}'`);
  return regs;
}

function regIndex(e: Entry, name: string): number {
  let i = e.regs.get(name);
  if (i === undefined) {
    i = e.regs.size;
    e.regs.set(name, i);
  }
  return i;
}

/** Reads a source operand as type `ty`. */
function reader(o: string, ty: string, e: Entry, where: string): (t: Thread, c: Ctx) => number | bigint | boolean {
  if (/^%[a-z]+\d+$/.test(o)) {
    const i = regIndex(e, o);
    if (ty === 'pred') return (t) => t.r[i] as boolean;
    if (isF(ty)) return (t) => t.r[i] as number;
    if (ty === 's32' || ty === 'b32') return (t) => (t.r[i] as number) | 0;
    if (ty === 'u32') return (t) => (t.r[i] as number) >>> 0;
    return (t) => asType(t.r[i], ty);
  }
  const sm = SPECIALS.exec(o);
  if (sm) {
    const k = 'xyz'.indexOf(sm[2]);
    switch (sm[1]) {
      case 'tid':
        return (t) => t.tid[k];
      case 'ntid':
        return (_t, c) => c.ntid[k];
      case 'ctaid':
        return (_t, c) => c.ctaid[k];
      default:
        return (_t, c) => c.nctaid[k];
    }
  }
  let v: number | bigint;
  if (/^0f[0-9A-Fa-f]{8}$/.test(o)) v = f32FromHex(o.slice(2));
  else if (/^0d[0-9A-Fa-f]{16}$/.test(o)) v = f64FromHex(o.slice(2));
  else if (/^-?\d+$/.test(o)) v = width(ty) === 64 ? BigInt(o) : Number(o);
  else if (e.shared.has(o)) v = BigInt(e.shared.get(o)!);
  else if (e.local.has(o)) v = BigInt(e.local.get(o)!);
  else return fail(`${where}: unsupported operand '${o}'`);
  const k = isF(ty) || ty === 'pred' ? v : asType(norm(v, ty.replace(/^b/, 'u')), ty);
  return () => k;
}

function destIndex(o: string, e: Entry, where: string): number {
  if (!/^%[a-z]+\d+$/.test(o)) fail(`${where}: destination must be a register`);
  return regIndex(e, o);
}

function memOperand(o: string, e: Entry, where: string): { reg?: number; name?: string; off: number } {
  const m = /^\[\s*([%\w$]+)\s*(?:\+\s*(-?\d+))?\s*\]$/.exec(o) ?? fail(`${where}: bad address '${o}'`);
  const off = Number(m[2] ?? 0);
  if (m[1].startsWith('%')) return { reg: regIndex(e, m[1]), off };
  return { name: m[1], off };
}

const MEM_SIZE: Record<string, number> = {
  f32: 4,
  f64: 8,
  s8: 1,
  u8: 1,
  s16: 2,
  u16: 2,
  s32: 4,
  u32: 4,
  b32: 4,
  s64: 8,
  u64: 8,
  b64: 8,
};

function memRead(dv: DataView, a: number, ty: string): Val {
  switch (ty) {
    case 'f32':
      return dv.getFloat32(a, true);
    case 'f64':
      return dv.getFloat64(a, true);
    case 's8':
      return dv.getInt8(a);
    case 'u8':
      return dv.getUint8(a);
    case 's16':
      return dv.getInt16(a, true);
    case 'u16':
      return dv.getUint16(a, true);
    case 's32':
    case 'u32':
    case 'b32':
      return dv.getInt32(a, true);
    default:
      return dv.getBigInt64(a, true);
  }
}
function memWrite(dv: DataView, a: number, ty: string, v: Val): void {
  switch (ty) {
    case 'f32':
      dv.setFloat32(a, v as number, true);
      return;
    case 'f64':
      dv.setFloat64(a, v as number, true);
      return;
    case 's8':
    case 'u8':
      dv.setUint8(a, Number(asType(v, 'u32')) & 0xff);
      return;
    case 's16':
    case 'u16':
      dv.setUint16(a, Number(asType(v, 'u32')) & 0xffff, true);
      return;
    case 's32':
    case 'u32':
    case 'b32':
      dv.setInt32(a, Number(asType(v, 's32')), true);
      return;
    default:
      dv.setBigInt64(a, BigInt.asIntN(64, asType(v, 's64') as bigint), true);
  }
}

function roundInt(x: number, mode: string): number {
  switch (mode) {
    case 'rzi':
      return Math.trunc(x);
    case 'rmi':
      return Math.floor(x);
    case 'rpi':
      return Math.ceil(x);
    case 'rni': {
      const f = Math.floor(x),
        d = x - f;
      return d > 0.5 ? f + 1 : d < 0.5 ? f : f % 2 === 0 ? f : f + 1;
    }
    default:
      return fail(`rounding ${mode}`);
  }
}

function intRange(ty: string): [bigint, bigint] {
  const w = BigInt(width(ty));
  return isSigned(ty) ? [-(1n << (w - 1n)), (1n << (w - 1n)) - 1n] : [0n, (1n << w) - 1n];
}

/** cvt semantics for the subset. */
function convert(v: number | bigint, dst: string, src: string, mode: string | undefined): Val {
  if (isF(dst)) {
    if (isF(src)) {
      const x = v as number;
      if (mode?.endsWith('i')) return norm(Number.isFinite(x) ? roundInt(x, mode) : x, dst);
      return norm(x, dst);
    }
    return norm(Number(v), dst);
  }
  if (isF(src)) {
    const x = v as number;
    if (Number.isNaN(x)) return norm(0, dst);
    const [lo, hi] = intRange(dst);
    let r: bigint;
    if (x === Infinity) r = hi;
    else if (x === -Infinity) r = lo;
    else {
      r = BigInt(roundInt(x, mode ?? fail('float->int cvt needs a rounding mode')));
      r = r < lo ? lo : r > hi ? hi : r;
    }
    return width(dst) === 64 ? BigInt.asIntN(64, r) : Number(BigInt.asIntN(32, r));
  }
  // integer -> integer: value of the source type, wrapped into the destination width
  const b = typeof v === 'bigint' ? v : BigInt(v);
  const w = width(dst);
  const wrapped = isSigned(dst) ? BigInt.asIntN(w, b) : BigInt.asUintN(w, b);
  return w === 64 ? BigInt.asIntN(64, wrapped) : Number(BigInt.asIntN(32, wrapped));
}

const CMPS: Record<string, (a: number | bigint, b: number | bigint) => boolean> = {
  eq: (a, b) => a === b,
  ne: (a, b) => a !== b,
  lt: (a, b) => a < b,
  le: (a, b) => a <= b,
  gt: (a, b) => a > b,
  ge: (a, b) => a >= b,
};

function buildOp(opcode: string, o: string[], e: Entry, labels: Map<string, number>, where: string): Op {
  const parts = opcode.split('.');
  const base = parts[0];
  const mods = parts.slice(1);
  const ty = mods[mods.length - 1];
  const need = (n: number) => {
    if (o.length !== n) fail(`${where}: expected ${n} operands`);
  };
  const checkType = (t: string) => {
    if (!TYPES.has(t)) fail(`${where}: unsupported type .${t}`);
  };
  const only = (allowed: string[]) => {
    for (const m of mods.slice(0, -1)) if (!allowed.includes(m)) fail(`${where}: unsupported modifier .${m}`);
  };

  switch (base) {
    case 'ret':
      need(0);
      return () => EXIT;
    case 'bar': {
      if (opcode !== 'bar.sync' || o.length !== 1 || o[0] !== '0') fail(`${where}: only 'bar.sync 0' is supported`);
      return () => BAR;
    }
    case 'bra': {
      if (opcode !== 'bra' && opcode !== 'bra.uni') fail(`${where}: unsupported branch`);
      need(1);
      const target = labels.get(o[0]) ?? fail(`${where}: unknown label ${o[0]}`);
      return (t) => {
        t.pc = target;
      };
    }
    case 'mov': {
      need(2);
      checkType(ty);
      only([]);
      const d = destIndex(o[0], e, where),
        a = reader(o[1], ty, e, where);
      // a .b32/.b64 move between a float and an integer register keeps the bits (a bit reinterpretation)
      const floatReg = (x: string) => /^%fd?\d+$/.test(x);
      if (/^b(32|64)$/.test(ty) && /^%[a-z]+\d+$/.test(o[1]) && floatReg(o[0]) !== floatReg(o[1])) {
        const s = regIndex(e, o[1]),
          wide = ty === 'b64',
          toFloat = floatReg(o[0]);
        const view = new DataView(new ArrayBuffer(8));
        return (t) => {
          const v = t.r[s];
          if (toFloat) {
            if (wide) view.setBigInt64(0, BigInt.asIntN(64, v as bigint), true);
            else view.setInt32(0, v as number, true);
            t.r[d] = wide ? view.getFloat64(0, true) : view.getFloat32(0, true);
          } else {
            if (wide) view.setFloat64(0, v as number, true);
            else view.setFloat32(0, v as number, true);
            t.r[d] = wide ? view.getBigInt64(0, true) : view.getInt32(0, true);
          }
        };
      }
      return (t, c) => {
        t.r[d] = norm(a(t, c), ty);
      };
    }
    case 'cvta': {
      if (opcode !== 'cvta.to.global.u64') fail(`${where}: unsupported cvta`);
      need(2);
      const d = destIndex(o[0], e, where),
        a = reader(o[1], 'u64', e, where);
      return (t, c) => {
        t.r[d] = norm(a(t, c), 'u64');
      };
    }
    case 'ld':
    case 'st': {
      const space = mods[0];
      if (mods.length === 3 && mods[1] === 'v4' && ty === 'f32' && (space === 'global' || space === 'shared')) {
        // ld/st.{global,shared}.v4.f32: four consecutive floats, 16-byte aligned
        need(2);
        const m = memOperand(base === 'ld' ? o[1] : o[0], e, where);
        if (m.reg === undefined) fail(`${where}: address must be a register`);
        const regs = vectorOperand(base === 'ld' ? o[0] : o[1], 4, where).map((r) => regIndex(e, r));
        const ar = m.reg!,
          off = m.off,
          bias = space === 'global' ? GLOBAL_BASE : 0;
        const addr = (t: Thread, dv: DataView) => {
          const a = Number(t.r[ar]) + off - bias;
          if (!(a >= 0 && a + 16 <= dv.byteLength))
            fail(`${e.name}: ${space} access of 16 bytes at ${Number(t.r[ar]) + off} is out of bounds (${where})`);
          if (a % 16 !== 0) fail(`${e.name}: misaligned ${space} v4 access at ${a} (${where})`);
          return a;
        };
        const mem = (_t: Thread, c: Ctx) => (space === 'global' ? c.global : c.shared);
        if (base === 'ld')
          return (t, c) => {
            const dv = mem(t, c),
              a = addr(t, dv);
            regs.forEach((r, k) => {
              t.r[r] = dv.getFloat32(a + 4 * k, true);
            });
          };
        return (t, c) => {
          const dv = mem(t, c),
            a = addr(t, dv);
          regs.forEach((r, k) => dv.setFloat32(a + 4 * k, t.r[r] as number, true));
        };
      }
      if (mods.length !== 2 || !['param', 'global', 'shared', 'local'].includes(space) || !(ty in MEM_SIZE))
        fail(`${where}: unsupported ${base}`);
      need(2);
      const size = MEM_SIZE[ty];
      if (space === 'param') {
        if (base !== 'ld' || ty !== 'u64') fail(`${where}: only ld.param.u64 is supported`);
        const d = destIndex(o[0], e, where),
          m = memOperand(o[1], e, where);
        if (!m.name || !e.params.includes(m.name)) fail(`${where}: unknown parameter`);
        const name = m.name!;
        return (t, c) => {
          t.r[d] = c.params.get(name) ?? fail(`${e.name}: parameter ${name} not given`);
        };
      }
      const m = memOperand(base === 'ld' ? o[1] : o[0], e, where);
      if (m.reg === undefined) fail(`${where}: address must be a register`);
      const ar = m.reg!,
        off = m.off;
      const mem =
        space === 'global'
          ? (_t: Thread, c: Ctx) => c.global
          : space === 'shared'
            ? (_t: Thread, c: Ctx) => c.shared
            : (t: Thread) => t.local;
      const bias = space === 'global' ? GLOBAL_BASE : 0;
      const addr = (t: Thread, _c: Ctx, dv: DataView) => {
        const raw = t.r[ar];
        const a = Number(raw) + off - bias;
        if (!(a >= 0 && a + size <= dv.byteLength))
          fail(`${e.name}: ${space} access of ${size} bytes at ${Number(raw) + off} is out of bounds (${where})`);
        if (a % size !== 0) fail(`${e.name}: misaligned ${space} access at ${a} (${where})`);
        return a;
      };
      if (base === 'ld') {
        const d = destIndex(o[0], e, where);
        const dty = isF(ty) ? ty : size === 8 ? 's64' : 's32';
        return (t, c) => {
          const dv = mem(t, c);
          t.r[d] = norm(memRead(dv, addr(t, c, dv), ty), dty);
        };
      }
      const v = reader(o[1], isF(ty) ? ty : size === 8 ? 's64' : 's32', e, where);
      return (t, c) => {
        const dv = mem(t, c);
        memWrite(dv, addr(t, c, dv), ty, v(t, c) as Val);
      };
    }
    case 'cvt': {
      need(2);
      const [dst, src] = mods.slice(-2);
      checkType(dst);
      checkType(src);
      const rm = mods.slice(0, -2);
      if (rm.length > 1 || (rm[0] && !['rn', 'rz', 'rm', 'rp', 'rni', 'rzi', 'rmi', 'rpi'].includes(rm[0])))
        fail(`${where}: unsupported cvt modifiers`);
      if (isF(dst) && isF(src) && dst === 'f32' && src === 'f64' && rm[0] !== 'rn')
        fail(`${where}: f64->f32 needs .rn`);
      if (!isF(dst) && isF(src) && !(rm[0] ?? '').endsWith('i'))
        fail(`${where}: float->int needs an integer rounding mode`);
      const d = destIndex(o[0], e, where),
        a = reader(o[1], src, e, where);
      return (t, c) => {
        t.r[d] = convert(a(t, c) as number | bigint, dst, src, rm[0]);
      };
    }
    case 'setp': {
      need(3);
      checkType(ty);
      const cmp = mods[0];
      if (mods.length !== 2) fail(`${where}: unsupported setp`);
      const d = destIndex(o[0], e, where),
        a = reader(o[1], ty, e, where),
        b = reader(o[2], ty, e, where);
      if (cmp === 'nan')
        return (t, c) => {
          t.r[d] = Number.isNaN(a(t, c)) || Number.isNaN(b(t, c));
        };
      if (cmp === 'num')
        return (t, c) => {
          t.r[d] = !Number.isNaN(a(t, c)) && !Number.isNaN(b(t, c));
        };
      const unordered = cmp.length === 3 && cmp.endsWith('u');
      const f = CMPS[unordered ? cmp.slice(0, 2) : cmp] ?? fail(`${where}: unsupported comparison ${cmp}`);
      if (isF(ty)) {
        return (t, c) => {
          const x = a(t, c) as number,
            y = b(t, c) as number;
          t.r[d] = Number.isNaN(x) || Number.isNaN(y) ? unordered : f(x, y);
        };
      }
      if (unordered) fail(`${where}: unordered compare on integers`);
      return (t, c) => {
        t.r[d] = f(a(t, c) as number, b(t, c) as number);
      };
    }
    case 'selp': {
      need(4);
      checkType(ty);
      const d = destIndex(o[0], e, where),
        a = reader(o[1], ty, e, where),
        b = reader(o[2], ty, e, where),
        p = reader(o[3], 'pred', e, where);
      return (t, c) => {
        t.r[d] = norm(p(t, c) ? a(t, c) : b(t, c), ty);
      };
    }
    default:
      break;
  }

  // arithmetic / logic: op[.mods].type d, a, b[, c]
  checkType(ty);
  const d = destIndex(o[0], e, where);
  const srcs = o.slice(1).map((x) => reader(x, ty, e, where));
  const [A, B, C] = srcs;
  const wide = width(ty) === 64;
  const set =
    (fn: (t: Thread, c: Ctx) => number | bigint | boolean): Op =>
    (t, c) => {
      t.r[d] = norm(fn(t, c), ty);
    };
  const arity = (n: number) => need(n + 1);
  const m0 = mods.slice(0, -1).join('.');
  if (isF(ty)) {
    const R = ty === 'f32' ? Math.fround : (x: number) => x;
    const F = (fn: (...x: number[]) => number) => set((t, c) => R(fn(...srcs.map((s) => s(t, c) as number))));
    switch (`${base}${m0 ? `.${m0}` : ''}`) {
      case 'add.rn':
        arity(2);
        return F((a, b) => a + b);
      case 'sub.rn':
        arity(2);
        return F((a, b) => a - b);
      case 'mul.rn':
        arity(2);
        return F((a, b) => a * b);
      case 'div.rn':
        arity(2);
        return F((a, b) => a / b);
      case 'fma.rn':
        arity(3);
        return F((a, b, c) => a * b + c);
      case 'neg':
        arity(1);
        return F((a) => -a);
      case 'abs':
        arity(1);
        return F((a) => Math.abs(a));
      case 'sqrt.rn':
        arity(1);
        return F((a) => Math.sqrt(a));
      case 'min.NaN':
        arity(2);
        if (ty !== 'f32') break;
        return F((a, b) => (Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.min(a, b)));
      case 'max.NaN':
        arity(2);
        if (ty !== 'f32') break;
        return F((a, b) => (Number.isNaN(a) || Number.isNaN(b) ? NaN : Math.max(a, b)));
      case 'min':
        arity(2);
        return F((a, b) => (Number.isNaN(a) ? b : Number.isNaN(b) ? a : Math.min(a, b)));
      case 'max':
        arity(2);
        return F((a, b) => (Number.isNaN(a) ? b : Number.isNaN(b) ? a : Math.max(a, b)));
      case 'copysign':
        arity(2);
        return F((a, b) => (a < 0 || Object.is(a, -0) ? -Math.abs(b) : Math.abs(b)));
      case 'ex2.approx':
        arity(1);
        if (ty !== 'f32') break;
        return F((a) => 2 ** a);
      case 'lg2.approx':
        arity(1);
        if (ty !== 'f32') break;
        return F((a) => Math.log2(a));
      case 'sin.approx':
        arity(1);
        if (ty !== 'f32') break;
        return F((a) => Math.sin(a));
      case 'cos.approx':
        arity(1);
        if (ty !== 'f32') break;
        return F((a) => Math.cos(a));
      default:
        break;
    }
    return fail(`${where}: instruction outside the simulated subset`);
  }
  if (ty === 'pred') {
    const P = (fn: (...x: boolean[]) => boolean) => set((t, c) => fn(...srcs.map((s) => s(t, c) as boolean)));
    switch (opcode) {
      case 'and.pred':
        arity(2);
        return P((a, b) => a && b);
      case 'or.pred':
        arity(2);
        return P((a, b) => a || b);
      case 'xor.pred':
        arity(2);
        return P((a, b) => a !== b);
      case 'not.pred':
        arity(1);
        return P((a) => !a);
      default:
        return fail(`${where}: instruction outside the simulated subset`);
    }
  }
  if (wide) {
    const W = (fn: (...x: bigint[]) => bigint) => set((t, c) => fn(...srcs.map((s) => s(t, c) as bigint)));
    switch (`${base}${m0 ? `.${m0}` : ''}`) {
      case 'add':
        arity(2);
        return W((a, b) => a + b);
      case 'sub':
        arity(2);
        return W((a, b) => a - b);
      case 'mul.lo':
        arity(2);
        return W((a, b) => a * b);
      case 'div':
        arity(2);
        return W((a, b) => (b === 0n ? -1n : a / b));
      case 'rem':
        arity(2);
        return W((a, b) => (b === 0n ? a : a % b));
      // 64-bit registers hold BigInts, which Math.min/max reject
      case 'min':
        arity(2);
        // biome-ignore lint/complexity/useMathMinMax: BigInt operands
        return W((a, b) => (a < b ? a : b));
      case 'max':
        arity(2);
        // biome-ignore lint/complexity/useMathMinMax: BigInt operands
        return W((a, b) => (a > b ? a : b));
      case 'abs':
        arity(1);
        return W((a) => (a < 0n ? -a : a));
      case 'neg':
        arity(1);
        return W((a) => -a);
      case 'and':
        arity(2);
        return W((a, b) => a & b);
      case 'or':
        arity(2);
        return W((a, b) => a | b);
      case 'xor':
        arity(2);
        return W((a, b) => a ^ b);
      case 'not':
        arity(1);
        return W((a) => ~a);
      case 'shl':
      case 'shr': {
        arity(2);
        const amt = reader(o[2], 'u32', e, where);
        const left = base === 'shl';
        return set((t, c) => {
          const a = A(t, c) as bigint,
            n = amt(t, c) as number;
          if (left) return n >= 64 ? 0n : a << BigInt(n);
          return n >= 64 ? (a < 0n ? -1n : 0n) : a >> BigInt(n);
        });
      }
      default:
        return fail(`${where}: instruction outside the simulated subset`);
    }
  }
  // 32-bit integers
  const I = (fn: (...x: number[]) => number) => set((t, c) => fn(...srcs.map((s) => s(t, c) as number)));
  const unsigned = ty === 'u32';
  switch (`${base}${m0 ? `.${m0}` : ''}`) {
    case 'add':
      arity(2);
      return I((a, b) => a + b);
    case 'sub':
      arity(2);
      return I((a, b) => a - b);
    case 'mul.lo':
      arity(2);
      return I((a, b) => Math.imul(a, b));
    case 'mul.wide': {
      arity(2);
      if (ty !== 's32' && ty !== 'u32') break;
      return (t, c) => {
        const p = (A(t, c) as number) * (B(t, c) as number);
        t.r[d] = Number.isSafeInteger(p) ? BigInt(p) : BigInt(A(t, c) as number) * BigInt(B(t, c) as number);
      };
    }
    case 'div':
      arity(2);
      return I((a, b) => (b === 0 ? -1 : unsigned ? Math.floor(a / b) : Math.trunc(a / b)));
    case 'rem':
      arity(2);
      return I((a, b) => (b === 0 ? a : a % b));
    case 'min':
      arity(2);
      return I((a, b) => Math.min(a, b));
    case 'max':
      arity(2);
      return I((a, b) => Math.max(a, b));
    case 'abs':
      arity(1);
      return I((a) => Math.abs(a));
    case 'neg':
      arity(1);
      return I((a) => -a);
    case 'and':
      arity(2);
      return I((a, b) => a & b);
    case 'or':
      arity(2);
      return I((a, b) => a | b);
    case 'xor':
      arity(2);
      return I((a, b) => a ^ b);
    case 'not':
      arity(1);
      return I((a) => ~a);
    case 'shl':
      arity(2);
      return I((a, b) => (b >>> 0 >= 32 ? 0 : a << b));
    case 'shr':
      arity(2);
      {
        const amt = reader(o[2], 'u32', e, where);
        return set((t, c) => {
          const a = A(t, c) as number,
            n = amt(t, c) as number;
          if (ty === 's32') return n >= 32 ? (a < 0 ? -1 : 0) : a >> n;
          return n >= 32 ? 0 : (a >>> 0) >>> n;
        });
      }
    default:
      break;
  }
  void C;
  return fail(`${where}: instruction outside the simulated subset`);
}

export interface LaunchSpec {
  entry: string;
  grid: [number, number, number];
  block: [number, number, number];
  /** Parameter values (global addresses, GLOBAL_BASE-based) by PTX parameter name. */
  params: Map<string, bigint>;
}

export interface SimStats {
  instructions: number;
  threads: number;
}

/** Runs one kernel launch over `global` (the device memory, addressed from GLOBAL_BASE). */
export function launch(prog: PtxProgram, spec: LaunchSpec, global: DataView, maxInstructions = 5e8): SimStats {
  const e = prog.entries.get(spec.entry) ?? fail(`no entry ${spec.entry}`);
  const nregs = e.regs.size;
  const [gx, gy, gz] = spec.grid,
    [bx, by, bz] = spec.block;
  const ctx: Ctx = {
    ctaid: [0, 0, 0],
    ntid: spec.block,
    nctaid: spec.grid,
    global,
    shared: new DataView(new ArrayBuffer(0)),
    params: spec.params,
    steps: 0,
  };
  let executed = 0;
  const code = e.code;
  for (let z = 0; z < gz; z++)
    for (let y = 0; y < gy; y++)
      for (let x = 0; x < gx; x++) {
        ctx.ctaid = [x, y, z];
        ctx.shared = new DataView(new ArrayBuffer(e.sharedBytes));
        const threads: Thread[] = [];
        for (let tz = 0; tz < bz; tz++)
          for (let ty = 0; ty < by; ty++)
            for (let tx = 0; tx < bx; tx++) {
              threads.push({
                r: new Array(nregs).fill(0),
                pc: 0,
                tid: [tx, ty, tz],
                local: new DataView(new ArrayBuffer(e.localBytes)),
              });
            }
        let live = threads;
        while (live.length) {
          const atBarrier: Thread[] = [];
          let exited = 0;
          for (const t of live) {
            for (;;) {
              if (t.pc >= code.length) fail(`${e.name}: ran past the end without ret`);
              const r = code[t.pc++](t, ctx);
              if (++executed > maxInstructions)
                fail(`${e.name}: more than ${maxInstructions} instructions (runaway loop?)`);
              if (r === BAR) {
                atBarrier.push(t);
                break;
              }
              if (r === EXIT) {
                exited++;
                break;
              }
            }
          }
          if (atBarrier.length && exited)
            fail(
              `${e.name}: barrier divergence in block (${x},${y},${z}): ${exited} threads exited while ${atBarrier.length} wait at bar.sync`,
            );
          live = atBarrier;
        }
      }
  return { instructions: executed, threads: gx * gy * gz * bx * by * bz };
}
