// kiln compile MODEL.onnx -o OUT.kiln
import { readFileSync } from 'node:fs';
import { compile } from '../compiler/compile.js';
import { KilnError } from '../runtime/errors.js';
import { parseNamedShape, readTensorFile, writeFileAtomic } from './tensor-files.js';

export interface CompileFlags { output?: string; 'input-shape'?: string[]; specialize?: string[]; 'no-optimize'?: boolean; verbose?: boolean }

export function readModel(path: string | undefined): Uint8Array {
  if (!path) throw new KilnError('E_INPUT', 'no model file given', { hint: 'kiln compile MODEL.onnx -o OUT.kiln' });
  try { return readFileSync(path); } catch (e) { throw new KilnError('E_IO', `cannot read '${path}': ${(e as Error).message}`); }
}

export function compileOptions(modelPath: string, v: CompileFlags) {
  return {
    modelPath,
    inputShapes: Object.fromEntries((v['input-shape'] ?? []).map(parseNamedShape)),
    specialize: Object.fromEntries((v.specialize ?? []).map((s) => {
      const eq = s.indexOf('=');
      if (eq <= 0) throw new KilnError('E_INPUT', `bad --specialize '${s}'`, { hint: 'write name=file.npy' });
      return [s.slice(0, eq), readTensorFile(s.slice(eq + 1))];
    })),
    optimize: !v['no-optimize'],
  };
}

export async function compileCommand(pos: string[], v: CompileFlags): Promise<number> {
  const modelPath = pos[0];
  const bytes = readModel(modelPath);
  const out = v.output ?? modelPath.replace(/\.onnx$/, '') + '.kiln';
  const t0 = performance.now();
  const r = await compile(bytes, compileOptions(modelPath, v));
  writeFileAtomic(out, r.artifact);
  const h = r.header;
  const mb = (n: number) => `${(n / 1048576).toFixed(2)} MiB`;
  console.log(`compiled ${modelPath} (opset ${r.opset}) -> ${out} in ${((performance.now() - t0) / 1000).toFixed(2)} s`);
  console.log(`  ${h.kernels.length} kernels, ${h.calls.length} calls; artifact ${mb(r.artifact.length)} (wasm ${mb(h.sections.wasm.length)}, weights ${mb(h.sections.weights.length)})`);
  console.log(`  memory: arena ${mb(h.plan.arenaBytes)} for ${mb(h.plan.intermediateBytes)} of intermediates; total ${mb(h.memoryBytes)}`);
  if (r.specialized.length) console.log(`  baked-in inputs: ${r.specialized.join(', ')}`);
  for (const i of h.inputs) console.log(`  input  ${i.name}: ${i.dtype}[${i.shape}]`);
  for (const o of h.outputs) console.log(`  output ${o.name}: ${o.dtype}[${o.shape}]`);
  return 0;
}
