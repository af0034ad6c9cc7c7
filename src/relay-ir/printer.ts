// Text form of the graph IR, one binding per line, in the spirit of Relay's text format.
import { type FuncNode, type GExpr, isFuncCall, opName, postOrder } from './expr.js';
import type { AttrValue } from './op.js';
import { bodiesOf, isControlCall } from './control.js';
import { printType } from './types.js';
import { KilnError } from '../runtime/errors.js';
import { elementValue } from '../runtime/half.js';

function attr(v: AttrValue): string {
  return Array.isArray(v) ? `[${v.join(',')}]` : JSON.stringify(v);
}

export function printFunc(fn: FuncNode): string {
  const names = new Map<GExpr, string>();
  const lines: string[] = [];
  const inner: FuncNode[] = [];
  let n = 0,
    c = 0;
  fn.params.forEach((p) => names.set(p, `%${p.name}`));
  const ref = (e: GExpr): string => {
    const s = names.get(e);
    if (s) return s;
    if (e.kind === 'const') {
      const name =
        e.value.data.length === 1
          ? `${elementValue(e.value.dtype, e.value.data, 0)}:${e.type.dtype}`
          : `@c${c++}:${printType(e.type)}`;
      names.set(e, name);
      return name;
    }
    throw new KilnError('E_INTERNAL', 'printer: unvisited node', { hint: 'please report this with the model' });
  };
  for (const e of postOrder(fn.body)) {
    if (e.kind === 'call') {
      const attrs = Object.entries(e.attrs).map(([k, v]) => `${k}=${attr(v)}`);
      if (isFuncCall(e) && !inner.includes(e.op)) inner.push(e.op);
      // a control region's bodies print before the function that calls them
      if (isControlCall(e)) for (const b of bodiesOf(e.op.control)) if (!inner.includes(b)) inner.push(b);
      const name = `%${n++}`;
      const origin = e.origin.length
        ? `  # ${e.origin.slice(0, 4).join(', ')}${e.origin.length > 4 ? ', ...' : ''}`
        : '';
      lines.push(
        `  ${name} = ${opName(e)}(${[...e.args.map(ref), ...attrs].join(', ')}) : ${printType(e.type)}${origin}`,
      );
      names.set(e, name);
    } else if (e.kind === 'tuple') {
      const name = `%${n++}`;
      lines.push(`  ${name} = (${e.fields.map(ref).join(', ')})`);
      names.set(e, name);
    }
  }
  const head = `fn ${fn.primitive ? '(primitive) ' : ''}${fn.name}(${fn.params.map((p) => `%${p.name}: ${printType(p.type)}`).join(', ')}) -> ${printType(fn.body.type)} {`;
  const text = `${head}\n${lines.join('\n')}\n  ${ref(fn.body)}\n}\n`;
  return inner.map(printFunc).join('\n') + (inner.length ? '\n' : '') + text;
}
