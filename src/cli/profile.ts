// kiln profile ARTIFACT.kiln [--runs N] [--trace trace.json] [--input name=file ...] [--top N] [--target wasm|native]
// Per-kernel times (key_averages-style table) and a Chrome trace for Perfetto / chrome://tracing.
import { load } from '../index.js';
import type { Tensor } from '../runtime/tensor.js';
import { aggregateProfile, chromeTrace, formatProfileTable, profileModel } from '../profiler/profile.js';
import { randomInput, readArtifactFile, threadOption } from './run.js';
import { readTensorFile, writeFileAtomic } from './tensor-files.js';
import { choiceFlag, intFlag, namedValue } from './usage.js';

export async function profileCommand(
  pos: string[],
  v: { input?: string[]; runs?: string; trace?: string; top?: string; threads?: string; target?: string },
): Promise<number> {
  // the command line is checked before any work
  const threads = threadOption(v.threads);
  const target = choiceFlag(v.target, '--target', ['wasm', 'native'] as const, 'wasm');
  const runs = intFlag(v.runs, '--runs', 10);
  const top = v.top === undefined ? undefined : intFlag(v.top, '--top', 20);
  const inputs = (v.input ?? []).map((s) => namedValue(s, '--input', 'name=file.npy'));
  const artifact = readArtifactFile(pos[0]);
  const feeds: Record<string, Tensor> = {};
  for (const [name, file] of inputs) feeds[name] = readTensorFile(file);
  const model = await load(artifact, { ...threads, target });
  if (target === 'native' && model.runsOn !== 'native')
    console.log(`native code does not run here (${model.nativeFallback}): profiling the WebAssembly`);
  for (const i of model.inputs) {
    if (!feeds[i.name]) {
      feeds[i.name] = randomInput(i);
      console.log(`input ${i.name}: random ${i.dtype}[${i.shape}] (no file given)`);
    }
  }
  const profiled = profileModel(model, feeds, { runs, warmup: 1 });
  const report = aggregateProfile(model.header, profiled);
  console.log(formatProfileTable(report, { top }));
  if (v.trace) {
    writeFileAtomic(v.trace, new TextEncoder().encode(JSON.stringify(chromeTrace(model.header, profiled))));
    console.log(
      `trace: ${v.trace} (${profiled.length} runs, ${profiled.reduce((a, r) => a + r.timings.length, 0)} kernel events; open in https://ui.perfetto.dev or chrome://tracing)`,
    );
  }
  model.dispose();
  return 0;
}
