// Text form of a kernel's tensor expressions: one line per compute, producers first.
import { printExpr } from './expr.js';
import type { Tensor } from './tensor.js';

export function printTensorExprs(inputs: readonly Tensor[], computes: readonly Tensor[]): string {
  const lines = inputs.map((t) => `${t.name} = placeholder(${t.dtype}[${t.shape.join(',')}])`);
  for (const t of computes) {
    const idx = t.axes.map((a) => a.v.name).join(', ');
    lines.push(`${t.name}[${idx}] : ${t.dtype}[${t.shape.join(',')}] = ${printExpr(t.body!)}`);
  }
  return `${lines.join('\n')}\n`;
}
