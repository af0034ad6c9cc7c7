// kiln onnx-test DIR... : runs ONNX backend test cases through the compiled path, ends with "N passed, N failed".
// --symbolic-dims leading|all: each case through a graph whose inputs' leading (or all) dims are symbolic, bound to
// the data's sizes afterwards; with --run-time-sizes, kept as run-time sizes (range size..2*size+1) and run at the data's.
import { writeFileSync } from 'node:fs';
import { cudaDriver, findCases, runCases } from '../conformance/onnx-backend.js';
import { choiceFlag, usageError } from './usage.js';

export async function onnxTestCommand(
  paths: string[],
  opts: {
    verbose?: boolean;
    json?: string;
    filter?: string;
    target?: string;
    symbolicDims?: string;
    runTimeSizes?: boolean;
  },
): Promise<number> {
  const target = choiceFlag(opts.target, '--target', ['wasm', 'webgpu', 'cuda', 'native'] as const, 'wasm');
  const symbolicDims =
    opts.symbolicDims === undefined
      ? undefined
      : choiceFlag(opts.symbolicDims, '--symbolic-dims', ['leading', 'all'] as const, 'leading');
  if (!paths.length) throw usageError('no test case folder given', 'kiln onnx-test .cache/onnx-node');
  if (opts.runTimeSizes && !symbolicDims)
    throw usageError(
      '--run-time-sizes keeps the dims of --symbolic-dims as run-time sizes: pass both',
      'kiln onnx-test .cache/onnx-node --symbolic-dims leading --run-time-sizes',
    );
  let filter: RegExp | undefined;
  try {
    filter = opts.filter === undefined ? undefined : new RegExp(opts.filter);
  } catch (e) {
    throw usageError(`bad --filter '${opts.filter}': ${(e as Error).message}`);
  }
  if (target === 'cuda') await cudaDriver(); // no GPU: one error, not one failure per case
  let cases = findCases(paths);
  if (filter) cases = cases.filter((c) => filter.test(c));
  const results = await runCases(
    cases,
    (r) => {
      if (opts.verbose || !r.passed)
        console.log(`${r.passed ? 'PASS' : 'FAIL'} ${r.name}${r.error ? `: ${r.error.split('\n')[0]}` : ''}`);
    },
    { target, symbolicDims, runTimeSizes: opts.runTimeSizes },
  );
  const passed = results.filter((r) => r.passed).length;
  if (opts.json) writeFileSync(opts.json, JSON.stringify(results, null, 1));
  console.log(`${passed} passed, ${results.length - passed} failed`);
  return 0;
}
