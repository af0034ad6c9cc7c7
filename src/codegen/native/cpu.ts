// The x86-64 CPU levels the native backend compiles for: what LLVM is told (target-features) and the
// /proc/cpuinfo flags a CPU must show to run the code (the artifact records them; the runtime compares).
// LZCNT is left out of x86-64-v3 on purpose: hypervisors hide it (these machines' KVM guests do), and on a CPU
// without it the instruction silently runs as BSR.
import { KilnError } from '../../runtime/errors.js';
import type { TileOptions } from '../../schedule/cpu-schedule.js';

export type CpuLevel = 'x86-64' | 'x86-64-v3' | 'x86-64-v4';
export const CPU_LEVELS: readonly CpuLevel[] = ['x86-64', 'x86-64-v3', 'x86-64-v4'];
/** What `--cpu` accepts: a level, or 'native' (the best level the compiling machine has). */
export type CpuOption = CpuLevel | 'native';
/** The level compiling and tuning use when none is given: AVX2 and FMA, which most x86-64 servers since 2015 have. */
export const DEFAULT_CPU: CpuLevel = 'x86-64-v3';

export interface CpuTarget {
  level: CpuLevel;
  /** LLVM's target-features string. */
  llvmFeatures: string;
  /** /proc/cpuinfo flags the code needs. */
  flags: string[];
  /** Widest vector register in bits. */
  vectorBits: number;
  /** Register tiles of the default schedule: float32 lanes and accumulator vectors (16 or 32 registers). */
  tiles: TileOptions;
  /** Vector widths whose glibc libmvec functions the level can call (see llvm-ir.ts). */
  vectorMath: number[];
}

const V3_FLAGS = ['pni', 'ssse3', 'sse4_1', 'sse4_2', 'popcnt', 'avx', 'avx2', 'fma', 'f16c', 'bmi1', 'bmi2', 'movbe'];
const V3_LLVM = ['sse3', 'ssse3', 'sse4.1', 'sse4.2', 'popcnt', 'avx', 'avx2', 'fma', 'f16c', 'bmi', 'bmi2', 'movbe'];
const V4_FLAGS = ['avx512f', 'avx512bw', 'avx512cd', 'avx512dq', 'avx512vl'];
const V4_LLVM = ['avx512f', 'avx512bw', 'avx512cd', 'avx512dq', 'avx512vl'];

const plus = (xs: string[]) => xs.map((x) => `+${x}`).join(',');

export const CPU_TARGETS: Readonly<Record<CpuLevel, CpuTarget>> = {
  'x86-64': {
    level: 'x86-64',
    llvmFeatures: '+sse2',
    flags: ['sse2'],
    vectorBits: 128,
    tiles: { lanes: 4, maxAccumulators: 12, registers: 16 },
    vectorMath: [],
  },
  'x86-64-v3': {
    level: 'x86-64-v3',
    llvmFeatures: plus(V3_LLVM),
    flags: V3_FLAGS,
    vectorBits: 256,
    tiles: { lanes: 8, maxAccumulators: 12, registers: 16 },
    vectorMath: [4, 8],
  },
  'x86-64-v4': {
    level: 'x86-64-v4',
    llvmFeatures: plus([...V3_LLVM, ...V4_LLVM]),
    flags: [...V3_FLAGS, ...V4_FLAGS],
    vectorBits: 512,
    tiles: { lanes: 16, maxAccumulators: 24, registers: 32 },
    vectorMath: [4, 8, 16],
  },
};

/** The flags of the first processor in /proc/cpuinfo's text. */
export function cpuinfoFlags(text: string): Set<string> {
  const line = text.split('\n').find((l) => /^flags\s*:/.test(l));
  return new Set(
    line
      ? line
          .slice(line.indexOf(':') + 1)
          .trim()
          .split(/\s+/)
      : [],
  );
}

/** The best level a CPU with these flags runs. */
export function bestLevel(flags: ReadonlySet<string>): CpuLevel {
  const has = (l: CpuLevel) => CPU_TARGETS[l].flags.every((f) => flags.has(f));
  return has('x86-64-v4') ? 'x86-64-v4' : has('x86-64-v3') ? 'x86-64-v3' : 'x86-64';
}

/** The CPU target of a `--cpu` value; 'native' needs the compiling machine's flags. */
export function resolveCpu(cpu: string, hostFlags: () => ReadonlySet<string>): CpuTarget {
  if (cpu === 'native') return CPU_TARGETS[bestLevel(hostFlags())];
  if (!(CPU_LEVELS as readonly string[]).includes(cpu))
    throw new KilnError('E_INPUT', `unknown CPU target '${cpu}'`, {
      hint: `use one of ${[...CPU_LEVELS, 'native'].join(', ')} (--cpu)`,
    });
  return CPU_TARGETS[cpu as CpuLevel];
}
