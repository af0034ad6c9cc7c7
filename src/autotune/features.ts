// Loop-IR features of a scheduled kernel for the cost model: how much work runs in SIMD lanes, memory traffic,
// register-tile size, unrolled code size, loop overhead, guards, and the access pattern of the innermost loop; on
// GPU schedules also the threads per workgroup/block and the number of them, and shared-memory traffic and size
// (all 0 on the CPU).
import type { Expr, Var } from '../tensor-expr/expr.js';
import { mentions, visitExpr } from '../tensor-expr/expr.js';
import { type Buffer, type PrimFunc, type Stmt, childStmts } from '../schedule/loop-ir.js';

export const FEATURE_NAMES = [
  'log_work',
  'vector_frac',
  'log_global_loads',
  'log_global_stores',
  'log_local_tile',
  'log_code_size',
  'depth',
  'log_guards',
  'log_inner_extent',
  'log_loop_iters',
  'inner_invariant_frac',
  'inner_unit_stride_frac',
  'unrolled_frac',
  'log_reuse',
  'log_gpu_threads',
  'log_gpu_blocks',
  'log_shared_loads',
  'log_shared_bytes',
] as const;

const lg = (x: number) => Math.log2(1 + x);

/** Stride of `e` in `v` when e is affine in v with a constant coefficient (0 when independent); NaN otherwise. */
function stride(e: Expr, v: Var): number {
  if (!mentions(e, v)) return 0;
  switch (e.k) {
    case 'var':
      return e === v ? 1 : 0;
    case 'bin':
      if (e.op === 'add') return stride(e.a, v) + stride(e.b, v);
      if (e.op === 'sub') return stride(e.a, v) - stride(e.b, v);
      if (e.op === 'mul') {
        if (e.b.k === 'const') return stride(e.a, v) * Number(e.b.value);
        if (e.a.k === 'const') return stride(e.b, v) * Number(e.a.value);
      }
      return NaN;
    default:
      return NaN;
  }
}

export function loopFeatures(f: PrimFunc): number[] {
  let work = 0,
    vecWork = 0,
    gLoads = 0,
    gStores = 0,
    tile = 0,
    code = 0,
    depth = 0,
    guards = 0;
  let loopIters = 0,
    unrolledWork = 0;
  let innerExtW = 0,
    invW = 0,
    unitW = 0,
    accW = 0,
    reuse = 0,
    thrW = 0,
    blkW = 0,
    sLoads = 0,
    sBytes = 0;
  type Loop = { v: Var; extent: number; kind: string };
  const walk = (s: Stmt, trips: number, copies: number, loops: Loop[]): void => {
    switch (s.k) {
      case 'for': {
        loopIters += trips * s.extent;
        const unrolled = s.kind === 'unrolled' || s.kind === 'vectorized';
        walk(s.body, trips * s.extent, copies * (unrolled ? s.extent : 1), [
          ...loops,
          { v: s.v, extent: s.extent, kind: s.kind },
        ]);
        return;
      }
      case 'seq':
      case 'if':
      case 'decl':
      case 'alloc':
      case 'barrier':
        if (s.k === 'if') guards += trips;
        if (s.k === 'alloc' && s.buf.scope === 'shared') sBytes += s.buf.size * 4;
        else if (s.k === 'alloc') tile = Math.max(tile, s.buf.size);
        for (const c of childStmts(s)) walk(c, trips, copies, loops);
        return;
      case 'store':
      case 'assign': {
        depth = Math.max(depth, loops.length);
        code += copies;
        work += trips;
        const vec = loops.some((l) => l.kind === 'vectorized');
        if (vec) vecWork += trips;
        if (loops.some((l) => l.kind === 'unrolled')) unrolledWork += trips;
        const loads: { buf: Buffer; idx: Expr }[] = [];
        visitExpr(s.value, (e) => {
          if (e.k !== 'load') return;
          const scope = (e.buf as Buffer).scope;
          if (scope === 'shared') sLoads += trips;
          else if (scope !== 'local') loads.push({ buf: e.buf as Buffer, idx: e.idx[0] });
        });
        const bound = (tag: string) => loops.filter((l) => l.kind.startsWith(tag)).reduce((n, l) => n * l.extent, 1);
        thrW += trips * Math.log2(bound('threadIdx'));
        blkW += trips * Math.log2(bound('blockIdx'));
        const lanes = vec ? 4 : 1;
        gLoads += (trips * loads.length) / lanes;
        if (s.k === 'store' && s.buf.scope === 'global') gStores += trips / lanes;
        // innermost non-lane loop: access pattern of the loads under it
        const inner =
          [...loops].reverse().find((l) => l.kind !== 'vectorized' && l.kind !== 'unrolled') ?? loops[loops.length - 1];
        if (inner) {
          innerExtW += trips * Math.log2(1 + inner.extent);
          accW += trips;
          for (const ld of loads) {
            const st = stride(ld.idx, inner.v);
            if (st === 0) invW += trips / loads.length;
            else if (Math.abs(st) === 1) unitW += trips / loads.length;
          }
          // values reused across the unrolled/vectorized tile under the inner loop
          const tileLoops = loops.slice(loops.indexOf(inner) + 1);
          const tileSize = tileLoops.reduce((n, l) => n * l.extent, 1);
          reuse += trips * Math.log2(1 + tileSize);
        }
        return;
      }
    }
  };
  walk(f.body, 1, 1, []);
  const w = Math.max(accW, 1);
  return [
    lg(work),
    vecWork / Math.max(work, 1),
    lg(gLoads),
    lg(gStores),
    lg(tile),
    lg(code),
    depth,
    lg(guards),
    innerExtW / w,
    lg(loopIters),
    invW / w,
    unitW / w,
    unrolledWork / Math.max(work, 1),
    reuse / w,
    thrW / Math.max(work, 1),
    blkW / Math.max(work, 1),
    lg(sLoads),
    lg(sBytes),
  ];
}
