// Running NVIDIA's `ptxas` on emitted PTX (compiler side only): assembles the module for one SM target, reports
// errors with the offending kernel, and parses `ptxas -v` resource usage (registers, shared memory, spills).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KilnError } from '../../runtime/errors.js';

export interface EntryResources {
  entry: string;
  registers: number;
  /** Static shared memory, bytes. */
  sharedBytes: number;
  stackBytes: number;
  spillStores: number;
  spillLoads: number;
  /** Constant bank 0 bytes (kernel parameters). */
  cmemBytes: number;
}

export interface PtxasResult {
  ok: boolean;
  /** ptxas's stderr (errors, warnings, -v info). */
  log: string;
  /** Error lines mapped to the entry holding them. */
  errors: { entry?: string; line?: number; message: string }[];
  resources: EntryResources[];
}

const PTXAS = process.env.KILN_PTXAS ?? 'ptxas';

/** Whether a ptxas binary can be run. */
export function ptxasAvailable(): boolean {
  const r = spawnSync(PTXAS, ['--version'], { encoding: 'utf8' });
  return r.status === 0;
}

/** Entry name at each 1-based line of a PTX text. */
function entryAtLine(ptx: string): (line: number) => string | undefined {
  const starts: { line: number; name: string }[] = [];
  ptx.split('\n').forEach((l, i) => {
    const m = /^\s*\.visible\s+\.entry\s+([\w$]+)/.exec(l);
    if (m) starts.push({ line: i + 1, name: m[1] });
  });
  return (line) => [...starts].reverse().find((s) => s.line <= line)?.name;
}

export function parsePtxasLog(log: string): EntryResources[] {
  const out: EntryResources[] = [];
  let cur: EntryResources | undefined;
  for (const l of log.split('\n')) {
    let m = /Compiling entry function '([^']+)'/.exec(l);
    if (m) {
      cur = { entry: m[1], registers: 0, sharedBytes: 0, stackBytes: 0, spillStores: 0, spillLoads: 0, cmemBytes: 0 };
      out.push(cur);
      continue;
    }
    if (!cur) continue;
    m = /Function properties for ([\w$]+)/.exec(l);
    if (m) continue;
    m = /(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads/.exec(l);
    if (m) {
      cur.stackBytes = +m[1];
      cur.spillStores = +m[2];
      cur.spillLoads = +m[3];
      continue;
    }
    m = /Used (\d+) registers/.exec(l);
    if (m) {
      cur.registers = +m[1];
      const sm = /(\d+) bytes smem/.exec(l);
      if (sm) cur.sharedBytes = +sm[1];
      const cm = /(\d+) bytes cmem\[0\]/.exec(l);
      if (cm) cur.cmemBytes = +cm[1];
    }
  }
  return out;
}

const ptxasArgs = (sm: number, dir: string) => [
  `-arch=sm_${sm}`,
  '-v',
  '-O3',
  join(dir, 'k.ptx'),
  '-o',
  join(dir, 'k.cubin'),
];
const missing = (e: Error) =>
  new KilnError('E_IO', `cannot run ptxas: ${e.message}`, {
    hint: 'install the CUDA toolkit (ptxas) or set KILN_PTXAS',
  });

function result(ptx: string, status: number | null, log: string): PtxasResult {
  const at = entryAtLine(ptx);
  const errors = log
    .split('\n')
    .filter((l) => /error|fatal/i.test(l))
    .map((message) => {
      const m = /line (\d+)/.exec(message);
      const line = m ? Number(m[1]) : undefined;
      return { entry: line ? at(line) : undefined, line, message };
    });
  return { ok: status === 0, log, errors, resources: parsePtxasLog(log) };
}

/** Assembles `ptx` for sm_`sm` with `ptxas -v`; never throws for PTX errors (see `ok`), only when ptxas is missing. */
export function runPtxas(ptx: string, sm: number): PtxasResult {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-ptxas-'));
  try {
    writeFileSync(join(dir, 'k.ptx'), ptx);
    const r = spawnSync(PTXAS, ptxasArgs(sm, dir), { encoding: 'utf8', maxBuffer: 1 << 28 });
    if (r.error) throw missing(r.error);
    return result(ptx, r.status, `${r.stdout ?? ''}${r.stderr ?? ''}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** runPtxas without blocking (several can run side by side). */
export function runPtxasAsync(ptx: string, sm: number): Promise<PtxasResult> {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-ptxas-'));
  return new Promise<PtxasResult>((resolve, reject) => {
    writeFileSync(join(dir, 'k.ptx'), ptx); // inside: a failed write rejects, and the folder is still removed
    const p = spawn(PTXAS, ptxasArgs(sm, dir));
    let log = '';
    p.stdout.on('data', (d) => {
      log += d;
    });
    p.stderr.on('data', (d) => {
      log += d;
    });
    p.on('error', (e) => reject(missing(e)));
    p.on('close', (code) => resolve(result(ptx, code, log)));
  }).finally(() => rmSync(dir, { recursive: true, force: true }));
}

export function formatResources(rs: readonly EntryResources[]): string {
  return rs
    .map(
      (r) =>
        `  ${r.entry}: ${r.registers} registers, ${r.sharedBytes} B shared, ${r.stackBytes} B stack, ${r.spillStores}/${r.spillLoads} B spill stores/loads`,
    )
    .join('\n');
}
