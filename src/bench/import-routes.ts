// The PyTorch import routes against the ONNX one: a model of scripts/gen_pytorch_models.py's ONNX_TWINS has, in
// .cache/pytorch/<name>/, its torch.export archive (model.pt2) and torch.onnx.export of the same seeded module
// (model.onnx). Kiln compiles both, checks that they agree with each other and with PyTorch's output, and times them
// alternately in this process at 1 thread: the same kernels are expected, so the ratio should be near 1.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { compile } from '../compiler/compile.js';
import { load } from '../index.js';
import type { Tensor } from '../runtime/tensor.js';
import { readNpy } from '../cli/tensor-files.js';
import { DEFAULT_TOLERANCE, compareTensors } from '../conformance/compare.js';
import { median } from '../util/stats.js';

export const ROUTE_MODELS = ['resnet18', 'efficientnet_b0'];

export interface RouteResult {
  model: string;
  /** Kernels and calls of each build (the same counts are expected). */
  pt2: { kernels: number; calls: number; medianMs?: number; compileMs: number };
  onnx: { kernels: number; calls: number; medianMs?: number; compileMs: number };
  /** Median over rounds of (ONNX time / .pt2 time) within the round; >1: the .pt2 build is faster. */
  onnxOverPt2?: number;
  rounds: number;
  /** undefined when both builds agree with each other and with PyTorch's output (rtol 1e-3 / atol 1e-4). */
  mismatch?: string;
  error?: string;
}

export const routeFixture = (name: string) => join('.cache', 'pytorch', name);
export const hasRouteFixture = (name: string) =>
  ['model.pt2', 'model.onnx', 'input_0.npy', 'output_0.npy'].every((f) => existsSync(join(routeFixture(name), f)));

export async function benchImportRoutes(name: string, runs: number, budgetS: number): Promise<RouteResult> {
  const dir = routeFixture(name);
  const build = async (file: string) => {
    const t0 = performance.now();
    const r = await compile(readFileSync(join(dir, file)));
    const compileMs = performance.now() - t0;
    return { model: await load(r.artifact, { threads: 1, simd: 'baseline' }), compileMs };
  };
  const pt2 = await build('model.pt2');
  const onnx = await build('model.onnx');
  try {
    const input = readNpy(readFileSync(join(dir, 'input_0.npy')), 'input_0');
    const feeds = (m: typeof pt2.model): Record<string, Tensor> => ({ [m.inputs[0].name]: input });
    const out = (m: typeof pt2.model) => m.runSync(feeds(m))[m.outputs[0].name];
    const want = readNpy(readFileSync(join(dir, 'output_0.npy')), 'output_0');
    const a = out(pt2.model),
      b = out(onnx.model);
    const mismatch =
      compareTensors(a, want, DEFAULT_TOLERANCE)?.message ??
      compareTensors(b, want, DEFAULT_TOLERANCE)?.message ??
      compareTensors(a, b, DEFAULT_TOLERANCE)?.message;
    const times = { pt2: [] as number[], onnx: [] as number[] };
    const end = performance.now() + budgetS * 1000;
    let rounds = 0;
    for (let r = 0; r < runs && (r < 3 || performance.now() < end); r++, rounds++) {
      for (const route of r % 2 ? (['onnx', 'pt2'] as const) : (['pt2', 'onnx'] as const)) {
        const m = route === 'pt2' ? pt2.model : onnx.model;
        const t0 = performance.now();
        m.runSync(feeds(m));
        times[route].push(performance.now() - t0);
      }
    }
    const counts = (m: typeof pt2.model) => ({ kernels: m.header.kernels.length, calls: m.header.calls.length });
    return {
      model: name,
      pt2: { ...counts(pt2.model), medianMs: median(times.pt2), compileMs: pt2.compileMs },
      onnx: { ...counts(onnx.model), medianMs: median(times.onnx), compileMs: onnx.compileMs },
      onnxOverPt2: median(times.onnx.map((t, r) => t / times.pt2[r])),
      rounds,
      mismatch,
    };
  } finally {
    pt2.model.dispose();
    onnx.model.dispose();
  }
}

export function routesTable(results: readonly RouteResult[]): string {
  const lines = [
    '| model (1 thread) | Kiln from .pt2 median ms | Kiln from ONNX median ms | ONNX/.pt2 time (median of per-round ratios; ~1: same kernels) | kernels / calls (.pt2, ONNX) | agree with PyTorch and each other |',
    '|---|---:|---:|---:|---:|---|',
  ];
  for (const r of results) {
    if (r.error) {
      lines.push(`| ${r.model} | error: ${r.error} | | | | |`);
      continue;
    }
    lines.push(
      `| ${r.model} | ${r.pt2.medianMs?.toFixed(2) ?? '-'} | ${r.onnx.medianMs?.toFixed(2) ?? '-'} | ${r.onnxOverPt2?.toFixed(3) ?? '-'}x | ${r.pt2.kernels}/${r.pt2.calls}, ${r.onnx.kernels}/${r.onnx.calls} | ${r.mismatch ? `**MISMATCH** ${r.mismatch}` : 'yes'} |`,
    );
  }
  return lines.join('\n');
}
