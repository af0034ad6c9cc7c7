// The native measuring process (forked by ChildNativeRunner): native candidates are measured here, not in a worker
// thread of the tuner, because a candidate's machine code can crash its whole process (a segfault), and a thread
// cannot be stopped while it is inside a native call; the parent kills this process on a timeout.
import { openNativeHost } from '../node/native-library.js';
import type { NativeHost } from '../runtime/native.js';
import { serveRequests } from './child-runner.js';
import { type MeasureSetTask, type MeasureTask, measure, measureSet } from './worker.js';

let host: Promise<NativeHost> | undefined;
serveRequests(async (m: { name: 'measure'; task: MeasureTask } | { name: 'measureSet'; task: MeasureSetTask }) => {
  host ??= openNativeHost();
  const h = await host;
  return m.name === 'measure' ? measure(m.task, h) : measureSet(m.task, h);
});
