// kiln profile ARTIFACT.kiln [--runs N] [--trace trace.json] [--input name=file ...] [--top N]
// Per-kernel times (key_averages-style table) and a Chrome trace for Perfetto / chrome://tracing.
import { load } from '../index.js';
import { KilnError } from '../runtime/errors.js';
import type { Tensor } from '../runtime/tensor.js';
import { aggregateProfile, chromeTrace, formatProfileTable, profileModel } from '../profiler/profile.js';
import { randomInput, readArtifactFile, threadOption } from './run.js';
import { readTensorFile, writeFileAtomic } from './tensor-files.js';

function positiveInt(s: string | undefined, flag: string, dflt: number): number {
  if (s === undefined) return dflt;
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1) throw new KilnError('E_INPUT', `bad ${flag} '${s}'`, { hint: `give a positive integer, e.g. ${flag} ${dflt}` });
  return n;
}

export async function profileCommand(pos: string[], v: { input?: string[]; runs?: string; trace?: string; top?: string; threads?: string }): Promise<number> {
  const model = await load(readArtifactFile(pos[0]), threadOption(v.threads));
  const runs = positiveInt(v.runs, '--runs', 10);
  const top = v.top === undefined ? undefined : positiveInt(v.top, '--top', 20);
  const feeds: Record<string, Tensor> = {};
  for (const s of v.input ?? []) {
    const eq = s.indexOf('=');
    if (eq <= 0) throw new KilnError('E_INPUT', `bad --input '${s}'`, { hint: 'write name=file.npy or name=file.pb' });
    feeds[s.slice(0, eq)] = readTensorFile(s.slice(eq + 1));
  }
  for (const i of model.inputs) {
    if (!feeds[i.name]) { feeds[i.name] = randomInput(i); console.log(`input ${i.name}: random ${i.dtype}[${i.shape}] (no file given)`); }
  }
  const profiled = profileModel(model, feeds, { runs, warmup: 1 });
  const report = aggregateProfile(model.header, profiled);
  console.log(formatProfileTable(report, { top }));
  if (v.trace) {
    writeFileAtomic(v.trace, new TextEncoder().encode(JSON.stringify(chromeTrace(model.header, profiled))));
    console.log(`trace: ${v.trace} (${profiled.length} runs, ${profiled.reduce((a, r) => a + r.timings.length, 0)} kernel events; open in https://ui.perfetto.dev or chrome://tracing)`);
  }
  model.dispose();
  return 0;
}
