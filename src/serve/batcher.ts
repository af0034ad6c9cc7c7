// A dynamic batcher with Triton's semantics. Requests wait in one FIFO queue per model; whenever one of the model's
// instances is idle the batcher takes the longest run of compatible requests at the queue's head (same shapes past
// the batch dim, at most max_batch_size rows) and sends it:
//  - at once if it fills max_batch_size, if the next request does not fit or is incompatible, or if its rows are
//    one of preferred_batch_sizes (the largest such prefix);
//  - otherwise when the oldest request has waited max_queue_delay_ms.
// Batches leave in arrival order, at most one per instance at a time, and are answered in that order (Triton's
// preserve_ordering: a batch that finishes on one instance before an earlier one on another waits for it), so every
// client gets its answers in the order it asked.
// A request still queued past its timeout is answered E_TIMEOUT; beyond max_queue_size queued requests a new one is
// refused E_UNAVAILABLE; drain() refuses new requests and resolves when everything queued has run.
import { KilnError } from '../runtime/errors.js';

export interface BatcherOptions {
  /** Most rows in one batch; 0: no batching (one request per run). */
  maxBatchSize: number;
  preferredBatchSizes: number[];
  maxQueueDelayMs: number;
  /** 0: no limit. */
  maxQueueSize: number;
  /** Default queue timeout of a request, ms; 0: none. */
  timeoutMs: number;
  /** Batches that may run at once (the model's instances); default 1. */
  instances?: number;
}

export interface BatchItem<Req, Res> {
  request: Req;
  rows: number;
  /** Requests stack only with requests of the same key (their shapes past the batch dim). */
  key: string;
  enqueuedAt: number;
  resolve(r: Res): void;
  reject(e: unknown): void;
  timer?: ReturnType<typeof setTimeout>;
}

export interface BatchStats {
  /** Requests in the batch, and their rows. */
  requests: number;
  rows: number;
  /** Each request's time in the queue, ms. */
  queueMs: number[];
  computeMs: number;
}

/** Runs one batch on instance `instance` (free until the promise settles): one result per request, in order. */
export type RunBatch<Req, Res> = (requests: Req[], instance: number) => Promise<Res[]>;

export class DynamicBatcher<Req, Res> {
  private readonly queue: BatchItem<Req, Res>[] = [];
  /** Instances not running a batch. */
  private readonly idle: number[];
  /** Settles when every batch sent so far has been answered: the next batch's answers wait for it. */
  private answered: Promise<void> = Promise.resolve();
  private waitTimer: ReturnType<typeof setTimeout> | undefined;
  private draining = false;
  private drained: (() => void)[] = [];

  constructor(
    readonly name: string,
    private readonly opts: BatcherOptions,
    private readonly runBatch: RunBatch<Req, Res>,
    private readonly onBatch: (s: BatchStats) => void = () => {},
  ) {
    this.idle = Array.from({ length: opts.instances ?? 1 }, (_, i) => i);
  }

  /** Requests waiting (not running). */
  get queued(): number {
    return this.queue.length;
  }

  /** Batches running. */
  get running(): number {
    return (this.opts.instances ?? 1) - this.idle.length;
  }

  submit(request: Req, rows: number, key: string, timeoutMs = this.opts.timeoutMs): Promise<Res> {
    if (this.draining)
      return Promise.reject(
        new KilnError('E_UNAVAILABLE', `model '${this.name}' is shutting down`, {
          hint: 'send the request to another replica',
        }),
      );
    if (this.opts.maxQueueSize > 0 && this.queue.length >= this.opts.maxQueueSize)
      return Promise.reject(
        new KilnError('E_UNAVAILABLE', `model '${this.name}' has ${this.queue.length} requests queued, its limit`, {
          hint: 'retry after the Retry-After seconds, or raise max_queue_size',
        }),
      );
    return new Promise<Res>((resolve, reject) => {
      const item: BatchItem<Req, Res> = { request, rows, key, enqueuedAt: performance.now(), resolve, reject };
      if (timeoutMs > 0)
        item.timer = setTimeout(() => {
          const i = this.queue.indexOf(item);
          if (i < 0) return; // already running: it finishes
          this.queue.splice(i, 1);
          reject(
            new KilnError('E_TIMEOUT', `the request waited ${timeoutMs} ms in model '${this.name}'s queue`, {
              hint: 'retry later, or raise timeout_ms (the request parameter timeout is in microseconds)',
            }),
          );
          this.schedule();
        }, timeoutMs);
      this.queue.push(item);
      this.schedule();
    });
  }

  /** Refuses new requests; resolves when every queued and running request has been answered. */
  drain(): Promise<void> {
    this.draining = true;
    this.schedule();
    if (this.running === 0 && this.queue.length === 0) return this.answered;
    return new Promise((r) => this.drained.push(r));
  }

  /** How many requests at the head to send now; 0: wait (with the time to wait). */
  private pick(now: number): { take: number; waitMs: number } {
    const head = this.queue[0];
    const max = this.opts.maxBatchSize;
    if (max === 0) return { take: 1, waitMs: 0 };
    let rows = 0;
    let take = 0;
    let preferred = 0;
    let closed = false;
    for (const item of this.queue) {
      if (item.key !== head.key || rows + item.rows > max) {
        closed = true;
        break;
      }
      rows += item.rows;
      take++;
      if (this.opts.preferredBatchSizes.includes(rows)) preferred = take;
    }
    if (closed || rows === max) return { take, waitMs: 0 };
    if (preferred > 0) return { take: preferred, waitMs: 0 };
    const waitMs = head.enqueuedAt + this.opts.maxQueueDelayMs - now;
    if (waitMs <= 0 || this.draining) return { take, waitMs: 0 };
    return { take: 0, waitMs };
  }

  private schedule(): void {
    if (this.waitTimer !== undefined) {
      clearTimeout(this.waitTimer);
      this.waitTimer = undefined;
    }
    if (this.queue.length === 0) {
      if (this.draining && this.running === 0) {
        const done = this.drained.splice(0);
        void this.answered.then(() => {
          for (const r of done) r();
        });
      }
      return;
    }
    if (this.idle.length === 0) return;
    const now = performance.now();
    const { take, waitMs } = this.pick(now);
    if (take === 0) {
      this.waitTimer = setTimeout(() => this.schedule(), Math.max(1, Math.ceil(waitMs)));
      return;
    }
    const items = this.queue.splice(0, take);
    for (const it of items) clearTimeout(it.timer);
    const instance = this.idle.shift()!;
    const started = performance.now();
    const run = this.runBatch(
      items.map((it) => it.request),
      instance,
    ).then(
      (results) => {
        this.onBatch({
          requests: items.length,
          rows: items.reduce((a, it) => a + it.rows, 0),
          queueMs: items.map((it) => started - it.enqueuedAt),
          computeMs: performance.now() - started,
        });
        return () => items.forEach((it, i) => it.resolve(results[i]));
      },
      (e: unknown) => () => {
        for (const it of items) it.reject(e);
      },
    );
    // the instance takes the next batch at once; the answers go out after the earlier batches'
    void run.then(() => {
      this.idle.push(instance);
      this.schedule();
    });
    const earlier = this.answered;
    this.answered = run.then(async (answer) => {
      await earlier;
      answer();
    });
    // more instances idle: another batch may be ready too
    this.schedule();
  }
}
