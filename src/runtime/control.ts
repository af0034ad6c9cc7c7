// Runs an artifact's control program (If / Loop / Scan): kernel calls in the order it gives, branches on condition
// tensors, loops with a trip count and / or a condition, and the copies that move loop-carried values and scan
// slices between buffers of the memory plan. Target-neutral: it sees memory through ControlMemory (the WebAssembly
// memory's bytes, or a GPU's device memory) and kernels as `call(i)`.
import type { ControlStep } from './artifact-format.js';
import { KilnError } from './errors.js';

/** The memory the plan lays out, as the control program reads and writes it. */
export interface ControlMemory {
  readonly byteLength: number;
  /** The bool (byte) at `at`: 0 or not. */
  u8(at: number): number;
  setU8(at: number, v: number): void;
  i64(at: number): bigint;
  setI64(at: number, v: bigint): void;
  copy(from: number, to: number, bytes: number): void;
}

/** ControlMemory over host bytes (WebAssembly linear memory). */
export function hostMemory(buffer: ArrayBuffer): ControlMemory {
  const bytes = new Uint8Array(buffer),
    view = new DataView(buffer);
  return {
    byteLength: bytes.length,
    u8: (at) => bytes[at],
    setU8: (at, v) => {
      bytes[at] = v;
    },
    i64: (at) => view.getBigInt64(at, true),
    setI64: (at, v) => view.setBigInt64(at, v, true),
    copy: (from, to, n) => bytes.copyWithin(to, from, from + n),
  };
}

/** Runs `steps` over `memory` (the plan's memory); `call(i)` runs the artifact's call i. */
export function runControl(steps: readonly ControlStep[], memory: ControlMemory, call: (i: number) => void): void {
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
          if (from < 0 || to < 0 || from + s.bytes > memory.byteLength || to + s.bytes > memory.byteLength)
            throw new KilnError(
              'E_ARTIFACT',
              `artifact is damaged: a control copy of ${s.bytes} bytes from ${from} to ${to} lies outside memory`,
              { hint: 'recompile the model with kiln compile; do not edit or truncate .kiln files' },
            );
          if (from !== to && s.bytes > 0) memory.copy(from, to, s.bytes);
          break;
        }
        case 'if':
          run(memory.u8(s.cond) !== 0 ? s.then : s.else, iter);
          break;
        case 'loop': {
          const trip = typeof s.trip === 'number' ? s.trip : Number(memory.i64(s.trip.at));
          const end = trip < 0 && typeof s.trip === 'number' ? Number.POSITIVE_INFINITY : Math.max(0, trip);
          if (s.cond !== undefined)
            memory.setU8(s.cond, s.condFrom === undefined || memory.u8(s.condFrom) !== 0 ? 1 : 0);
          let i = 0;
          for (; i < end; i++) {
            if (s.cond !== undefined && memory.u8(s.cond) === 0) break;
            if (s.iter !== undefined) memory.setI64(s.iter, BigInt(i));
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

/** The control program as text, one step a line, bodies indented (kiln inspect on an artifact). */
export function printControl(steps: readonly ControlStep[], indent = '  '): string {
  const at = (n: number) => `@${n}`;
  return steps
    .map((s) => {
      switch (s.op) {
        case 'call':
          return `${indent}call #${s.call}`;
        case 'copy': {
          const stride = (k: number | undefined) => (k ? ` + iter*${k}` : '');
          return `${indent}copy ${s.bytes} bytes ${at(s.from)}${stride(s.fromStride)} -> ${at(s.to)}${stride(s.toStride)}`;
        }
        case 'if':
          return `${indent}if ${at(s.cond)}:\n${printControl(s.then, `${indent}  `)}\n${indent}else:\n${printControl(s.else, `${indent}  `)}`;
        case 'loop': {
          const trip = typeof s.trip === 'number' ? (s.trip < 0 ? 'none' : String(s.trip)) : `int64 ${at(s.trip.at)}`;
          const cond =
            s.cond === undefined
              ? ''
              : `, while ${at(s.cond)}${s.condFrom === undefined ? '' : ` (from ${at(s.condFrom)})`}`;
          const iter = s.iter === undefined ? '' : `, iteration -> ${at(s.iter)}`;
          return `${indent}loop '${s.name}' trip ${trip}${cond}${iter}:\n${printControl(s.body, `${indent}  `)}`;
        }
      }
    })
    .join('\n');
}
