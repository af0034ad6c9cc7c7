// Checking run-time inputs against the artifact's bindings (shared by every executor).
import { KilnError } from './errors.js';
import type { IOBinding } from './artifact-format.js';
import { type Tensor, formatShape, sizeOf } from './tensor.js';

export function checkInputs(inputs: readonly IOBinding[], feeds: Record<string, Tensor>): void {
  const names = inputs.map((i) => i.name);
  for (const k of Object.keys(feeds)) {
    if (!names.includes(k)) throw new KilnError('E_INPUT', `unknown input '${k}'`, { hint: `the model's inputs are: ${names.join(', ') || '(none)'}` });
  }
  for (const inp of inputs) {
    const t = feeds[inp.name];
    if (!t) throw new KilnError('E_INPUT', `missing input '${inp.name}' (${inp.dtype}${formatShape(inp.shape)})`, { hint: `pass every input: ${names.join(', ')}` });
    if (t.dtype !== inp.dtype) throw new KilnError('E_INPUT', `input '${inp.name}' has dtype ${t.dtype}, the model expects ${inp.dtype}`, { hint: 'convert the data to the expected type' });
    if (t.shape.length !== inp.shape.length || t.shape.some((d, i) => d !== inp.shape[i])) {
      throw new KilnError('E_INPUT', `input '${inp.name}' has shape ${formatShape(t.shape)}, the model was compiled for ${formatShape(inp.shape)}`, { hint: 'reshape the data, or recompile with --input-shape for this shape' });
    }
    if (t.data.length !== sizeOf(inp.shape)) throw new KilnError('E_INPUT', `input '${inp.name}' holds ${t.data.length} values for shape ${formatShape(t.shape)}`);
  }
}
