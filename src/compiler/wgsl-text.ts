// The WGSL of a compiled model, as `kiln inspect --level wgsl` prints it: per kernel its ops, then each stage's
// launch (workgroup size, grid, bound parameters) and shader text.
import { KilnError } from '../runtime/errors.js';
import type { WebGpuSection } from '../runtime/artifact-format.js';
import { WEBGPU_LIMIT_NAMES } from '../runtime/webgpu-limits.js';
import { profileName } from '../codegen/common/webgpu-profile.js';

/** Prints the shaders of a WebGPU section (all kernels, or those listed), in kernel order. */
/** The limits profile a section was compiled to, in one line (its name when it is a named one). */
export function describeWebGpuLimits(sec: WebGpuSection): string {
  if (!sec.limits)
    return 'WebGPU limits profile: none recorded (an older Kiln; kernels are checked one by one at load)';
  const name = profileName(sec.limits);
  const all = WEBGPU_LIMIT_NAMES.map((k) => `${k} ${sec.limits![k]}`).join(', ');
  return `WebGPU limits profile: ${name ?? 'custom'} (${all})`;
}

export function printWebGpuSection(sec: WebGpuSection, kernels?: readonly number[]): string {
  const pick = kernels ?? sec.kernels.map((_, i) => i);
  const bad = pick.find((k) => !(Number.isInteger(k) && k >= 0 && k < sec.kernels.length));
  if (bad !== undefined)
    throw new KilnError('E_INPUT', `no WebGPU kernel ${bad}`, { hint: `kernels are 0..${sec.kernels.length - 1}` });
  const out: string[] = [`// ${describeWebGpuLimits(sec)}`];
  for (const ki of pick) {
    const k = sec.kernels[ki];
    const calls = sec.calls.filter((c) => c.kernel === ki).length;
    out.push(`// kernel ${ki} ${k.name}: ${k.ops.join(' + ') || 'copy'} (${calls} call${calls === 1 ? '' : 's'})`);
    const nargs = sec.calls.find((c) => c.kernel === ki)?.args.length ?? 0;
    const params = (p: number) => (p < nargs ? `arg${p}` : `temp${p - nargs}`);
    k.stages.forEach((st, i) => {
      // uniform values typed as the shader reads them (`let kiln_uN: T = ...`)
      const types = new Map([...st.code.matchAll(/let kiln_u(\d+): (\w+)/g)].map((m) => [Number(m[1]), m[2]]));
      const show = (w: number, i: number) =>
        types.get(i) === 'f32'
          ? String(new Float32Array(new Uint32Array([w]).buffer)[0])
          : types.get(i) === 'u32'
            ? String(w >>> 0)
            : String(w | 0);
      const uniforms = st.uniforms ? `, uniforms [${st.uniforms.map(show)}]` : '';
      out.push(
        `// ${k.name} stage ${i}: workgroup ${st.workgroupSize}, grid [${st.grid}], bindings [${st.bindings.map((p, b) => (st.windows ? `${params(p)} window ${st.windows[b]}` : params(p)))}]${uniforms}`,
      );
      out.push(st.code);
    });
  }
  return out.join('\n');
}
