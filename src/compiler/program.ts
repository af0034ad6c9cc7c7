// A fused main function -> kernels, static memory plan, weights and the call list: everything the runtime
// needs, before serialization.
import { BYTES } from '../runtime/dtype.js';
import { KilnError } from '../runtime/errors.js';
import type { ArtifactHeader, DimExpr, IOBinding, KernelCall, KernelInfo } from '../runtime/artifact-format.js';
import { sizeOf } from '../runtime/tensor.js';
import { type CallNode, type ConstNode, type FuncNode, type GExpr, postOrder } from '../relay-ir/expr.js';
import type { OpSpec } from '../relay-ir/op.js';
import { kernelCalls } from '../relay-ir/passes/fuse-ops.js';
import { type Dim, type TensorType, isStatic } from '../relay-ir/types.js';
import { type DimRanges, dimBounds, dimSymbols, foldDim, substituteDim, withDimRanges } from '../relay-ir/sym-dim.js';
import { type SymbolTable, boundValues, buildDynamicKernel, hasSymbolicDims } from './dynamic-kernel.js';
import { emitWasmModule } from '../codegen/wasm/codegen.js';
import { kernelPhases } from '../schedule/loop-ir.js';
import { type BuiltKernel, type NativeVariant, buildKernel, kernelKey, reschedule } from './kernel.js';
import type { TraceStep } from '../schedule/schedule.js';
import { type Lifetime, SPECULATIVE_GUARD_BYTES, align, kernelScratchBytes, planMemory } from './memory-plan.js';
import { VERSION } from './version.js';

export interface Program {
  header: Omit<ArtifactHeader, 'sections'>;
  wasm: Uint8Array;
  /** The same kernels with f32x4.relaxed_madd (relaxed SIMD). */
  wasmRelaxed?: Uint8Array;
  /** The native shared library (target 'native': compiler/native-program.ts). */
  native?: Uint8Array;
  weights: Uint8Array;
  kernels: BuiltKernel[];
  /** Offset of each weight inside `weights`. */
  weightOffsets: Map<ConstNode, number>;
  /** The symbols of run-time sizes, where the inputs have symbolic dims. */
  symbols?: SymbolTable;
}

export interface ProgramOptions {
  /** Run binaryen's optimizer (off for compile-time constant evaluation). */
  optimize?: boolean;
  /** Output names, in order (defaults to out0, out1, ...). */
  outputNames?: readonly string[];
  /**
   * A schedule to use instead of the default for a kernel (the tuning database's best record, a tuner's
   * candidate); undefined keeps the default. A trace that does not apply is an error.
   */
  traceFor?: (fn: FuncNode, defaultKernel: BuiltKernel) => readonly TraceStep[] | undefined;
  /** Target 'native': each kernel as the native library will run it (BuiltKernel.native). */
  nativeKernel?: (fn: FuncNode, kernel: BuiltKernel) => NativeVariant;
  /** The ranges of the symbolic dims (importAndOptimize's dimRanges): kernels run at any size inside them. */
  dimRanges?: DimRanges;
  /**
   * The symbols as another program has them (the tuner's one-kernel programs: its kernel then reads the symbols'
   * buffer as the model's kernel does); instead of the table found from this program's inputs and dimRanges.
   */
  symbols?: SymbolTable;
}

/** The symbols' values at their bounds (empty for a static program): every layout is the shape at these. */
let bounds: ReadonlyMap<string, number> = new Map();
const boundShape = (t: TensorType): number[] => t.shape.map((d) => substituteDim(d, bounds) as number);
const bytesOf = (t: TensorType) => sizeOf(boundShape(t)) * BYTES[t.dtype];

/**
 * The symbols of a program whose inputs have symbolic dims, each with a finite range, and a check that every dim
 * is largest at the symbols' upper bounds (the memory plan is laid out there).
 */
export function symbolTable(main: FuncNode, ranges: DimRanges = new Map()): SymbolTable | undefined {
  const given = [...new Set(main.params.flatMap((p) => (p.type as TensorType).shape.flatMap(dimSymbols)))].sort();
  // then the sizes counted while the model runs, in the order they are computed
  const names = [...given, ...countedSizes(kernelCalls(main)).keys()];
  if (!names.length) return undefined;
  const unbounded = names.filter((s) => !Number.isFinite(ranges.get(s)?.[1] ?? Number.POSITIVE_INFINITY));
  if (unbounded.length) {
    const api = (v: (s: string) => string) => unbounded.map((s) => `${s}: ${v(s)}`).join(', ');
    throw new KilnError(
      'E_DYNAMIC',
      `the symbolic dims ${unbounded.join(', ')} have no upper bound: kernels for run-time sizes are laid out at the bounds`,
      {
        hint: `give each a range for run-time sizes, kiln compile ${unbounded.map((s) => `--dim ${s}=LO..HI`).join(' ')} (API: dims: { ${api(() => '[LO, HI]')} }), or fix them: ${unbounded.map((s) => `--dim ${s}=N`).join(' ')} (API: dims: { ${api(() => 'N')} })`,
      },
    );
  }
  const table = { names, ranges };
  const at = boundValues(table);
  withDimRanges(ranges, () => {
    for (const n of postOrder(main.body)) {
      if (n.kind !== 'call' && n.kind !== 'var') continue;
      const t = n.type as TensorType;
      if (t.kind !== 'tensor') continue;
      for (const d of t.shape) {
        if (typeof d === 'number') continue;
        const extra = dimSymbols(d).filter((s) => !names.includes(s));
        if (extra.length)
          throw new KilnError('E_DYNAMIC', `a size depends on ${extra.join(', ')}, which no input gives (${d})`, {
            hint: 'sizes that depend on values (NonZero, Unique, ...) are not supported at run time yet',
          });
        if (substituteDim(d, at) !== dimBounds(d)[1])
          throw new KilnError('E_DYNAMIC', `the dim ${d} is not largest at the symbols' upper bounds`, {
            hint: 'fix the dims it depends on (--dim NAME=N)',
          });
      }
    }
  });
  return table;
}

/**
 * The calls that count a size while the model runs (value_dim: tensor-expr/ops/counted.ts), by the symbol each
 * writes into the symbols region.
 */
export function countedSizes(calls: readonly CallNode[]): Map<string, CallNode> {
  const out = new Map<string, CallNode>();
  for (const c of calls) {
    const body = (c.op as FuncNode).body;
    if (body.kind === 'call' && (body.op as OpSpec).name === 'value_dim') out.set(String(body.attrs.symbol), c);
  }
  return out;
}

/** A counted size's bound as the user declared it (range_K), from its value_dim call: SymbolInfo.declared. */
function declaredBound(call: CallNode): { declared: [number, number] } | undefined {
  const d = ((call.op as FuncNode).body as CallNode).attrs.declared;
  return Array.isArray(d) ? { declared: [Number(d[0]), Number(d[1])] } : undefined;
}

/**
 * The kernel calls in an order that runs each after its arguments and after the calls counting the sizes its type
 * names (a tensor of a counted size need not read the count: a Range over it).
 */
export function callOrder(main: FuncNode): (CallNode & { op: FuncNode })[] {
  const calls = kernelCalls(main);
  const counted = countedSizes(calls);
  if (!counted.size) return calls;
  const order: (CallNode & { op: FuncNode })[] = [];
  const done = new Set<GExpr>();
  const isCall = new Set<GExpr>(calls);
  const visit = (root: CallNode & { op: FuncNode }) => {
    const stack: { c: CallNode & { op: FuncNode }; deps?: (CallNode & { op: FuncNode })[] }[] = [{ c: root }];
    const open = new Set<GExpr>();
    while (stack.length) {
      const top = stack[stack.length - 1];
      if (done.has(top.c)) {
        stack.pop();
        continue;
      }
      open.add(top.c);
      top.deps ??= [
        ...top.c.args.filter((a): a is CallNode & { op: FuncNode } => isCall.has(a)),
        ...(top.c.type as TensorType).shape
          .flatMap(dimSymbols)
          .flatMap((s) => (counted.has(s) ? [counted.get(s) as CallNode & { op: FuncNode }] : [])),
      ];
      const next = top.deps.find((d) => !done.has(d));
      if (next && open.has(next))
        throw new KilnError('E_INTERNAL', 'program: a counted size depends on itself', {
          hint: 'please report this with the model',
        });
      if (next) stack.push({ c: next });
      else {
        done.add(top.c);
        order.push(top.c);
        stack.pop();
      }
    }
  };
  for (const c of calls) visit(c);
  return order;
}

/** A dim as the runtime's expression tree. */
const dimExprOf = (d: Dim): DimExpr =>
  foldDim<DimExpr>(d, {
    num: (n) => n,
    symbol: (s) => s,
    add: (a, b) => ['+', a, b],
    mul: (a, b) => ['*', a, b],
    floorDiv: (a, b) => ['floordiv', a, b],
    min: (a, b) => ['min', a, b],
    max: (a, b) => ['max', a, b],
  });

/**
 * Bytes one WebAssembly memory can hold on wasm32: 65536 pages of 64 KiB, 4 GiB. V8 (Node 20, Chrome) takes no
 * larger maximum ("value 65537 is above the upper bound 65536"), and the runtime allocates the whole plan up front.
 */
export const WASM32_MAX_BYTES = 65536 * 65536;

const GiB = (n: number) => `${(n / 2 ** 30).toFixed(2)} GiB`;

/** E_SHAPE when `bytes` of WebAssembly memory is more than wasm32 can address; `parts` says what makes it up. */
function checkAddressable(bytes: number, parts: string, exact: boolean): void {
  if (bytes <= WASM32_MAX_BYTES) return;
  throw new KilnError(
    'E_SHAPE',
    `the model needs ${exact ? '' : 'at least '}${bytes} bytes (${GiB(bytes)}) of WebAssembly memory (${parts}); wasm32 addresses at most ${WASM32_MAX_BYTES} bytes (4 GiB, 65536 pages of 64 KiB)`,
    {
      hint: 'compile for smaller input shapes (inputShapes / kiln compile --input-shape) or a smaller batch',
    },
  );
}

/** The concat calls of a fused main function that WebAssembly programs do by placement (no kernel runs them). */
export function placedConcatCalls(main: FuncNode): Set<CallNode> {
  return new Set(placedConcats(kernelCalls(main), mainOutputs(main)).keys());
}

const mainOutputs = (main: FuncNode): GExpr[] => (main.body.kind === 'tuple' ? [...main.body.fields] : [main.body]);

/**
 * Concatenations done by buffer placement. A kernel that only concatenates call results along an axis with
 * nothing but 1s before it (channels of a batch-1 NCHW tensor) reads each input as one contiguous slice of its
 * output: its producers write straight into those slices and the copy is dropped. Each input must be a distinct
 * call's result that is no graph output and feeds no other placed concat. Returns each placed concat's inputs
 * with their byte offsets in its output.
 */
function placedConcats(
  calls: readonly CallNode[],
  outputs: readonly GExpr[],
): Map<CallNode, { part: CallNode; at: number }[]> {
  const placed = new Map<CallNode, { part: CallNode; at: number }[]>();
  const taken = new Set<GExpr>(),
    isCall = new Set<GExpr>(calls);
  for (const c of calls) {
    const fn = c.op as FuncNode,
      body = fn.body;
    if (
      body.kind !== 'call' ||
      (body.op as OpSpec).name !== 'concat' ||
      body.args.length !== fn.params.length ||
      body.args.some((a, i) => a !== fn.params[i])
    )
      continue;
    if (!isStatic(c.type)) continue; // (parts at the bounds' offsets would not be where run-time sizes put them)
    const shape = c.type.shape as number[];
    const axis = (Number(body.attrs.axis) + shape.length) % shape.length;
    if (shape.slice(0, axis).some((d) => d !== 1)) continue;
    const parts = c.args.filter((a): a is CallNode => a.kind === 'call' && isCall.has(a));
    if (
      parts.length !== c.args.length ||
      new Set(parts).size !== parts.length ||
      parts.some((p) => outputs.includes(p) || taken.has(p) || placed.has(p))
    )
      continue;
    let at = 0;
    placed.set(
      c,
      parts.map((part) => {
        const r = { part, at };
        at += bytesOf(part.type);
        return r;
      }),
    );
    for (const p of parts) taken.add(p);
  }
  return placed;
}

export function buildProgram(main: FuncNode, opts: ProgramOptions = {}): Program {
  const symbols = opts.symbols ?? symbolTable(main, opts.dimRanges);
  const outer = bounds;
  bounds = symbols ? boundValues(symbols) : new Map();
  try {
    return buildProgramAtBounds(main, opts, symbols);
  } finally {
    bounds = outer;
  }
}

function buildProgramAtBounds(main: FuncNode, opts: ProgramOptions, symbols: SymbolTable | undefined): Program {
  const outputs = mainOutputs(main);
  const calls = callOrder(main);
  // a call counting a size writes it straight into the symbols region
  const counted = countedSizes(calls);
  const countedAt = new Map<GExpr, number>([...counted].map(([s, c]) => [c, symbols!.names.indexOf(s)]));
  if (
    outputs.some(
      (o, i) => o.kind === 'var' || (o.kind === 'call' && !calls.includes(o as never)) || outputs.indexOf(o) !== i,
    )
  ) {
    throw new KilnError('E_INTERNAL', 'program: the graph must be fused, with one distinct buffer per output');
  }

  // weights: every constant a kernel reads or an output names
  const weightOff = new Map<ConstNode, number>();
  let weightBytes = 0;
  const addWeight = (c: ConstNode) => {
    if (weightOff.has(c)) return;
    weightOff.set(c, weightBytes);
    weightBytes = align(weightBytes + Math.max(c.value.data.byteLength, 1));
  };
  for (const c of calls) for (const a of c.args) if (a.kind === 'const') addWeight(a);
  for (const o of outputs) if (o.kind === 'const') addWeight(o);

  // Before building any kernel: what must be in memory at once whatever the plan (weights, inputs, and the largest
  // call's arguments and result) already too large for wasm32 fails here, without allocating or building anything.
  const paramBytes = main.params.reduce((n, p) => n + align(bytesOf(p.type)), 0);
  let largestCall = 0;
  const concats = placedConcats(calls, outputs);
  for (const c of calls) {
    // a placed concat's parts lie inside its buffer
    const live = new Set<GExpr>([c, ...(concats.has(c) ? [] : c.args.filter((a) => a.kind === 'call'))]);
    largestCall = Math.max(
      largestCall,
      [...live].reduce((n, e) => n + align(bytesOf(e.type as TensorType)), 0),
    );
  }
  checkAddressable(
    SPECULATIVE_GUARD_BYTES * 2 + weightBytes + paramBytes + largestCall,
    `weights ${weightBytes} bytes, inputs ${paramBytes} bytes, the largest kernel call's arguments and result ${largestCall} bytes`,
    false,
  );
  const weights = new Uint8Array(weightBytes);
  for (const [c, off] of weightOff)
    weights.set(new Uint8Array(c.value.data.buffer, c.value.data.byteOffset, c.value.data.byteLength), off);

  // kernels, deduplicated by their loop-IR text (none for a placed concat)
  const kernels: BuiltKernel[] = [];
  const kernelOf = new Map<string, number>();
  const callKernel = calls.map((c) => {
    if (concats.has(c)) return -1;
    let k =
      symbols && hasSymbolicDims(c.op)
        ? buildDynamicKernel(c.op, `k${kernels.length}`, symbols)
        : buildKernel(c.op, `k${kernels.length}`);
    const trace = opts.traceFor?.(c.op, k);
    // (the default's tensor expressions under the tuned schedule: for a kernel for run-time sizes, those the three
    // builds found)
    if (trace) k = { ...reschedule(k, trace), tuned: true };
    if (opts.nativeKernel) k.native = opts.nativeKernel(c.op, k);
    return addKernel(k);
  });
  function addKernel(k: BuiltKernel): number {
    const key = kernelKey(k.prim);
    let idx = kernelOf.get(key);
    if (idx === undefined) {
      idx = kernels.length;
      kernels.push(k);
      kernelOf.set(key, idx);
    }
    return idx;
  }

  // lifetimes: inputs live throughout, outputs until the end, each call's scratch during that call only
  const FOREVER = calls.length + 1;
  const items: Lifetime[] = [];
  const idOf = new Map<GExpr, number>();
  const lastUse = new Map<GExpr, number>();
  calls.forEach((c, i) => c.args.forEach((a) => lastUse.set(a, i)));
  main.params.forEach((p) => {
    idOf.set(p, items.length);
    items.push({ id: items.length, bytes: bytesOf(p.type), start: -1, end: FOREVER });
  });
  // the symbols' values, written by run()
  const symbolsId = items.length;
  if (symbols) items.push({ id: symbolsId, bytes: 4 * symbols.names.length, start: -1, end: FOREVER });
  const scratchId: number[] = [];
  // a placed concat's buffer lives from its first part's call to the last use of it or of any part
  const partOf = new Map<GExpr, { whole: CallNode; at: number }>();
  for (const [whole, parts] of concats) for (const { part, at } of parts) partOf.set(part, { whole, at });
  const callIndex = new Map<GExpr, number>(calls.map((c, i) => [c, i]));
  const endOf = (c: CallNode, i: number) => (outputs.includes(c) ? FOREVER : (lastUse.get(c) ?? i));
  calls.forEach((c, i) => {
    if (!partOf.has(c) && !countedAt.has(c)) {
      const parts = concats.get(c)?.map((p) => p.part) ?? [];
      const start = Math.min(i, ...parts.map((p) => callIndex.get(p)!));
      idOf.set(c, items.length);
      items.push({
        id: items.length,
        bytes: bytesOf(c.type),
        start,
        end: Math.max(endOf(c, i), ...parts.map((p) => endOf(p, i))),
      });
    }
    if (callKernel[i] < 0) {
      scratchId.push(-1);
      return;
    }
    const sb = kernelScratchBytes(kernels[callKernel[i]]);
    scratchId.push(sb ? items.length : -1);
    if (sb) items.push({ id: items.length, bytes: sb, start: i, end: i });
  });
  const plan = planMemory(items);
  const weightsAt = SPECULATIVE_GUARD_BYTES; // address 0 stays unused, and vector loads may overrun a little
  const arenaAt = align(weightsAt + weightBytes);
  checkAddressable(
    arenaAt + plan.arenaBytes + SPECULATIVE_GUARD_BYTES,
    `weights ${weightBytes} bytes, the memory plan's arena ${plan.arenaBytes} bytes`,
    true,
  );
  const addr = (e: GExpr): number => {
    if (e.kind === 'const') return weightsAt + weightOff.get(e)!;
    const part = partOf.get(e);
    if (part) return addr(part.whole) + part.at;
    const slot = countedAt.get(e);
    if (slot !== undefined) return arenaAt + plan.offsets.get(symbolsId)! + 4 * slot;
    const id = idOf.get(e);
    if (id === undefined) throw new KilnError('E_INTERNAL', `program: value without a buffer (${e.kind})`);
    return arenaAt + plan.offsets.get(id)!;
  };

  const callList: KernelCall[] = calls.flatMap((c, i) =>
    callKernel[i] < 0
      ? []
      : [
          {
            kernel: callKernel[i],
            args: [
              ...c.args.map(addr),
              // (the symbols are the last input of a kernel for run-time sizes)
              ...(kernels[callKernel[i]].runSizes ? [arenaAt + plan.offsets.get(symbolsId)!] : []),
              addr(c),
              ...(scratchId[i] >= 0 ? [arenaAt + plan.offsets.get(scratchId[i])!] : []),
            ],
            origin: [...new Set(c.origin)],
          },
        ],
  );
  const binding = (e: GExpr, name: string): IOBinding => {
    const t = e.type as TensorType;
    const b: IOBinding = { name, dtype: t.dtype, shape: boundShape(t), offset: addr(e) };
    if (!isStatic(t)) b.dims = [...t.shape];
    return b;
  };
  const inputs = main.params.map((p) => binding(p, p.name));
  const outputBindings = outputs.map((o, i) => binding(o, opts.outputNames?.[i] ?? `out${i}`));
  const dimTexts = [...inputs, ...outputBindings].flatMap((b) => b.dims ?? []).filter((d) => typeof d === 'string');
  const kernelInfo: KernelInfo[] = kernels.map((k) => ({
    name: k.prim.name,
    ops: k.ops,
    flops: k.flops,
    bytes: k.bytes,
    phases: kernelPhases(k.prim),
  }));
  const scratchParams = kernels.map((k) => kernelScratchBytes(k) > 0);
  const wasm = emitWasmModule(
    kernels.map((k) => k.prim),
    { optimize: opts.optimize, scratchParams },
  );
  // a relaxed-SIMD variant for engines that have it (the runtime picks it at load); not for compile-time folding
  const wasmRelaxed =
    opts.optimize === false
      ? undefined
      : emitWasmModule(
          kernels.map((k) => k.prim),
          { relaxed: true, scratchParams },
        );
  const intermediateBytes = items.reduce((s, it, i) => s + (i >= main.params.length ? align(it.bytes) : 0), 0);
  return {
    header: {
      kiln: VERSION,
      target: 'wasm',
      memoryBytes: arenaAt + plan.arenaBytes + SPECULATIVE_GUARD_BYTES,
      weightsAt,
      inputs,
      outputs: outputBindings,
      ...(symbols && {
        symbols: symbols.names.map((name) => ({
          name,
          min: symbols.ranges.get(name)![0],
          max: symbols.ranges.get(name)![1],
          ...(counted.has(name) && { counted: true }),
          ...(counted.has(name) && declaredBound(counted.get(name)!)),
        })),
        symbolsAt: arenaAt + plan.offsets.get(symbolsId)!,
        dimExprs: Object.fromEntries(dimTexts.map((d) => [d, dimExprOf(d)])),
      }),
      kernels: kernelInfo,
      calls: callList,
      plan: { arenaBytes: plan.arenaBytes, intermediateBytes, weightBytes },
    },
    wasm,
    wasmRelaxed,
    weights,
    kernels,
    weightOffsets: weightOff,
    ...(symbols && { symbols }),
  };
}
