// Per-kernel profiling of a loaded model: runs it with the executor's per-call timings, aggregates them into a
// key_averages-style table (one row per kernel, sorted by total time) and a Chrome trace (Perfetto,
// chrome://tracing). Uses only the runtime's API, so it works on any LoadedModel.
import type { LoadedModel, KernelTiming } from '../runtime/index.js';
import type { ArtifactHeader } from '../runtime/artifact-format.js';
import type { Tensor } from '../runtime/tensor.js';

/** One profiled run: when it started (performance.now() ms), its wall time, and its kernel calls in order. */
export interface ProfiledRun {
  startMs: number;
  wallMs: number;
  timings: KernelTiming[];
}

export interface ProfileRow {
  kernel: number;
  name: string;
  /** Graph-level operators fused into the kernel. */
  ops: string[];
  /** ONNX nodes computed by the kernel's calls (all calls, de-duplicated, in call order). */
  nodes: string[];
  /** Calls per run. */
  callsPerRun: number;
  /** Calls over all profiled runs. */
  calls: number;
  /** Sum over all runs, ms. */
  totalMs: number;
  /** Mean time per call, ms. */
  avgMs: number;
  /** Share of the summed kernel time, percent (rows sum to 100). */
  percent: number;
  /** Achieved GFLOP/s (header flops x calls / time); undefined when the kernel counts no flops. */
  gflops?: number;
  /** Bytes read and written per run (header bytes x calls per run). */
  bytesPerRun: number;
  /** Achieved GB/s over this kernel's time. */
  gbps?: number;
}

export interface ProfileReport {
  runs: number;
  rows: ProfileRow[];
  /** Summed kernel time per run, ms (mean). */
  kernelMsPerRun: number;
  /** Wall time per run, ms (mean), including input copy-in, output copy-out and call overhead. */
  wallMsPerRun: number;
  /** Floating-point operations per run (from the header). */
  flopsPerRun: number;
}

/** Runs the model `runs` times (after `warmup` untimed runs) recording per-kernel timings. */
export function profileModel(
  model: LoadedModel,
  feeds: Record<string, Tensor>,
  opts: { runs?: number; warmup?: number } = {},
): ProfiledRun[] {
  const runs = opts.runs ?? 10;
  for (let i = 0; i < (opts.warmup ?? 1); i++) model.runSync(feeds);
  const out: ProfiledRun[] = [];
  for (let r = 0; r < runs; r++) {
    const timings: KernelTiming[] = [];
    const startMs = performance.now();
    model.runSync(feeds, timings);
    out.push({ startMs, wallMs: performance.now() - startMs, timings });
  }
  return out;
}

/** Aggregates profiled runs into one row per kernel, sorted by total time (descending). */
export function aggregateProfile(header: ArtifactHeader, runs: ProfiledRun[]): ProfileReport {
  const n = Math.max(1, runs.length);
  const rows = new Map<number, ProfileRow>();
  const row = (k: number): ProfileRow => {
    let r = rows.get(k);
    if (!r) {
      const info = header.kernels[k];
      r = {
        kernel: k,
        name: info.name,
        ops: [...info.ops],
        nodes: [],
        callsPerRun: 0,
        calls: 0,
        totalMs: 0,
        avgMs: 0,
        percent: 0,
        bytesPerRun: 0,
      };
      rows.set(k, r);
    }
    return r;
  };
  for (const c of header.calls) {
    const r = row(c.kernel);
    r.callsPerRun++;
    for (const o of c.origin) if (!r.nodes.includes(o)) r.nodes.push(o);
  }
  let kernelMs = 0,
    wallMs = 0;
  for (const run of runs) {
    wallMs += run.wallMs;
    for (const t of run.timings) {
      const r = row(t.kernel);
      r.calls++;
      r.totalMs += t.ms;
      kernelMs += t.ms;
    }
  }
  let flopsPerRun = 0;
  for (const r of rows.values()) {
    const info = header.kernels[r.kernel];
    r.avgMs = r.calls ? r.totalMs / r.calls : 0;
    r.percent = kernelMs > 0 ? (100 * r.totalMs) / kernelMs : 0;
    r.bytesPerRun = info.bytes * r.callsPerRun;
    flopsPerRun += info.flops * r.callsPerRun;
    if (r.totalMs > 0 && info.flops > 0) r.gflops = (info.flops * r.calls) / (r.totalMs * 1e6);
    if (r.totalMs > 0 && info.bytes > 0) r.gbps = (info.bytes * r.calls) / (r.totalMs * 1e6);
  }
  return {
    runs: runs.length,
    rows: [...rows.values()].sort((a, b) => b.totalMs - a.totalMs || a.kernel - b.kernel),
    kernelMsPerRun: kernelMs / n,
    wallMsPerRun: wallMs / n,
    flopsPerRun,
  };
}

const clip = (s: string, w: number) => (s.length <= w ? s : `${s.slice(0, w - 1)}…`);
function nodesCell(nodes: string[], w: number): string {
  if (nodes.length <= 1) return clip(nodes[0] ?? '', w);
  const more = ` +${nodes.length - 1}`;
  return `${clip(nodes[0], w - more.length)}${more}`;
}
export function formatBytes(b: number): string {
  if (b >= 1 << 30) return `${(b / 2 ** 30).toFixed(2)} GiB`;
  if (b >= 1 << 20) return `${(b / 2 ** 20).toFixed(2)} MiB`;
  if (b >= 1 << 10) return `${(b / 2 ** 10).toFixed(1)} KiB`;
  return `${b} B`;
}

/** A fixed-width text table in the style of torch.profiler's key_averages().table(). */
export function formatProfileTable(rep: ProfileReport, opts: { top?: number } = {}): string {
  const rows = opts.top ? rep.rows.slice(0, opts.top) : rep.rows;
  const head = ['Kernel', 'Ops', 'ONNX nodes', 'Calls', 'Total ms', 'Avg ms', '% run', 'GFLOP/s', 'Bytes/run'];
  const body = rows.map((r) => [
    r.name,
    clip(r.ops.join('+'), 28),
    nodesCell(r.nodes, 36),
    String(r.calls),
    r.totalMs.toFixed(3),
    r.avgMs.toFixed(4),
    r.percent.toFixed(2),
    r.gflops === undefined ? '-' : r.gflops.toFixed(2),
    formatBytes(r.bytesPerRun),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const left = new Set([0, 1, 2]);
  const line = (cells: string[]) =>
    cells.map((c, i) => (left.has(i) ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  const gflops = rep.kernelMsPerRun > 0 ? (rep.flopsPerRun / (rep.kernelMsPerRun * 1e6)).toFixed(2) : '-';
  return [
    rule,
    line(head),
    rule,
    ...body.map(line),
    rule,
    `${rep.runs} runs; per run: kernels ${rep.kernelMsPerRun.toFixed(3)} ms, wall ${rep.wallMsPerRun.toFixed(3)} ms ` +
      `(overhead ${(rep.wallMsPerRun - rep.kernelMsPerRun).toFixed(3)} ms), ${(rep.flopsPerRun / 1e9).toFixed(3)} GFLOP -> ${gflops} GFLOP/s` +
      (rows.length < rep.rows.length ? `; top ${rows.length} of ${rep.rows.length} kernels shown` : ''),
  ].join('\n');
}

export interface TraceEvent {
  name: string;
  cat: string;
  ph: 'X' | 'M';
  ts: number;
  dur?: number;
  pid: number;
  tid: number;
  args?: Record<string, unknown>;
}

/**
 * Chrome trace-event JSON ({ traceEvents }): one complete ('X') event per run and one per kernel call, in
 * microseconds. The executor records durations only, so calls are laid end to end from the run's start (the
 * small JS gaps between calls are not shown; the run event's duration is the true wall time).
 */
export function chromeTrace(
  header: ArtifactHeader,
  runs: ProfiledRun[],
): { traceEvents: TraceEvent[]; displayTimeUnit: 'ms' } {
  const pid = 1,
    tid = 1;
  const t0 = runs.length ? runs[0].startMs : 0;
  const us = (ms: number) => Math.round((ms - t0) * 1000 * 1000) / 1000;
  const events: TraceEvent[] = [
    { name: 'process_name', cat: '__metadata', ph: 'M', ts: 0, pid, tid, args: { name: 'kiln' } },
    { name: 'thread_name', cat: '__metadata', ph: 'M', ts: 0, pid, tid, args: { name: 'main' } },
  ];
  runs.forEach((run, r) => {
    events.push({
      name: `run ${r}`,
      cat: 'run',
      ph: 'X',
      ts: us(run.startMs),
      dur: Math.round(run.wallMs * 1e6) / 1e3,
      pid,
      tid,
      args: { run: r },
    });
    let at = run.startMs;
    for (const t of run.timings) {
      const k = header.kernels[t.kernel];
      const call = header.calls[t.call];
      events.push({
        name: k.name,
        cat: 'kernel',
        ph: 'X',
        ts: us(at),
        dur: Math.round(t.ms * 1e6) / 1e3,
        pid,
        tid,
        args: { call: t.call, ops: k.ops.join('+'), nodes: call?.origin ?? [], flops: k.flops, bytes: k.bytes },
      });
      at += t.ms;
    }
  });
  return { traceEvents: events, displayTimeUnit: 'ms' };
}
