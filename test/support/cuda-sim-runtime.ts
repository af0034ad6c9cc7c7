// Runs a Kiln artifact's CUDA section on the PTX simulator: the device memory is one buffer laid out by the
// artifact's memory plan (weights, inputs, outputs, intermediates at the header's offsets), each call launches
// its kernel's entries in order with base + offset pointers, exactly what the CUDA runtime path does on a GPU.
import { readArtifact } from '../../src/runtime/artifact.js';
import { ARRAY, BYTES } from '../../src/runtime/dtype.js';
import type { Tensor } from '../../src/runtime/tensor.js';
import { GLOBAL_BASE, type PtxProgram, type SimStats, launch, parsePtx } from './ptx-sim.js';

export interface SimRun {
  outputs: Record<string, Tensor>;
  stats: SimStats;
  launches: number;
}

export async function runCudaSim(
  artifact: Uint8Array,
  feeds: Record<string, Tensor>,
  maxInstructions = 5e8,
): Promise<SimRun> {
  const { header, weights } = await readArtifact(artifact);
  const cuda = header.cuda;
  if (!cuda) throw new Error('artifact has no cuda section');
  const prog: PtxProgram = parsePtx(cuda.ptx);
  const mem = new Uint8Array(cuda.memoryBytes);
  mem.set(weights, header.weightsAt);
  for (const inp of header.inputs) {
    const t = feeds[inp.name];
    if (!t) throw new Error(`missing input ${inp.name}`);
    mem.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), inp.offset);
  }
  const dv = new DataView(mem.buffer);
  const stats: SimStats = { instructions: 0, threads: 0 };
  let launches = 0;
  for (const call of header.calls) {
    const k = cuda.kernels[call.kernel];
    const io = k.params.filter((p) => p.role !== 'scratch').length;
    if (call.args.length < io) throw new Error(`kernel ${k.name}: ${io} buffers, call passes ${call.args.length}`);
    for (const l of k.launches) {
      const params = new Map(
        k.params.map((p, i) => [
          `${l.entry}_${p.name}`,
          BigInt(GLOBAL_BASE + (p.role === 'scratch' ? cuda.scratchAt : call.args[i])),
        ]),
      );
      const s = launch(
        prog,
        { entry: l.entry, grid: l.grid, block: l.block, params },
        dv,
        maxInstructions - stats.instructions,
      );
      stats.instructions += s.instructions;
      stats.threads += s.threads;
      launches++;
      // a whole model simulates for minutes: let the event loop run between launches (vitest's worker RPC times
      // out when its thread stays blocked for a minute)
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
  const outputs: Record<string, Tensor> = {};
  for (const o of header.outputs) {
    const n = o.shape.reduce((a, b) => a * b, 1);
    const data = new ARRAY[o.dtype](n);
    new Uint8Array(data.buffer).set(mem.subarray(o.offset, o.offset + n * BYTES[o.dtype]));
    outputs[o.name] = { dtype: o.dtype, shape: o.shape, data } as Tensor;
  }
  return { outputs, stats, launches };
}
