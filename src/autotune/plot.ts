// Tuning curves as CSV and as a hand-written SVG plot (best estimated model kernel time vs trials), one series per
// search strategy, so random search and the guided search can be compared on one chart. No dependencies.
import type { TuneReport } from './tuner.js';

export interface CurveSeries {
  name: string;
  points: readonly TuneReport['curve'][number][];
}

/** CSV with one row per (strategy, trial): strategy,trial,elapsed_ms,best_total_ms. */
export function curveCsv(series: readonly CurveSeries[]): string {
  const rows = ['strategy,trial,elapsed_ms,best_total_ms'];
  for (const s of series)
    for (const c of s.points) rows.push(`${s.name},${c.trial},${c.elapsedMs.toFixed(1)},${c.bestTotalMs.toFixed(4)}`);
  return `${rows.join('\n')}\n`;
}

/** The SVG file next to a CSV: out.csv -> out.svg (any other name gets .svg appended). */
export function svgPathFor(csvPath: string): string {
  return /\.csv$/i.test(csvPath) ? csvPath.replace(/\.csv$/i, '.svg') : `${csvPath}.svg`;
}

/** Round numbers for axis ticks: about `n` steps of 1, 2 or 5 x 10^k covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, n = 5): number[] {
  if (!(hi > lo)) {
    const d = Math.abs(lo) * 0.1 || 1;
    lo -= d;
    hi += d;
  }
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toFixed(12)));
  return out;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const fmt = (v: number) =>
  Math.abs(v) >= 100
    ? v.toFixed(0)
    : Math.abs(v) >= 10
      ? v.toFixed(1)
      : Math.abs(v) >= 1
        ? v.toFixed(2)
        : v.toPrecision(2);
const COLORS = ['#d62728', '#1f77b4', '#2ca02c', '#9467bd', '#ff7f0e'];

/** Step plot of best-so-far latency vs trials; y axis from the best value (with a margin) up to the start. */
export function curveSvg(
  series: readonly CurveSeries[],
  opts: { title?: string; width?: number; height?: number } = {},
): string {
  const W = opts.width ?? 720,
    H = opts.height ?? 420;
  const m = { l: 70, r: 20, t: 40, b: 50 };
  const pw = W - m.l - m.r,
    ph = H - m.t - m.b;
  const pts = series.flatMap((s) => s.points);
  const maxTrial = Math.max(1, ...pts.map((p) => p.trial));
  const ys = pts.map((p) => p.bestTotalMs).filter(Number.isFinite);
  let yLo = ys.length ? Math.min(...ys) : 0,
    yHi = ys.length ? Math.max(...ys) : 1;
  const pad = (yHi - yLo) * 0.08 || Math.abs(yHi) * 0.05 || 1;
  yLo = Math.max(0, yLo - pad);
  yHi += pad;
  const xt = niceTicks(0, maxTrial, 8).filter((v) => v >= 0 && v <= maxTrial && Number.isInteger(v));
  // the y range snapped outwards to whole tick steps, so both ends carry a labelled tick
  const step0 = niceTicks(yLo, yHi, 6);
  const ystep = step0.length > 1 ? step0[1] - step0[0] : 1;
  yLo = Math.max(0, Math.floor(yLo / ystep + 1e-9) * ystep);
  yHi = Math.ceil(yHi / ystep - 1e-9) * ystep;
  if (!(yHi > yLo)) yHi = yLo + ystep;
  const yt = niceTicks(yLo, yHi, 6).filter((v) => v >= yLo - 1e-9 && v <= yHi + 1e-9);
  const ydec = Math.max(0, -Math.floor(Math.log10((yt[1] ?? yt[0] + 1) - yt[0]) + 1e-9));
  const X = (t: number) => m.l + (t / maxTrial) * pw;
  const Y = (v: number) => m.t + (1 - (v - yLo) / (yHi - yLo)) * ph;
  const o: string[] = [];
  o.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
  );
  o.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="white"/>`);
  o.push(
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${esc(opts.title ?? 'Tuning curve: best estimated kernel time vs trials')}</text>`,
  );
  for (const v of yt) {
    const y = Y(v).toFixed(1);
    o.push(`<line x1="${m.l}" y1="${y}" x2="${m.l + pw}" y2="${y}" stroke="#e5e5e5"/>`);
    o.push(`<line x1="${m.l - 5}" y1="${y}" x2="${m.l}" y2="${y}" stroke="black"/>`);
    o.push(`<text x="${m.l - 8}" y="${y}" text-anchor="end" dominant-baseline="middle">${v.toFixed(ydec)}</text>`);
  }
  for (const v of xt) {
    const x = X(v).toFixed(1);
    o.push(`<line x1="${x}" y1="${m.t}" x2="${x}" y2="${m.t + ph}" stroke="#f0f0f0"/>`);
    o.push(`<line x1="${x}" y1="${m.t + ph}" x2="${x}" y2="${m.t + ph + 5}" stroke="black"/>`);
    o.push(`<text x="${x}" y="${m.t + ph + 18}" text-anchor="middle">${v}</text>`);
  }
  o.push(`<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="none" stroke="black"/>`);
  o.push(`<text x="${m.l + pw / 2}" y="${H - 12}" text-anchor="middle">trials</text>`);
  o.push(
    `<text transform="translate(18 ${m.t + ph / 2}) rotate(-90)" text-anchor="middle">best kernel time per run (ms)</text>`,
  );
  series.forEach((s, i) => {
    const c = COLORS[i % COLORS.length];
    const p = s.points.filter((q) => Number.isFinite(q.bestTotalMs));
    if (!p.length) return;
    let d = `M${X(p[0].trial).toFixed(1)},${Y(p[0].bestTotalMs).toFixed(1)}`;
    for (let k = 1; k < p.length; k++) d += ` H${X(p[k].trial).toFixed(1)} V${Y(p[k].bestTotalMs).toFixed(1)}`;
    o.push(`<path d="${d}" fill="none" stroke="${c}" stroke-width="2"/>`);
    const last = p[p.length - 1];
    o.push(`<circle cx="${X(last.trial).toFixed(1)}" cy="${Y(last.bestTotalMs).toFixed(1)}" r="3" fill="${c}"/>`);
  });
  // legend, top right inside the plot
  const lw = 210,
    lh = 8 + 18 * series.length;
  const lx = m.l + pw - lw - 8,
    ly = m.t + 8;
  o.push(`<rect x="${lx}" y="${ly}" width="${lw}" height="${lh}" fill="white" fill-opacity="0.9" stroke="#999"/>`);
  series.forEach((s, i) => {
    const y = ly + 14 + 18 * i;
    const last = s.points[s.points.length - 1];
    o.push(
      `<line x1="${lx + 8}" y1="${y}" x2="${lx + 32}" y2="${y}" stroke="${COLORS[i % COLORS.length]}" stroke-width="2"/>`,
    );
    o.push(
      `<text x="${lx + 38}" y="${y}" dominant-baseline="middle">${esc(s.name)}${last ? ` (${fmt(last.bestTotalMs)} ms)` : ''}</text>`,
    );
  });
  o.push('</svg>');
  return `${o.join('\n')}\n`;
}
