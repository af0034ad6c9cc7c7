// Fuzzing the compiler and the runtime with mutated inputs: seeded, bounded, deterministic.
// 200 mutated ONNX models (byte flips / insertions / truncations, and protobuf-level edits: dims negative or huge,
// dropped inputs, duplicated outputs, wrong attribute types and values, unknown ops, bad dtypes, bad opsets) are
// compiled, loaded and run; 200 mutated artifacts (bit flips in each section, truncation, header JSON edits with
// the SHA-256 recomputed) are loaded and run. Each case runs in a child process (test/support/fuzz-child.mjs, on
// the built dist/), several per child, so that a crash, an abort, a stack overflow or a hang is caught; a child that
// dies or stops answering is replaced, and the case it was on is run again alone to name it.
// The only acceptable outcomes are success and a thrown KilnError with a code other than E_INTERNAL (a bug in Kiln
// by its own definition). Anything else fails the test with the seed, the case, its mutation and the error, and the
// line that reproduces it.
// KILN_FUZZ_SEED and KILN_FUZZ_CASES (cases per kind) widen the search outside the suite.
import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { availableParallelism } from 'node:os';

const SEED = Number(process.env.KILN_FUZZ_SEED ?? 24301);
const CASES = Number(process.env.KILN_FUZZ_CASES ?? 200);
const BATCH = 25; // cases per child
const PARALLEL = Math.max(1, Math.floor(availableParallelism() / 2)); // children at a time: vitest runs another file beside
const CASE_TIMEOUT_MS = 25_000; // a child silent this long on one case is hung
const RUN_TIMEOUT_MS = 5_000; // the runtime's own timeoutMs, where the case loads with it
const CHILD = join(process.cwd(), 'test/support/fuzz-child.mjs');

type Kind = 'model' | 'artifact';
interface Done {
  done: number;
  outcome: 'ok' | 'kiln' | 'bad' | 'harness';
  stage?: string;
  code?: string;
  name?: string;
  message?: string;
  stack?: string[];
  note?: string;
  stray?: boolean;
}
interface CaseResult {
  kind: Kind;
  index: number;
  desc: string;
  outcome: string;
  code?: string;
  error?: string;
  stack?: string[];
  alone?: string;
}

interface ChildRun {
  results: Map<number, Done>;
  descs: Map<number, string>;
  started: number[];
  exit: string;
  stderr: string;
  hung: boolean;
}

function runChild(kind: Kind, indices: number[]): Promise<ChildRun> {
  return new Promise((resolve) => {
    const spec = JSON.stringify({ seed: SEED, kind, indices, runTimeoutMs: RUN_TIMEOUT_MS });
    const p = spawn(process.execPath, [CHILD, spec], { stdio: ['ignore', 'pipe', 'pipe'] });
    const run: ChildRun = { results: new Map(), descs: new Map(), started: [], exit: '', stderr: '', hung: false };
    let buf = '';
    let timer: NodeJS.Timeout;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        run.hung = true;
        p.kill('SIGKILL');
      }, CASE_TIMEOUT_MS);
    };
    arm();
    p.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let msg: { start?: number; desc?: string; done?: number };
        try {
          msg = JSON.parse(line);
        } catch {
          continue;
        }
        arm();
        if (msg.start !== undefined) {
          run.started.push(msg.start);
          run.descs.set(msg.start, msg.desc ?? '');
        }
        if (msg.done !== undefined) run.results.set(msg.done, msg as Done);
      }
    });
    p.stderr.on('data', (d: Buffer) => {
      run.stderr = (run.stderr + d.toString()).slice(-4000);
    });
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      run.exit = signal ? `signal ${signal}` : `exit ${code}`;
      resolve(run);
    });
  });
}

const lastLines = (s: string, n = 6) => s.trim().split('\n').filter(Boolean).slice(-n).join(' | ').slice(0, 600);

/** Runs `indices` of one kind, batch by batch, replacing children that die; one result per index. */
async function runBatch(kind: Kind, indices: number[]): Promise<CaseResult[]> {
  const out: CaseResult[] = [];
  let todo = indices;
  while (todo.length) {
    const run = await runChild(kind, todo);
    let broken: number | undefined;
    for (const i of todo) {
      const d = run.results.get(i);
      if (d) {
        out.push({
          kind,
          index: i,
          desc: run.descs.get(i) ?? '',
          outcome: d.outcome,
          code: d.code,
          error:
            d.outcome === 'ok'
              ? undefined
              : `${d.stage ?? ''} ${d.name ?? ''}: ${d.message ?? ''}${d.stray ? ' (escaped the call: uncaught exception / unhandled rejection)' : ''}`.trim(),
          stack: d.stack,
        });
        if (d.stray) {
          broken = i;
          break;
        }
        continue;
      }
      // started but not done: this case crashed or hung its child; run it alone to confirm and name it
      if (run.started.includes(i)) {
        const outcome = run.hung ? 'hang' : 'crash';
        const alone = todo.length > 1 ? await runChild(kind, [i]) : undefined;
        const a = alone?.results.get(i);
        out.push({
          kind,
          index: i,
          desc: run.descs.get(i) ?? '',
          outcome,
          error: `${run.hung ? `no answer in ${CASE_TIMEOUT_MS / 1000} s` : `child died (${run.exit})`}: ${lastLines(run.stderr)}`,
          alone:
            alone &&
            (a
              ? `alone: ${a.outcome}${a.code ? ` ${a.code}` : ''}`
              : `alone: ${alone.hung ? 'hang' : `crash (${alone.exit})`} ${lastLines(alone.stderr, 3)}`),
        });
        broken = i;
      }
      break;
    }
    if (broken === undefined) {
      // the child ended without starting the rest (it died between cases): that is a failure of its own
      const missing = todo.filter((i) => !run.results.has(i));
      if (missing.length && !run.started.includes(missing[0])) {
        out.push({
          kind,
          index: missing[0],
          desc: '(not started)',
          outcome: 'crash',
          error: `child ended (${run.exit}) before this case: ${lastLines(run.stderr)}`,
        });
        broken = missing[0];
      } else break;
    }
    todo = todo.slice(todo.indexOf(broken) + 1);
  }
  return out;
}

async function fuzz(kind: Kind): Promise<CaseResult[]> {
  const all = Array.from({ length: CASES }, (_, i) => i);
  const batches: number[][] = [];
  for (let i = 0; i < all.length; i += BATCH) batches.push(all.slice(i, i + BATCH));
  const results: CaseResult[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: PARALLEL }, async () => {
      while (next < batches.length) results.push(...(await runBatch(kind, batches[next++])));
    }),
  );
  return results.sort((a, b) => a.index - b.index);
}

function report(kind: Kind, results: CaseResult[]): string[] {
  // E_INTERNAL is a KilnError too, but it says "a bug in Kiln": bad input must get an error that names the input
  const failures = results.filter((r) => r.outcome !== 'ok' && !(r.outcome === 'kiln' && r.code !== 'E_INTERNAL'));
  const count = (o: string) => results.filter((r) => r.outcome === o).length;
  const codes = new Map<string, number>();
  for (const r of results) if (r.code) codes.set(r.code, (codes.get(r.code) ?? 0) + 1);
  console.log(
    `fuzz ${kind}s (seed ${SEED}): ${results.length} cases, ${count('ok')} ran, ${count('kiln')} KilnError (${[...codes].map(([c, n]) => `${c} ${n}`).join(', ')}), ${failures.length} failures`,
  );
  mkdirSync('.cache', { recursive: true });
  writeFileSync(join('.cache', `fuzz-${kind}s.json`), JSON.stringify({ seed: SEED, results }, null, 1));
  return failures.map(
    (f) =>
      `${kind} #${f.index} [${f.outcome}] ${f.desc}\n    ${f.error ?? ''}${f.stack?.length ? `\n    at ${f.stack.slice(0, 3).join(' <- ')}` : ''}${f.alone ? `\n    ${f.alone}` : ''}` +
      `\n    reproduce: node test/support/fuzz-child.mjs '${JSON.stringify({ seed: SEED, kind, indices: [f.index] })}'`,
  );
}

describe.skipIf(!existsSync(join(process.cwd(), 'dist/index.js')))(
  `fuzz (seed ${SEED}, ${CASES} cases per kind, built dist/)`,
  () => {
    it('mutated ONNX models: compile, load and run succeed or throw a KilnError; nothing crashes or hangs', async () => {
      const failures = report('model', await fuzz('model'));
      expect(failures, `\n${failures.join('\n')}\n`).toEqual([]);
    }, 600_000);

    it('mutated artifacts (SHA-256 recomputed where the mutation is past the check): load and run succeed or throw a KilnError', async () => {
      const failures = report('artifact', await fuzz('artifact'));
      expect(failures, `\n${failures.join('\n')}\n`).toEqual([]);
    }, 600_000);
  },
);
