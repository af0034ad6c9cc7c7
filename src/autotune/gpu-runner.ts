// Runners for GPU candidates. The device (Dawn's, or the CUDA driver's context) is one per process, and a GPU
// program cannot hang the JavaScript thread, so a runner's timeout is a race. WebGPU candidates are measured in a
// child process (ChildWebGpuRunner, webgpu-child.ts) that is killed on a timeout: pipeline compilation cannot be
// cancelled and would hold up every later candidate.
//  - WebGPU: the candidate's dispatches run through the runtime's WebGpuExecutor (the same bind groups and
//    pipelines a compiled model gets). One run gives the output that is checked against the default schedule's;
//    then each repeat records the dispatches `number` times into one compute pass, timed by timestamp queries
//    written at the pass's beginning and end when the device has 'timestamp-query', else by the wall clock from
//    submit to queue.onSubmittedWorkDone().
//  - CUDA: the one-kernel program through CudaExecutor on the driver, wall clock around each run (the run waits
//    for its stream). Without a driver, opening the runner fails with E_NO_DEVICE.
import { KilnError } from '../runtime/errors.js';
import type { ArtifactHeader } from '../runtime/artifact-format.js';
import { type GpuBuffer, type GpuDevice, type GpuPass, WebGpuExecutor } from '../runtime/webgpu.js';
import { CudaExecutor, type CudaDeviceInfo, type CudaDriver } from '../runtime/cuda.js';
import type { MeasureResult, Runner } from './measure.js';
import { type MeasureOutput, type MeasureTask, randomInputs } from './worker.js';
import { ChildProcessRunner, within } from './child-runner.js';

const message = (e: unknown) => (e instanceof Error ? e.message : String(e)).split('\n')[0].slice(0, 500);
const asHeader = (t: MeasureTask): ArtifactHeader => ({
  ...t.header,
  sections: { wasm: { offset: 0, length: 0 }, weights: { offset: 0, length: 0 } },
});

// The parts of the WebGPU API beyond the runtime's structural GpuDevice that timing needs.
interface QuerySet {
  destroy(): void;
}
interface TimingDevice extends GpuDevice {
  readonly features?: { has(f: string): boolean };
  readonly queue: GpuDevice['queue'] & { onSubmittedWorkDone(): Promise<void> };
  createQuerySet(d: { type: 'timestamp'; count: number }): QuerySet;
  createCommandEncoder(): ReturnType<GpuDevice['createCommandEncoder']> & {
    beginComputePass(d?: {
      timestampWrites?: { querySet: QuerySet; beginningOfPassWriteIndex: number; endOfPassWriteIndex: number };
    }): GpuPass;
    resolveQuerySet(q: QuerySet, first: number, count: number, dst: GpuBuffer, offset: number): void;
  };
}
const QUERY_RESOLVE = 0x200,
  COPY_SRC = 4,
  COPY_DST = 8,
  MAP_READ = 1;

export class WebGpuRunner implements Runner {
  private readonly dev: TimingDevice;
  /** 'timestamp' when the device can write timestamps into a compute pass, else 'wall'. */
  readonly timing: 'timestamp' | 'wall';

  constructor(device: GpuDevice, opts: { timing?: 'timestamp' | 'wall' } = {}) {
    this.dev = device as TimingDevice;
    const has = !!this.dev.features?.has('timestamp-query') && typeof this.dev.createQuerySet === 'function';
    this.timing = opts.timing === 'wall' || !has ? 'wall' : 'timestamp';
  }

  async measure(task: MeasureTask, timeoutMs: number): Promise<MeasureResult> {
    if (!task.header.webgpu) return { ok: false, kind: 'run', error: 'not a WebGPU candidate (no webgpu section)' };
    if (task.fault === 'trap') return { ok: false, kind: 'run', error: 'injected fault' };
    let ex: WebGpuExecutor | undefined;
    const work = (async () => {
      if (task.fault === 'hang')
        await new Promise(() => {
          /* a candidate that never finishes */
        });
      ex = await WebGpuExecutor.create(asHeader(task), new Uint8Array(0), this.dev);
      return this.time(ex, task);
    })();
    try {
      const r = await within(work, timeoutMs);
      if (!r.ok) {
        work.catch(() => undefined);
        return { ok: false, kind: 'timeout', error: `no result within ${timeoutMs} ms` };
      }
      return { ok: true, out: r.v };
    } catch (e) {
      return { ok: false, kind: 'run', error: message(e) };
    } finally {
      // a timed-out candidate's buffers are freed once its work is done
      work.finally(() => ex?.dispose()).catch(() => undefined);
    }
  }

  private async time(ex: WebGpuExecutor, task: MeasureTask) {
    const feeds = randomInputs(task.header, task.seed);
    const name = task.header.outputs[0].name;
    const first = await ex.run(feeds); // writes the inputs; later passes reuse them
    const output = first[name];
    const dev = this.dev;
    const query = this.timing === 'timestamp' ? dev.createQuerySet({ type: 'timestamp', count: 2 }) : undefined;
    const resolve = query && dev.createBuffer({ size: 16, usage: QUERY_RESOLVE | COPY_SRC });
    const read = query && dev.createBuffer({ size: 16, usage: COPY_DST | MAP_READ });
    try {
      /** `n` runs in one compute pass; their total time in ms. */
      const batch = async (n: number): Promise<number> => {
        const enc = dev.createCommandEncoder();
        const pass = enc.beginComputePass(
          query
            ? { timestampWrites: { querySet: query, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } }
            : undefined,
        );
        for (let i = 0; i < n; i++) ex.encodeDispatches(pass);
        pass.end();
        if (query) {
          enc.resolveQuerySet(query, 0, 2, resolve!, 0);
          enc.copyBufferToBuffer(resolve!, 0, read!, 0, 16);
        }
        const t0 = performance.now();
        dev.queue.submit([enc.finish()]);
        await dev.queue.onSubmittedWorkDone();
        const wall = performance.now() - t0;
        if (!query) return wall;
        await read!.mapAsync(MAP_READ);
        const [b, e] = new BigUint64Array(read!.getMappedRange().slice(0));
        read!.unmap();
        // a device whose timestamps do not advance (or wrap) is timed by the wall clock instead
        return e > b ? Number(e - b) / 1e6 : wall;
      };
      let probe = await batch(1);
      const w0 = performance.now(),
        minWarm = task.minWarmupMs ?? 20;
      for (let i = 1; i < task.warmup || (performance.now() - w0 < minWarm && performance.now() - w0 < 2000); i++)
        probe = await batch(1);
      const number = Math.max(1, Math.min(100, Math.ceil(task.minRepeatMs / Math.max(probe, 1e-3))));
      const costs: number[] = [];
      for (let r = 0; r < task.repeats; r++) costs.push((await batch(number)) / number);
      return { costs, output };
    } finally {
      query?.destroy();
      resolve?.destroy();
      read?.destroy();
    }
  }

  async close(): Promise<void> {
    /* the device belongs to the process */
  }
}

/** WebGpuRunner in a child process: a candidate that does not finish in time is cut off by killing the process. */
export class ChildWebGpuRunner extends ChildProcessRunner implements Runner {
  constructor(private readonly opts: { timing?: 'timestamp' | 'wall' } = {}) {
    super('webgpu-child.js', 'WebGPU measuring process');
  }

  measure(task: MeasureTask, timeoutMs: number): Promise<MeasureResult> {
    return this.request<MeasureOutput>({ task, timing: this.opts.timing }, timeoutMs);
  }
}

export class CudaRunner implements Runner {
  private constructor(
    private readonly driver: CudaDriver,
    readonly device: CudaDeviceInfo,
  ) {}

  /** Opens the CUDA driver and device 0: E_NO_DEVICE without a driver or GPU. */
  static async open(): Promise<CudaRunner> {
    const { openCudaDriver } = await import('../node/cuda-driver.js');
    const driver = await openCudaDriver();
    const device = driver.init();
    return new CudaRunner(driver, device);
  }

  async measure(task: MeasureTask, timeoutMs: number): Promise<MeasureResult> {
    if (!task.header.cuda) return { ok: false, kind: 'run', error: 'not a CUDA candidate (no cuda section)' };
    let ex: CudaExecutor | undefined;
    const work = (async () => {
      ex = await CudaExecutor.create(asHeader(task), new Uint8Array(0), this.driver);
      const feeds = randomInputs(task.header, task.seed);
      const name = task.header.outputs[0].name;
      const once = async () => {
        const t0 = performance.now();
        const out = await ex!.run(feeds);
        return { ms: performance.now() - t0, out };
      };
      const first = await once();
      // the GPU's timeline where the driver has events (a run's copies and host round trips are ~0.1 ms, more
      // than most kernels); else whole runs by the wall clock
      const timed = (passes: number) => ex!.timeKernels(passes);
      const firstPass = timed(1),
        gpu = firstPass !== undefined;
      const sample = async (passes: number) => {
        if (gpu) return timed(passes)!;
        let total = 0;
        for (let k = 0; k < passes; k++) total += (await once()).ms;
        return total / passes;
      };
      let probe = firstPass ?? first.ms;
      for (let i = 1; i < Math.max(task.warmup, 2); i++) probe = await sample(1);
      const number = Math.max(1, Math.min(1000, Math.ceil(task.minRepeatMs / Math.max(probe, 1e-3))));
      const costs: number[] = [];
      for (let r = 0; r < task.repeats; r++) costs.push(await sample(number));
      return { costs, output: first.out[name] };
    })();
    try {
      const r = await within(work, timeoutMs);
      if (!r.ok) {
        work.catch(() => undefined);
        return { ok: false, kind: 'timeout', error: `no result within ${timeoutMs} ms` };
      }
      return { ok: true, out: r.v };
    } catch (e) {
      return { ok: false, kind: 'run', error: message(e) };
    } finally {
      work.finally(() => ex?.dispose()).catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    this.driver.release();
  }
}

/** The error a CUDA tuning job without a driver stops with (before building anything). */
export function noCudaDevice(cause: unknown): KilnError {
  // the cause's own hint (use target 'wasm') is not this command's
  const why =
    cause instanceof KilnError
      ? cause.message.replace(/^\[E_NO_DEVICE\] /, '').replace(cause.hint ? `. ${cause.hint}` : /$^/, '')
      : message(cause);
  return new KilnError(
    'E_NO_DEVICE',
    `tuning for CUDA measures candidates on a GPU, and none can be opened here (${why})`,
    {
      hint: 'run on a machine with an NVIDIA GPU and driver, or add --build-only to record ptxas resource checks without measuring',
    },
  );
}
