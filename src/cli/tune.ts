// kiln tune MODEL.onnx [--target wasm|webgpu|cuda|native [--sm 80] [--build-only] [--cpu LEVEL]] [--trials N] [--time-budget 20m]
//   [--workers 2] [--db PATH] [--seed S] [--strategy evolutionary|random|compare] [--curve FILE.csv]
//   [--dim NAME=LO..HI | --dim NAME=N] [--input-shape NAME=D,D,..] [--specialize NAME=FILE]
//   (the curve also as FILE.svg). --build-only (cuda): ptxas resource checks recorded, nothing measured.
//   --cpu (native): the x86-64 level compiled for, as `kiln compile --cpu` (default x86-64-v3).
//   --dim with a range tunes the kernels for run-time sizes of `kiln compile --dim` with the same ranges (wasm).
// kiln db export FILE [--db PATH] | kiln db import FILE [--db PATH] | kiln db stats [--db PATH]
import { writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import { KilnError } from '../runtime/errors.js';
import { DEFAULT_DB_PATH, TuningDatabase } from '../autotune/database.js';
import { type TuneProgress, type TuneReport, type TuneTarget, parseDuration, tune } from '../autotune/tuner.js';
import { ChildNativeRunner, LocalBuilder, PoolBuilder, PoolRunner } from '../autotune/measure.js';
import { type CurveSeries, curveCsv, curveSvg, svgPathFor } from '../autotune/plot.js';
import { type CompileFlags, compileOptions, cpuFlag, cudaSm, readModel, webgpuLimitsFlag } from './compile.js';
import { choiceFlag, intFlag, usageError } from './usage.js';

export interface TuneFlags extends CompileFlags {
  target?: string;
  'build-only'?: boolean;
  trials?: string;
  'time-budget'?: string;
  workers?: string;
  db?: string;
  seed?: string;
  strategy?: string;
  curve?: string;
}

const int = (s: string | undefined, def: number, what: string): number => intFlag(s, `--${what}`, def, 0);
const fmtTime = (ms: number) =>
  ms >= 60_000
    ? `${Math.floor(ms / 60_000)}m${String(Math.round((ms % 60_000) / 1000)).padStart(2, '0')}s`
    : `${(ms / 1000).toFixed(0)}s`;

export function progressLine(p: TuneProgress): string {
  const t = p.task;
  if (t.defaultMs === undefined)
    return `trials ${p.trials}/${p.totalTrials} | task ${t.index} ${t.ops.join('+').slice(0, 32)} ×${t.calls}: built ${t.trials}, rejected ${t.errors} | ETA ${fmtTime(p.etaMs)}`;
  const speed = t.defaultMs && t.bestMs ? ` (${(t.defaultMs / t.bestMs).toFixed(2)}x)` : '';
  return (
    `trials ${p.trials}/${p.totalTrials} | task ${t.index} ${t.ops.join('+').slice(0, 32)} ×${t.calls}: default ${t.defaultMs?.toFixed(3)} ms, best ${t.bestMs?.toFixed(3)} ms${speed}` +
    ` | model ${p.defaultTotalMs.toFixed(2)} -> ${p.bestTotalMs.toFixed(2)} ms | errors ${p.errors} | ETA ${fmtTime(p.etaMs)}`
  );
}

/** Best so far of every task (the one just measured marked with *), for the progress display. */
export function taskLines(p: TuneProgress, max = 12): string[] {
  const tasks = p.tasks ?? [p.task];
  const shown = [...tasks].sort((a, b) => b.calls * (b.bestMs ?? 0) - a.calls * (a.bestMs ?? 0)).slice(0, max);
  const lines = shown.map((t) => {
    const sp = t.defaultMs && t.bestMs ? `${(t.defaultMs / t.bestMs).toFixed(2)}x` : '-';
    return (
      `${t.index === p.task.index ? '*' : ' '} task ${String(t.index).padStart(3)} ${t.ops.join('+').slice(0, 28).padEnd(28)} ×${t.calls}  ` +
      `${t.defaultMs?.toFixed(3) ?? '-'} -> ${t.bestMs?.toFixed(3) ?? '-'} ms (${sp})  ${t.trials} trials${t.errors ? `, ${t.errors} errors` : ''}`
    );
  });
  if (tasks.length > shown.length) lines.push(`  ... ${tasks.length - shown.length} more tasks`);
  return lines;
}

/** Progress on stderr: on a terminal a block (summary + best so far per task) redrawn in place; else one line per batch. */
function progressWriter(prefix: string): { write: (p: TuneProgress) => void } {
  const tty = process.stderr.isTTY;
  let drawn = 0;
  return {
    write: (p) => {
      if (!tty) {
        process.stderr.write(`${prefix}${progressLine(p)}\n`);
        return;
      }
      const cols = Math.max(40, (process.stderr.columns ?? 120) - 1);
      const lines = [`${prefix}${progressLine(p)}`, ...taskLines(p)].map((l) => l.slice(0, cols));
      process.stderr.write((drawn ? `\x1b[${drawn}F` : '') + lines.map((l) => `\x1b[2K${l}\n`).join(''));
      drawn = lines.length;
    },
  };
}

function printReport(label: string, modelPath: string, report: TuneReport, buildOnly = false): void {
  console.log(
    `${label}tuned ${modelPath} on ${report.target.key} (${report.target.engine}): ${report.trials} trials, ${report.errors} errors, ${(report.elapsedMs / 1000).toFixed(1)} s`,
  );
  if (report.sizes)
    console.log(
      `  kernels for run-time sizes measured at ${report.sizes
        .map(
          (z) =>
            `${Object.entries(z.values)
              .map(([s, v]) => `${s}=${v}`)
              .join(' ')} (${z.label}, weight ${z.weight.toFixed(2)})`,
        )
        .join(', ')}; times in ms at the upper bounds`,
    );
  for (const t of report.tasks) {
    const what = `  task ${t.index} ${t.ops.join('+')} ×${t.calls}`;
    if (t.skipped) {
      console.log(`${what}: skipped (${t.skipped})`);
      continue;
    }
    if (buildOnly) {
      console.log(
        `${what}: default passed the resource checks; ${t.trials - t.errors} of ${t.trials} candidates passed, ${t.errors} rejected`,
      );
      continue;
    }
    const sp = t.defaultMs && t.bestMs ? `${(t.defaultMs / t.bestMs).toFixed(2)}x` : '-';
    console.log(
      `${what}: default ${t.defaultMs?.toFixed(3)} ms, best ${t.bestMs?.toFixed(3)} ms (${sp}), ${t.trials} trials, ${t.errors} errors${t.confirms ? `, ${t.confirmed ?? 0} of ${t.confirms} re-measured side by side confirmed` : ''}${t.revoked ? `, ${t.revoked} revoked (no faster than the default at the end)` : ''}${t.resumed ? `, ${t.resumed} records resumed` : ''}`,
    );
  }
  if (!buildOnly)
    console.log(
      `  estimated kernel time per run: ${report.defaultTotalMs.toFixed(3)} ms default -> ${report.bestTotalMs.toFixed(3)} ms tuned`,
    );
}

/** The --dim flags again, for the line saying which compile applies the records (ranges are in their keys). */
const dimFlags = (dims: string[] | undefined): string => (dims ?? []).map((d) => ` --dim ${d}`).join('');

/** --time-budget: 90s, 20m, 1h (a bad one is a usage error). */
function durationFlag(s: string): number {
  try {
    const ms = parseDuration(s);
    if (!(ms > 0))
      throw usageError(`bad --time-budget '${s}': expected a positive duration`, 'write e.g. 90s, 20m, 1h');
    return ms;
  } catch (e) {
    if (e instanceof KilnError && e.code === 'E_INPUT')
      throw usageError(`bad --time-budget '${s}'`, 'write e.g. 90s, 20m, 1h');
    throw e;
  }
}

export async function tuneCommand(pos: string[], v: TuneFlags): Promise<number> {
  const modelPath = pos[0];
  const target: TuneTarget = choiceFlag(v.target, '--target', ['wasm', 'webgpu', 'cuda', 'native'] as const, 'wasm');
  if (v['build-only'] && target !== 'cuda')
    throw usageError('--build-only applies to --target cuda', 'leave it out, or tune with --target cuda');
  if (v.cpu !== undefined && target !== 'native')
    throw usageError('--cpu applies to --target native', 'leave it out, or tune with --target native');
  const sm = target === 'cuda' ? cudaSm(v.sm) : undefined;
  const cpu = target === 'native' ? cpuFlag(v.cpu) : undefined;
  const buildOnly = !!v['build-only'];
  const strategy = choiceFlag(v.strategy, '--strategy', ['evolutionary', 'random', 'compare'] as const, 'evolutionary');
  const budget = v['time-budget'] !== undefined ? durationFlag(v['time-budget']) : undefined;
  const trials = int(v.trials, 64, 'trials'),
    workers = int(v.workers, 2, 'workers'),
    seed = int(v.seed, 0, 'seed');
  const { webgpuLimits } = webgpuLimitsFlag(v['webgpu-limits'], target);
  const { inputShapes, dims, specialize } = compileOptions(modelPath, {
    ...v,
    target: undefined,
    cpu: undefined,
    'webgpu-limits': undefined,
  });
  const bytes = readModel(modelPath);
  const dbPath = v.db ?? DEFAULT_DB_PATH;
  const common = {
    target,
    sm,
    cpu,
    buildOnly,
    trials,
    workers,
    seed,
    compile: { inputShapes, dims, specialize, modelPath, webgpuLimits },
  };
  const series: CurveSeries[] = [];
  if (strategy !== 'compare') {
    const pw = progressWriter('');
    const report = await tune(bytes, { ...common, strategy, db: dbPath, timeBudgetMs: budget, progress: pw.write });
    printReport('', modelPath, report, buildOnly);
    series.push({ name: strategy, points: report.curve });
  } else {
    // Both searches from scratch on the same tasks, seed and trial budget (each gets half of --time-budget), each
    // in its own in-memory database so neither resumes from the other's (or older) records; their records are
    // merged into --db afterwards.
    // One builder pool and one runner for both runs: the second does not start on warmer pools than the first.
    const workers = common.workers;
    const builder = workers > 0 ? new PoolBuilder(workers) : new LocalBuilder();
    // (a GPU target's runner is the process's device; native, its measuring process)
    const runner = target === 'wasm' ? new PoolRunner() : target === 'native' ? new ChildNativeRunner() : undefined;
    const db = TuningDatabase.open(dbPath);
    try {
      for (const s of ['random', 'evolutionary'] as const) {
        const mem = TuningDatabase.open(':memory:');
        let report: TuneReport;
        try {
          const pw = progressWriter(`[${s}] `);
          report = await tune(bytes, {
            ...common,
            strategy: s,
            db: mem,
            builder,
            runner,
            timeBudgetMs: budget !== undefined ? budget / 2 : undefined,
            progress: pw.write,
          });
          db.importLines(mem.exportLines(), `${s} run`);
        } finally {
          mem.close();
        }
        printReport(`[${s}] `, modelPath, report);
        series.push({ name: s, points: report.curve });
      }
    } finally {
      db.close();
      await builder.close();
      await runner?.close();
    }
    const [r, g] = series.map((s) => s.points[s.points.length - 1]?.bestTotalMs);
    if (r !== undefined && g !== undefined)
      console.log(
        `  compare: random ${r.toFixed(3)} ms, evolutionary ${g.toFixed(3)} ms after ${common.trials} trials each (${(r / g).toFixed(2)}x)`,
      );
  }
  console.log(
    `  records in ${dbPath}; ${buildOnly ? 'build-only records (no latencies) are not applied by `kiln compile`' : `\`kiln compile${target === 'wasm' ? '' : ` --target ${target}`}${cpu ? ` --cpu ${cpu}` : ''}${dimFlags(v.dim)}\` applies them`}`,
  );
  if (v.curve) {
    writeFileSync(v.curve, curveCsv(series));
    const svg = svgPathFor(v.curve);
    writeFileSync(
      svg,
      curveSvg(series, { title: `Tuning curve of ${basename(modelPath)}: best kernel time vs trials` }),
    );
    console.log(`  tuning curve: ${v.curve}, ${svg}`);
  }
  return 0;
}

export async function dbCommand(pos: string[], v: { db?: string }): Promise<number> {
  const [sub, file] = pos;
  const path = v.db ?? DEFAULT_DB_PATH;
  if (sub === 'export' || sub === 'import') {
    if (!file) throw usageError(`kiln db ${sub}: no file given`, `kiln db ${sub} FILE.jsonl [--db PATH]`);
  } else if (sub !== 'stats') {
    throw usageError(
      `kiln db: unknown subcommand '${sub ?? ''}'`,
      'kiln db export FILE | kiln db import FILE | kiln db stats',
    );
  } else if (file !== undefined) {
    throw usageError(`kiln db stats: unexpected argument '${file}'`);
  }
  const db = TuningDatabase.open(path);
  try {
    if (sub === 'export') console.log(`exported ${db.exportFile(file)} records from ${path} to ${file}`);
    else if (sub === 'import') {
      const r = db.importFile(file);
      console.log(`imported ${r.added} records into ${path} (${r.skipped} already there)`);
    } else {
      const c = db.counts();
      console.log(`${path}: ${c.workloads} workloads, ${c.targets} targets, ${c.records} records (${c.errors} errors)`);
    }
  } finally {
    db.close();
  }
  return 0;
}
