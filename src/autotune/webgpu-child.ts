// The WebGPU measuring process (forked by ChildWebGpuRunner): one Dawn device, one candidate at a time. A separate
// process because a pipeline can take minutes to compile (SwiftShader on large unrolled shaders) and WebGPU has no
// way to cancel it: on a timeout the parent kills this process, and the next candidate gets a fresh device.
import { nodeGpuDevice } from '../conformance/node-webgpu.js';
import { WebGpuRunner } from './gpu-runner.js';
import type { MeasureTask } from './worker.js';
import { serveRequests } from './child-runner.js';

let runner: Promise<WebGpuRunner> | undefined;
serveRequests(async (m: { task: MeasureTask; timing?: 'timestamp' | 'wall' }) => {
  runner ??= nodeGpuDevice('adapter').then((d) => new WebGpuRunner(d, { timing: m.timing }));
  const res = await (await runner).measure(m.task, 2 ** 31 - 1);
  if (!res.ok) throw new Error(res.error);
  return res.out;
});
