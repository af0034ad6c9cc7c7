// Workload identity: a kernel's tensor expressions printed canonically (tensors and variables renumbered in
// order of appearance, shapes and dtypes included) and hashed with a format version. The same kernel built in
// any process on any machine gets the same key; a different shape, dtype or computation gets another, and a kernel
// for run-time sizes another for other ranges of its symbols.
import { createHash } from 'node:crypto';
import { KilnError } from '../runtime/errors.js';
import type { Expr, Var } from '../tensor-expr/expr.js';
import type { Tensor } from '../tensor-expr/tensor.js';
import { topoComputes } from '../schedule/schedule.js';
import type { BuiltKernel } from '../compiler/kernel.js';

/**
 * Bump when the canonical text or the schedule-trace format changes meaning: old records stop matching.
 * (Still 1 with the symbols' ranges in the text of a kernel for run-time sizes: a static kernel's text is what it was,
 * so old records keep matching, and no record was ever made for a kernel for run-time sizes before its text carried
 * them: the tuner could not build such kernels, and compiling did not look them up.)
 */
export const WORKLOAD_FORMAT = 1;

export function canonicalTE(inputs: readonly Tensor[], outputs: readonly Tensor[]): string {
  const computes = topoComputes(outputs);
  const tname = new Map<Tensor | object, string>();
  inputs.forEach((t, i) => tname.set(t, `in${i}`));
  computes.forEach((t, i) => tname.set(t, `t${i}`));
  const vname = new Map<Var, string>();
  const v = (x: Var) => {
    let n = vname.get(x);
    if (n === undefined) {
      n = `v${vname.size}`;
      vname.set(x, n);
    }
    return n;
  };
  const bufName = (b: object) => {
    const n = tname.get(b);
    if (n === undefined)
      throw new KilnError('E_INTERNAL', 'canonicalTE: load from a tensor outside the kernel', {
        hint: 'please report this with the model',
      });
    return n;
  };
  const pe = (e: Expr): string => {
    switch (e.k) {
      case 'const':
        return `${typeof e.value === 'bigint' ? `${e.value}n` : Object.is(e.value, -0) ? '-0' : String(e.value)}:${e.dtype}`;
      case 'var':
        return v(e);
      case 'bin':
        return `${e.op}(${pe(e.a)},${pe(e.b)})`;
      case 'un':
        return `${e.op}(${pe(e.a)})`;
      case 'select':
        return `select(${pe(e.c)},${pe(e.a)},${pe(e.b)})`;
      case 'cast':
        return `${e.dtype}(${pe(e.a)})`;
      case 'load':
        return `${bufName(e.buf)}[${e.idx.map(pe).join(',')}]`;
      case 'reduce': {
        const axes = e.axes.map((a) => `${v(a.v)}:${a.extent}`).join(',');
        return `${e.op}<${axes}>(${pe(e.body)})`;
      }
    }
  };
  // A kernel for run-time sizes reads the symbols from an input that carries their ranges: the ranges are part of
  // its identity (at batch 1..8 and 2..8 its tensor expressions at the bounds are equal, its sizes are not).
  const ranges = (t: Tensor) =>
    t.valueRanges ? ` ranges(${t.valueRanges.map((r) => `${r.lo}..${r.hi}`).join(',')})` : '';
  const lines = inputs.map((t, i) => `in${i}: ${t.dtype}[${t.shape.join(',')}]${ranges(t)}`);
  computes.forEach((t, i) => {
    const idx = t.axes.map((a) => v(a.v)).join(',');
    const h = t.hints ? ` hints(${t.hints.vectorAxis ?? '-'},${t.hints.rowAxis ?? '-'})` : '';
    lines.push(
      `t${i}[${idx}]: ${t.dtype}[${t.shape.join(',')}]${outputs.includes(t) ? ' out' : ''}${h} = ${pe(t.body!)}`,
    );
  });
  return `${lines.join('\n')}\n`;
}

export interface Workload {
  key: string;
  text: string;
  format: number;
}

export function workloadOf(k: Pick<BuiltKernel, 'inputs' | 'output'>): Workload {
  const text = canonicalTE(k.inputs, [k.output]);
  const key = createHash('sha256').update(`kiln-workload/${WORKLOAD_FORMAT}\n${text}`).digest('hex');
  return { key, text, format: WORKLOAD_FORMAT };
}
