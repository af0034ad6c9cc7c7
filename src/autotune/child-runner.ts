// A runner's measuring process: a forked module (webgpu-child.ts, native-child.ts) that measures one request at a
// time and answers each with its result. A request that does not finish in time is cut off by killing the process
// (the next request starts a fresh one), and a process that dies (a native candidate that segfaults) fails the
// requests it held, not the tuner.
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { KilnError } from '../runtime/errors.js';

/** A compiled module of this folder (worker threads and child processes need JavaScript, also under vitest). */
export function compiledModule(name: string): string {
  const here = fileURLToPath(new URL(`./${name}`, import.meta.url));
  if (existsSync(here)) return here;
  const dist = fileURLToPath(new URL(`../../dist/autotune/${name}`, import.meta.url));
  if (existsSync(dist)) return dist;
  throw new KilnError('E_IO', `autotune module ${name} not found (looked at ${here} and ${dist})`, {
    hint: 'build Kiln first: npm run build',
  });
}

/** What a measuring process answers: its output, or why it has none. */
export type ChildResult<T> = { ok: true; out: T } | { ok: false; kind: 'run' | 'timeout'; error: string };

/** Races `p` against a timer; the loser is ignored. */
export async function within<T>(p: Promise<T>, ms: number): Promise<{ ok: true; v: T } | { ok: false }> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<{ ok: false }>((res) => {
    timer = setTimeout(() => res({ ok: false }), ms);
  });
  try {
    return await Promise.race([p.then((v) => ({ ok: true as const, v })), t]);
  } finally {
    clearTimeout(timer);
  }
}

export class ChildProcessRunner {
  private child: { proc: ChildProcess; pending: Map<number, (r: ChildResult<unknown>) => void> } | undefined;
  private nextId = 0;

  /** `module`: the compiled module's file name in this folder; `what`: the process as error messages name it. */
  constructor(
    private readonly module: string,
    private readonly what: string,
  ) {}

  private start(): NonNullable<ChildProcessRunner['child']> {
    if (this.child) return this.child;
    const proc = fork(compiledModule(this.module), [], {
      serialization: 'advanced',
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    });
    const c = { proc, pending: new Map<number, (r: ChildResult<unknown>) => void>() };
    proc.on('message', (m: { id: number; res: ChildResult<unknown> }) => {
      c.pending.get(m.id)?.(m.res);
      c.pending.delete(m.id);
    });
    proc.on('exit', (code, signal) => {
      if (this.child === c) this.child = undefined;
      for (const done of c.pending.values())
        done({ ok: false, kind: 'run', error: `the ${this.what} exited (${signal ?? `code ${code}`})` });
      c.pending.clear();
    });
    this.child = c;
    return c;
  }

  /** Sends `request` (with an id added) and waits at most `timeoutMs` for its answer. */
  protected async request<T>(request: object, timeoutMs: number): Promise<ChildResult<T>> {
    const c = this.start();
    const id = this.nextId++;
    const result = new Promise<ChildResult<T>>((res) => c.pending.set(id, res as (r: ChildResult<unknown>) => void));
    c.proc.send({ ...request, id });
    const r = await within(result, timeoutMs);
    if (r.ok) return r.v;
    c.pending.delete(id);
    if (this.child === c) this.child = undefined;
    c.proc.kill('SIGKILL');
    return { ok: false, kind: 'timeout', error: `no result within ${timeoutMs} ms (the ${this.what} was restarted)` };
  }

  async close(): Promise<void> {
    const c = this.child;
    this.child = undefined;
    if (c && c.proc.exitCode === null && c.proc.signalCode === null) {
      c.proc.kill('SIGKILL');
      await new Promise((res) => c.proc.once('exit', res));
    }
  }
}

/** A measuring process's side: answers each request with `handle`'s result (an exception: a 'run' failure). */
export function serveRequests<M>(handle: (m: M) => Promise<unknown> | unknown): void {
  process.on('disconnect', () => process.exit(0)); // the tuner is gone
  process.on('message', async (m: M & { id: number }) => {
    let res: ChildResult<unknown>;
    try {
      res = { ok: true, out: await handle(m) };
    } catch (e) {
      res = {
        ok: false,
        kind: 'run',
        error: (e instanceof Error ? e.message : String(e)).split('\n')[0].slice(0, 500),
      };
    }
    process.send!({ id: m.id, res });
  });
}
