// Small statistics shared by the tuner, the benchmarks and the CLI (compiler side: the runtime has no use for them).

/** The median: the middle value, or the mean of the two middle values for an even count; NaN when empty. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return NaN;
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}
