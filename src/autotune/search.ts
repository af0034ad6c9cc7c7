// Search over one task's space. Evolutionary: mutate the best measured candidates (the default schedule is
// measured first and seeds the population), add some fresh random samples, rank the proposals with an online
// cost model trained on the measured ones, measure the top of the ranking plus a few random picks. Random
// search (the baseline) samples uniformly. Every random choice comes from an Rng seeded by (seed, task, round),
// and ties break on the trace hash, so the same seed and the same measurements propose the same candidates.
import { Schedule, type TraceStep } from '../schedule/schedule.js';
import { lower } from '../schedule/lower.js';
import type { BuiltKernel } from '../compiler/kernel.js';
import { traceHash } from './database.js';
import { loopFeatures } from './features.js';
import { RidgeModel } from './cost-model.js';
import { Rng } from './rng.js';
import type { Decisions, DecisionSpace } from './space.js';

export type Strategy = 'evolutionary' | 'random';

export interface Candidate {
  decisions?: Decisions;
  trace: TraceStep[];
  hash: string;
  features: number[];
  /** How it was proposed: 'default', 'mutation', 'random', 'explore'. */
  origin: string;
}

export interface SearchOptions {
  strategy: Strategy;
  seed: number;
  /** Best candidates kept as parents. */
  population?: number;
  /** Proposals scored by the cost model per measured candidate. */
  oversample?: number;
  /** Share of each batch picked at random among the proposals instead of by the model. */
  epsilon?: number;
}

interface Measured {
  hash: string;
  ms?: number;
  decisions?: Decisions;
  features?: number[];
}

export class TaskSearch {
  private readonly measured = new Map<string, Measured>();
  private readonly model = new RidgeModel(1.0);
  private round = 0;

  constructor(
    readonly space: DecisionSpace,
    readonly kernel: Pick<BuiltKernel, 'inputs' | 'output'>,
    readonly key: string,
    readonly opts: SearchOptions,
  ) {}

  /** Loop-IR features of a trace, or undefined when the trace does not apply or lower. */
  featuresOf(trace: readonly TraceStep[]): number[] | undefined {
    try {
      const sch = new Schedule([this.kernel.output]);
      for (const s of trace) sch.apply(s);
      return loopFeatures(lower('cand', this.kernel.inputs, sch));
    } catch {
      return undefined;
    }
  }

  candidate(decisions: Decisions | undefined, trace: TraceStep[], origin: string): Candidate | undefined {
    const features = this.featuresOf(trace);
    return features && { decisions, trace, hash: traceHash(trace), features, origin };
  }

  has(hash: string): boolean {
    return this.measured.has(hash);
  }
  get count(): number {
    return this.measured.size;
  }

  /** Tells the search a candidate's result (ms undefined: it failed). Retrains the cost model. */
  observe(c: { hash: string; trace: readonly TraceStep[]; decisions?: Decisions }, ms: number | undefined): void {
    const decisions = c.decisions && this.space.valid(c.decisions) ? c.decisions : undefined;
    this.measured.set(c.hash, { hash: c.hash, ms, decisions, features: this.featuresOf(c.trace) });
    const ok = [...this.measured.values()].filter((m) => m.ms !== undefined && m.features);
    this.model.fit(
      ok.map((m) => m.features!),
      ok.map((m) => Math.log(m.ms!)),
    );
  }

  best(): Measured | undefined {
    return this.ranked()[0];
  }

  private ranked(): Measured[] {
    return [...this.measured.values()]
      .filter((m) => m.ms !== undefined)
      .sort((a, b) => a.ms! - b.ms! || (a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0));
  }

  /** Up to n new candidates (fewer when the space seems exhausted). */
  propose(n: number): Candidate[] {
    const rng = new Rng(`${this.opts.seed}:${this.key}:${this.opts.strategy}:${this.round++}`);
    const seen = new Set<string>(this.measured.keys());
    const out: Candidate[] = [];
    const add = (d: Decisions, origin: string, into: Candidate[]) => {
      const trace = this.space.trace(d);
      const h = traceHash(trace);
      if (seen.has(h)) return;
      seen.add(h);
      const c = this.candidate(d, trace, origin);
      if (c) into.push(c);
    };
    if (this.opts.strategy === 'random') {
      for (let tries = 0; out.length < n && tries < n * 20; tries++) add(this.space.sample(rng), 'random', out);
      return out;
    }
    const parents = this.ranked()
      .filter((m) => m.decisions)
      .slice(0, this.opts.population ?? 8);
    const want = Math.max(n * (this.opts.oversample ?? 8), 16);
    const pool: Candidate[] = [];
    for (let tries = 0; pool.length < want && tries < want * 10; tries++) {
      if (!parents.length || rng.next() < 0.2) {
        add(this.space.sample(rng), 'random', pool);
        continue;
      }
      // parents ranked by latency; favour the better ones
      let d = parents[Math.floor(rng.next() ** 2 * parents.length)].decisions!;
      const steps = 1 + (rng.next() < 0.3 ? 1 : 0);
      for (let s = 0; s < steps; s++) d = this.space.mutate(d, rng);
      add(d, 'mutation', pool);
    }
    if (!this.model.trained) return rng.shuffle(pool).slice(0, n);
    const scored = pool
      .map((c) => ({ c, s: this.model.predict(c.features) }))
      .sort((a, b) => a.s - b.s || (a.c.hash < b.c.hash ? -1 : a.c.hash > b.c.hash ? 1 : 0));
    const nExplore = n >= 3 ? Math.max(1, Math.round(n * (this.opts.epsilon ?? 0.2))) : 0;
    const top = scored.slice(0, n - nExplore).map((x) => x.c);
    const rest = scored.slice(n - nExplore).map((x) => x.c);
    for (const c of rng.shuffle(rest).slice(0, nExplore)) out.push({ ...c, origin: 'explore' });
    return [...top, ...out];
  }
}
