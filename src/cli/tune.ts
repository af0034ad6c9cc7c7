// kiln tune MODEL.onnx [--target wasm] [--trials N] [--time-budget 20m] [--workers 2] [--db PATH] [--seed S]
//   [--strategy evolutionary|random] [--curve FILE.csv]
// kiln db export FILE [--db PATH] | kiln db import FILE [--db PATH] | kiln db stats [--db PATH]
import { writeFileSync } from 'node:fs';
import { KilnError } from '../runtime/errors.js';
import { DEFAULT_DB_PATH, TuningDatabase } from '../autotune/database.js';
import { type TuneProgress, parseDuration, tune } from '../autotune/tuner.js';
import { type CompileFlags, compileOptions, readModel } from './compile.js';

export interface TuneFlags extends CompileFlags {
  target?: string; trials?: string; 'time-budget'?: string; workers?: string; db?: string; seed?: string; strategy?: string; curve?: string;
}

const int = (s: string | undefined, def: number, what: string): number => {
  if (s === undefined) return def;
  const n = Number(s);
  if (!Number.isInteger(n) || n < 0) throw new KilnError('E_INPUT', `bad --${what} '${s}'`, { hint: 'give a non-negative integer' });
  return n;
};
const fmtTime = (ms: number) => (ms >= 60_000 ? `${Math.floor(ms / 60_000)}m${String(Math.round((ms % 60_000) / 1000)).padStart(2, '0')}s` : `${(ms / 1000).toFixed(0)}s`);

export function progressLine(p: TuneProgress): string {
  const t = p.task;
  const speed = t.defaultMs && t.bestMs ? ` (${(t.defaultMs / t.bestMs).toFixed(2)}x)` : '';
  return `trials ${p.trials}/${p.totalTrials} | task ${t.index} ${t.ops.join('+').slice(0, 32)} ×${t.calls}: default ${t.defaultMs?.toFixed(3)} ms, best ${t.bestMs?.toFixed(3)} ms${speed}` +
    ` | model ${p.defaultTotalMs.toFixed(2)} -> ${p.bestTotalMs.toFixed(2)} ms | errors ${p.errors} | ETA ${fmtTime(p.etaMs)}`;
}

export async function tuneCommand(pos: string[], v: TuneFlags): Promise<number> {
  const modelPath = pos[0];
  if ((v.target ?? 'wasm') !== 'wasm') throw new KilnError('E_UNSUPPORTED', `tuning target '${v.target}' is not available yet`, { hint: 'use --target wasm' });
  const strategy = v.strategy ?? 'evolutionary';
  if (strategy !== 'evolutionary' && strategy !== 'random') throw new KilnError('E_INPUT', `bad --strategy '${strategy}'`, { hint: 'evolutionary or random' });
  const bytes = readModel(modelPath);
  const { inputShapes, specialize } = compileOptions(modelPath, v);
  const tty = process.stderr.isTTY;
  const report = await tune(bytes, {
    trials: int(v.trials, 64, 'trials'),
    timeBudgetMs: v['time-budget'] !== undefined ? parseDuration(v['time-budget']) : undefined,
    workers: int(v.workers, 2, 'workers'),
    db: v.db ?? DEFAULT_DB_PATH,
    seed: int(v.seed, 0, 'seed'),
    strategy,
    compile: { inputShapes, specialize, modelPath },
    progress: (p) => process.stderr.write(tty ? `\r\x1b[2K${progressLine(p)}` : `${progressLine(p)}\n`),
  });
  if (tty) process.stderr.write('\n');
  console.log(`tuned ${modelPath} on ${report.target.key} (${report.target.engine}): ${report.trials} trials, ${report.errors} errors, ${(report.elapsedMs / 1000).toFixed(1)} s`);
  for (const t of report.tasks) {
    const what = `  task ${t.index} ${t.ops.join('+')} ×${t.calls}`;
    if (t.skipped) { console.log(`${what}: skipped (${t.skipped})`); continue; }
    const sp = t.defaultMs && t.bestMs ? `${(t.defaultMs / t.bestMs).toFixed(2)}x` : '-';
    console.log(`${what}: default ${t.defaultMs?.toFixed(3)} ms, best ${t.bestMs?.toFixed(3)} ms (${sp}), ${t.trials} trials, ${t.errors} errors${t.resumed ? `, ${t.resumed} records resumed` : ''}`);
  }
  console.log(`  estimated kernel time per run: ${report.defaultTotalMs.toFixed(3)} ms default -> ${report.bestTotalMs.toFixed(3)} ms tuned`);
  console.log(`  records in ${v.db ?? DEFAULT_DB_PATH}; \`kiln compile\` applies them`);
  if (v.curve) {
    writeFileSync(v.curve, 'trial,elapsed_ms,best_total_ms\n' + report.curve.map((c) => `${c.trial},${c.elapsedMs.toFixed(1)},${c.bestTotalMs.toFixed(4)}`).join('\n') + '\n');
    console.log(`  tuning curve: ${v.curve}`);
  }
  return 0;
}

export async function dbCommand(pos: string[], v: { db?: string }): Promise<number> {
  const [sub, file] = pos;
  const path = v.db ?? DEFAULT_DB_PATH;
  if (sub === 'export' || sub === 'import') {
    if (!file) throw new KilnError('E_INPUT', `kiln db ${sub}: no file given`, { hint: `kiln db ${sub} FILE.jsonl [--db PATH]` });
  } else if (sub !== 'stats') {
    throw new KilnError('E_INPUT', `kiln db: unknown subcommand '${sub ?? ''}'`, { hint: 'kiln db export FILE | kiln db import FILE | kiln db stats' });
  }
  const db = TuningDatabase.open(path);
  try {
    if (sub === 'export') console.log(`exported ${db.exportFile(file)} records from ${path} to ${file}`);
    else if (sub === 'import') { const r = db.importFile(file); console.log(`imported ${r.added} records into ${path} (${r.skipped} already there)`); }
    else { const c = db.counts(); console.log(`${path}: ${c.workloads} workloads, ${c.targets} targets, ${c.records} records (${c.errors} errors)`); }
  } finally {
    db.close();
  }
  return 0;
}
