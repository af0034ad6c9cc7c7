// kiln onnx-test DIR... : runs ONNX backend test cases through the compiled path, ends with "N passed, N failed".
import { writeFileSync } from 'node:fs';
import { cudaDriver, findCases, runCases } from '../conformance/onnx-backend.js';
import { KilnError } from '../runtime/errors.js';

export async function onnxTestCommand(paths: string[], opts: { verbose?: boolean; json?: string; filter?: string; target?: string }): Promise<number> {
  const target = opts.target ?? 'wasm';
  if (target !== 'wasm' && target !== 'webgpu' && target !== 'cuda') throw new KilnError('E_INPUT', `unknown target '${target}'`, { hint: 'use --target wasm, webgpu or cuda' });
  if (target === 'cuda') await cudaDriver(); // no GPU: one error, not one failure per case
  let cases = findCases(paths);
  if (opts.filter) { const re = new RegExp(opts.filter); cases = cases.filter((c) => re.test(c)); }
  const results = await runCases(cases, (r) => {
    if (opts.verbose || !r.passed) console.log(`${r.passed ? 'PASS' : 'FAIL'} ${r.name}${r.error ? `: ${r.error.split('\n')[0]}` : ''}`);
  }, { target });
  const passed = results.filter((r) => r.passed).length;
  if (opts.json) writeFileSync(opts.json, JSON.stringify(results, null, 1));
  console.log(`${passed} passed, ${results.length - passed} failed`);
  return 0;
}
