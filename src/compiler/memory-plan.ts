// Static memory planning: every buffer with a lifetime [start, end] (in kernel-call steps) gets an arena offset,
// buffers whose lifetimes do not overlap share bytes. Greedy best-fit in order of start, largest first on ties.

export interface Lifetime { id: number; bytes: number; start: number; end: number }
export interface MemoryPlan { offsets: Map<number, number>; arenaBytes: number; totalBytes: number }

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
    let best = -1, bestGap = Infinity, cursor = 0;
    for (const p of live) {
      const gap = p.off - cursor;
      if (gap >= size && gap < bestGap) { best = cursor; bestGap = gap; }
      cursor = Math.max(cursor, p.off + p.size);
    }
    const off = best >= 0 ? best : cursor;
    placed.push({ off, size, start: it.start, end: it.end });
    offsets.set(it.id, off);
    arena = Math.max(arena, off + size);
  }
  return { offsets, arenaBytes: arena, totalBytes: items.reduce((s, i) => s + align(Math.max(i.bytes, 1)), 0) };
}
