// The WebGPU measuring process (forked by ChildWebGpuRunner): one Dawn device, one candidate at a time. A separate
// process because a pipeline can take minutes to compile (SwiftShader on large unrolled shaders) and WebGPU has no
// way to cancel it: on a timeout the parent kills this process, and the next candidate gets a fresh device.
import { nodeGpuDevice } from '../conformance/node-webgpu.js';
import { WebGpuRunner } from './gpu-runner.js';
import type { MeasureResult } from './measure.js';
import type { MeasureTask } from './worker.js';

let runner: Promise<WebGpuRunner> | undefined;
process.on('disconnect', () => process.exit(0)); // the tuner is gone
process.on('message', async (m: { id: number; task: MeasureTask; timing?: 'timestamp' | 'wall' }) => {
  let res: MeasureResult;
  try {
    runner ??= nodeGpuDevice('adapter').then((d) => new WebGpuRunner(d, { timing: m.timing }));
    res = await (await runner).measure(m.task, 2 ** 31 - 1);
  } catch (e) {
    res = { ok: false, kind: 'run', error: (e instanceof Error ? e.message : String(e)).split('\n')[0].slice(0, 500) };
  }
  process.send!({ id: m.id, res });
});
