// Prometheus metrics of the model server (prom-client), on a registry of its own so that several servers in one
// process (tests) do not share counters.
import type * as Prom from 'prom-client';
import type { BatchStats } from './batcher.js';

export interface ServeMetrics {
  registry: Prom.Registry;
  requests: Prom.Counter<'model'>;
  failures: Prom.Counter<'model' | 'code'>;
  queueSeconds: Prom.Histogram<'model'>;
  computeSeconds: Prom.Histogram<'model'>;
  batchSize: Prom.Histogram<'model'>;
  inFlight: Prom.Gauge<'model'>;
  /** Requests waiting in each model's queue, read at each scrape. */
  queued: Prom.Gauge<'model'>;
  /** Registers a model's queue length for the queued gauge. */
  trackQueue(model: string, length: () => number): void;
  /** Records one batch the model's batcher ran. */
  batch(model: string, s: BatchStats): void;
}

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export function createMetrics(prom: typeof Prom): ServeMetrics {
  const registry = new prom.Registry();
  prom.collectDefaultMetrics({ register: registry, prefix: 'kiln_' });
  const registers = [registry];
  const queues = new Map<string, () => number>();
  const m = {
    registry,
    requests: new prom.Counter({
      name: 'kiln_inference_requests_total',
      help: 'Inference requests received, per model (infer and predict)',
      labelNames: ['model'] as const,
      registers,
    }),
    failures: new prom.Counter({
      name: 'kiln_inference_failures_total',
      help: 'Inference requests answered with an error, per model and KilnError code',
      labelNames: ['model', 'code'] as const,
      registers,
    }),
    queueSeconds: new prom.Histogram({
      name: 'kiln_queue_duration_seconds',
      help: "Time a request waited in its model's batcher queue",
      labelNames: ['model'] as const,
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    computeSeconds: new prom.Histogram({
      name: 'kiln_compute_duration_seconds',
      help: 'Time of one batched run() on the model (stacking and splitting included)',
      labelNames: ['model'] as const,
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    batchSize: new prom.Histogram({
      name: 'kiln_batch_size',
      help: 'Rows per batched run() (before padding)',
      labelNames: ['model'] as const,
      buckets: [1, 2, 4, 8, 16, 32, 64, 128],
      registers,
    }),
    inFlight: new prom.Gauge({
      name: 'kiln_inflight_requests',
      help: 'Requests received and not yet answered, per model',
      labelNames: ['model'] as const,
      registers,
    }),
    queued: new prom.Gauge({
      name: 'kiln_queued_requests',
      help: "Requests waiting in the model's batcher queue (not yet running)",
      labelNames: ['model'] as const,
      registers,
      collect() {
        for (const [model, length] of queues) this.set({ model }, length());
      },
    }),
  };
  return {
    ...m,
    trackQueue(model, length) {
      queues.set(model, length);
    },
    batch(model, s) {
      for (const q of s.queueMs) m.queueSeconds.observe({ model }, q / 1000);
      m.computeSeconds.observe({ model }, s.computeMs / 1000);
      m.batchSize.observe({ model }, s.rows);
    },
  };
}
