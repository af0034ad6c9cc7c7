// Runs an artifact's control program (If / Loop / Scan): kernel calls in the order it gives, branches on condition
// tensors, loops with a trip count and / or a condition, and the copies that move loop-carried values and scan
// slices between buffers of the memory plan. Target-neutral: it sees memory as bytes and kernels as `call(i)`.
import type { ControlStep } from './artifact-format.js';
import { KilnError } from './errors.js';

/** Runs `steps` over `memory` (the plan's linear memory); `call(i)` runs the artifact's call i. */
export function runControl(steps: readonly ControlStep[], memory: ArrayBuffer, call: (i: number) => void): void {
  const bytes = new Uint8Array(memory);
  const view = new DataView(memory);
  const run = (list: readonly ControlStep[], iter: number): void => {
    for (const s of list) {
      switch (s.op) {
        case 'call':
          call(s.call);
          break;
        case 'copy': {
          const from = s.from + iter * (s.fromStride ?? 0),
            to = s.to + iter * (s.toStride ?? 0);
          // the header check bounds the first iteration's addresses; strided ones are checked as they come
          if (from < 0 || to < 0 || from + s.bytes > bytes.length || to + s.bytes > bytes.length)
            throw new KilnError(
              'E_ARTIFACT',
              `artifact is damaged: a control copy of ${s.bytes} bytes from ${from} to ${to} lies outside memory`,
              {
                hint: 'recompile the model with kiln compile; do not edit or truncate .kiln files',
              },
            );
          if (from !== to) bytes.copyWithin(to, from, from + s.bytes);
          break;
        }
        case 'if':
          run(bytes[s.cond] !== 0 ? s.then : s.else, iter);
          break;
        case 'loop': {
          const trip = typeof s.trip === 'number' ? s.trip : Number(view.getBigInt64(s.trip.at, true));
          const end = trip < 0 && typeof s.trip === 'number' ? Number.POSITIVE_INFINITY : Math.max(0, trip);
          if (s.cond !== undefined) bytes[s.cond] = s.condFrom === undefined || bytes[s.condFrom] !== 0 ? 1 : 0;
          let i = 0;
          for (; i < end; i++) {
            if (s.cond !== undefined && bytes[s.cond] === 0) break;
            if (s.iter !== undefined) view.setBigInt64(s.iter, BigInt(i), true);
            run(s.body, i);
          }
          if (s.fullTrip && i < end)
            throw new KilnError(
              'E_DYNAMIC',
              `Loop '${s.name}' stopped after ${i} of ${end} iterations; its scan outputs were sized for ${end} at compile time`,
              {
                hint: 'scan outputs of a loop that ends early have run-time length, which Kiln does not compile yet; give the Loop no condition, or return the values as loop-carried state',
              },
            );
          break;
        }
      }
    }
  };
  run(steps, 0);
}
