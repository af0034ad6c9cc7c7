// Static memory planning: every buffer with a lifetime [start, end] (in kernel-call steps) gets an arena offset,
// buffers whose lifetimes do not overlap share bytes. Greedy best-fit in order of start, largest first on ties.
// Also the layout of each kernel's scratch area (its temporaries), which the plan sizes and every backend addresses.
import { BYTES } from '../runtime/dtype.js';
import { MAX_CHUNKS } from '../runtime/thread-pool.js';
import { type Buffer, type PrimFunc, visitStmt } from '../schedule/loop-ir.js';
import type { BuiltKernel } from './kernel.js';

export interface Lifetime {
  id: number;
  bytes: number;
  start: number;
  end: number;
}
export interface MemoryPlan {
  offsets: Map<number, number>;
  arenaBytes: number;
  totalBytes: number;
}

export const ALIGN = 16;
export const align = (n: number, a = ALIGN) => Math.ceil(n / a) * a;

export function planMemory(items: readonly Lifetime[]): MemoryPlan {
  const sorted = [...items].sort((a, b) => a.start - b.start || b.bytes - a.bytes || a.id - b.id);
  const placed: { off: number; size: number; start: number; end: number }[] = [];
  const offsets = new Map<number, number>();
  let arena = 0;
  for (const it of sorted) {
    const size = align(Math.max(it.bytes, 1));
    const live = placed.filter((p) => p.start <= it.end && it.start <= p.end).sort((a, b) => a.off - b.off);
    // best fit: the smallest gap between live blocks that holds `size`
    let best = -1,
      bestGap = Infinity,
      cursor = 0;
    for (const p of live) {
      const gap = p.off - cursor;
      if (gap >= size && gap < bestGap) {
        best = cursor;
        bestGap = gap;
      }
      cursor = Math.max(cursor, p.off + p.size);
    }
    const off = best >= 0 ? best : cursor;
    placed.push({ off, size, start: it.start, end: it.end });
    offsets.set(it.id, off);
    arena = Math.max(arena, off + size);
  }
  return { offsets, arenaBytes: arena, totalBytes: items.reduce((s, i) => s + align(Math.max(i.bytes, 1)), 0) };
}

export interface TempLayout {
  offsets: Map<Buffer, number>;
  bytes: number;
}

/**
 * Bytes kept unused before the first and after the last buffer in memory, so that a vector load may run past its
 * buffer by this much without trapping: the vectorizer reads a whole row of lanes and masks out-of-range lanes
 * (a padded convolution's border) instead of loading lane by lane. The memory plan reserves it.
 */
export const SPECULATIVE_GUARD_BYTES = 64;

/** Byte offsets of a kernel's global temporaries inside its scratch area (16-byte aligned). */
export function tempLayout(f: PrimFunc): TempLayout {
  const offsets = new Map<Buffer, number>();
  let bytes = 0;
  for (const t of f.temps) {
    offsets.set(t, bytes);
    bytes += align(t.size * BYTES[t.dtype]);
  }
  return { offsets, bytes };
}

/**
 * The scratch area of a kernel on the CPU: its global temporaries, then one private copy per chunk of the 'shared'
 * buffers its schedule allocates (cacheRead / computeAt regions, refilled inside the parallel loop: the thread
 * running a chunk fills its own). `chunkStride` bytes per chunk, one copy per possible chunk.
 */
export function scratchLayout(
  f: PrimFunc,
): TempLayout & { shared: Map<Buffer, number>; sharedAt: number; chunkStride: number } {
  const temps = tempLayout(f);
  const shared = new Map<Buffer, number>();
  let chunkStride = 0;
  visitStmt(f.body, (st) => {
    if (st.k === 'alloc' && st.buf.scope === 'shared' && !shared.has(st.buf)) {
      shared.set(st.buf, chunkStride);
      chunkStride += align(st.buf.size * BYTES[st.buf.dtype]);
    }
  });
  return { ...temps, shared, sharedAt: temps.bytes, chunkStride, bytes: temps.bytes + chunkStride * MAX_CHUNKS };
}

/** Scratch bytes a kernel's calls reserve: its own, or its native variant's where that needs more. */
export function kernelScratchBytes(k: Pick<BuiltKernel, 'prim' | 'native'>): number {
  return Math.max(scratchLayout(k.prim).bytes, k.native ? scratchLayout(k.native.prim).bytes : 0);
}
