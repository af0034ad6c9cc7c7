// kiln inspect MODEL.onnx --level graph|fused|te|loop|wasm|wgsl|ptx|llvm [--kernel N]   print an IR level
// kiln inspect MODEL.onnx --level llvm [--cpu LEVEL]                   the native backend's LLVM module (no LLVM needed)
// kiln inspect MODEL.onnx --level loop [--target T] [--after PASS]     the loop IR T's backend emits, or after PASS
// kiln inspect MODEL.onnx --level loop --target native [--cpu LEVEL]   ... of the native kernels (no LLVM needed)
// kiln inspect ARTIFACT.kiln                                            print the artifact's header summary
import { printControl } from '../runtime/control.js';
import type { IOBinding } from '../runtime/artifact-format.js';
import { compile, compileGraph, fuseForTarget, importAndOptimize, webgpuLimitsOf } from '../compiler/compile.js';
import { withDimRanges } from '../relay-ir/sym-dim.js';
import { asNativeKernel } from '../compiler/native-program.js';
import { printKernelTE } from '../compiler/kernel.js';
import { printFunc } from '../relay-ir/printer.js';
import { printPrimFunc } from '../schedule/loop-ir.js';
import { printTrace } from '../schedule/schedule.js';
import { type LoopTarget, loopIRAfterEachPass, loopPassNames, targetLoopIR } from '../compiler/loop-pipeline.js';
import { wasmText } from '../codegen/wasm/codegen.js';
import { readArtifact } from '../runtime/artifact.js';
import { printWebGpuSection } from '../compiler/wgsl-text.js';
import { KilnError } from '../runtime/errors.js';
import { type CompileFlags, compileOptions, readModel } from './compile.js';
import { choiceFlag, intFlag, usageError } from './usage.js';

const LEVELS = ['graph', 'fused', 'te', 'loop', 'wasm', 'wgsl', 'ptx', 'llvm'] as const;

export async function inspectCommand(
  pos: string[],
  v: CompileFlags & { level?: string; kernel?: string; after?: string },
): Promise<number> {
  const path = pos[0];
  const level = choiceFlag(v.level, '--level', LEVELS, 'graph');
  const kernel = v.kernel === undefined ? undefined : intFlag(v.kernel, '--kernel', 0, 0);
  const target: LoopTarget = (v.target as LoopTarget | undefined) ?? 'wasm';
  if (v.after !== undefined) {
    if (level !== 'loop') throw usageError(`--after names a loop-IR pass; it needs --level loop, not --level ${level}`);
    const names = loopPassNames(target);
    if (!names.includes(v.after))
      throw usageError(`no loop-IR pass '${v.after}' for --target ${target}`, `passes in order: ${names.join(', ')}`);
  }
  const bytes = readModel(path);
  // target native's program without its library, so that no LLVM tool runs: the graph passes of target native
  // (weights packed by the level's vector width), each kernel's native variant scheduled for the --cpu level
  const nativeProgram = async () => {
    const { cpuFlag } = await import('./compile.js');
    const opts = { ...compileOptions(path, { ...v, target: undefined, cpu: undefined }), target: 'native' as const };
    const cpu = cpuFlag(v.cpu);
    const r = await compileGraph(importAndOptimize(bytes, { ...opts, cpu }), { ...opts, cpu, nativeLibrary: false });
    return { ...r, cpu };
  };
  if (path.endsWith('.kiln')) {
    const { header: h, wasm } = await readArtifact(bytes);
    if (v.level === 'wasm') {
      console.log(wasmText(wasm));
      return 0;
    }
    if (v.level === 'wgsl') {
      if (!h.webgpu)
        throw new KilnError('E_INPUT', 'the artifact has no WGSL', { hint: 'compile it with --target webgpu' });
      if (kernel !== undefined && !(kernel < h.webgpu.kernels.length))
        throw new KilnError('E_INPUT', `no WebGPU kernel ${kernel}`, {
          hint: `kernels are 0..${h.webgpu.kernels.length - 1}`,
        });
      console.log(printWebGpuSection(h.webgpu, kernel !== undefined ? [kernel] : undefined));
      return 0;
    }
    if (v.level === 'ptx') {
      if (!h.cuda) throw new KilnError('E_INPUT', 'the artifact has no PTX', { hint: 'compile it with --target cuda' });
      console.log(h.cuda.ptx);
      return 0;
    }
    console.log(`Kiln ${h.kiln} artifact, target ${h.target}`);
    // (a binding with run-time sizes: its dims, then the layout at the symbols' upper bounds)
    const binding = (b: IOBinding) =>
      `${b.name}: ${b.dtype}[${b.dims ?? b.shape}]${b.dims ? ` (laid out at [${b.shape}])` : ''}`;
    console.log(`inputs:  ${h.inputs.map(binding).join(', ')}`);
    console.log(`outputs: ${h.outputs.map(binding).join(', ')}`);
    for (const s of h.symbols ?? [])
      console.log(
        `dim      ${s.name}: ${s.declared ? s.declared.join('..') : `${s.min}..${s.max}`}${s.counted ? ' (counted while the model runs)' : ''}`,
      );
    console.log(
      `memory:  peak arena ${h.plan.arenaBytes} bytes vs ${h.plan.intermediateBytes} bytes for all intermediates (${((100 * h.plan.arenaBytes) / Math.max(1, h.plan.intermediateBytes)).toFixed(1)}%); weights ${h.plan.weightBytes} bytes${h.symbols ? "; planned at the symbols' upper bounds" : ''}`,
    );
    console.log(`kernels: ${h.kernels.length}, calls: ${h.calls.length}`);
    h.calls.forEach((c, i) =>
      console.log(
        `  #${i} ${h.kernels[c.kernel].name} [${h.kernels[c.kernel].ops.join('+')}] <- ${c.origin.slice(0, 6).join(', ')}`,
      ),
    );
    if (h.control) console.log(`control program (If / Loop / Scan):\n${printControl(h.control)}`);
    return 0;
  }
  if (level === 'llvm') {
    // the whole module: kernels and the entry that calls them (printing it needs no LLVM tools)
    if (kernel !== undefined) throw usageError('--level llvm prints the whole module', 'leave --kernel out');
    const { nativeModuleText } = await import('../compiler/native-program.js');
    const { program, cpu } = await nativeProgram();
    console.log(nativeModuleText(program, cpu));
    return 0;
  }
  if (level === 'wgsl') {
    // the WebGPU section's own kernels (their numbering differs from the WebAssembly kernels')
    const { header } = await compile(bytes, compileOptions(path, { ...v, target: 'webgpu' }));
    console.log(printWebGpuSection(header.webgpu!, kernel !== undefined ? [kernel] : undefined));
    return 0;
  }
  if (level === 'graph' || level === 'fused') {
    // graph levels need no kernels, so they print for models with symbolic dims too
    const opts = compileOptions(path, v);
    const { graph, dimRanges } = importAndOptimize(bytes, opts);
    const fused = () => fuseForTarget(graph, webgpuLimitsOf(opts)).fused;
    console.log(printFunc(level === 'graph' ? graph : withDimRanges(dimRanges, fused)));
    return 0;
  }
  const r =
    level === 'loop' && target === 'native' ? await nativeProgram() : await compile(bytes, compileOptions(path, v));
  // the loop IR of a GPU target is its own kernels' (numbered as in its section); of target native, the native
  // variants of the program's kernels
  const kernels =
    level === 'loop' && target === 'native'
      ? r.program.kernels.map(asNativeKernel)
      : level === 'loop' && target !== 'wasm'
        ? r.gpuKernels
        : r.program.kernels;
  const pick = kernel !== undefined ? [kernel] : kernels.map((_, i) => i);
  if (pick.some((k) => !(k >= 0 && k < kernels.length)))
    throw new KilnError('E_INPUT', `no kernel ${v.kernel}`, { hint: `kernels are 0..${kernels.length - 1}` });
  switch (level) {
    case 'ptx': {
      const { gpuPrimFunc } = await import('../compiler/cuda-program.js');
      const { emitPtxModule } = await import('../codegen/ptx/codegen.js');
      const { cudaSm } = await import('./compile.js');
      const mod = emitPtxModule(
        pick.map((k) => gpuPrimFunc(kernels[k])),
        { sm: cudaSm(v.sm) },
      );
      for (const k of mod.kernels)
        console.log(
          `// kernel ${k.name}: ${k.launches.map((l) => `${l.entry} grid [${l.grid}] block [${l.block}] shared ${l.sharedBytes} B`).join('; ')}`,
        );
      console.log(mod.ptx);
      break;
    }
    case 'te':
      for (const k of pick)
        console.log(`// kernel ${kernels[k].prim.name}: ${kernels[k].ops.join(' + ')}\n${printKernelTE(kernels[k])}`);
      break;
    case 'loop':
      for (const i of pick) {
        const k = kernels[i];
        // the stored kernel went through lowering's passes already: the backend's passes make what it emits
        const prim =
          v.after === undefined
            ? targetLoopIR(k.prim, target)
            : loopIRAfterEachPass(k, target).find((s) => s.pass === v.after)!.prim;
        const trace = printTrace(k.trace)
          .split('\n')
          .map((l) => `//   ${l}`)
          .join('\n');
        console.log(
          `// kernel ${k.prim.name}: ${k.ops.join(' + ') || 'copy'}, ${target} loop IR ${v.after === undefined ? 'as emitted' : `after ${v.after}`}\n// trace:\n${trace}\n${printPrimFunc(prim)}`,
        );
      }
      break;
    case 'wasm': {
      const text = wasmText(r.program.wasm);
      if (kernel === undefined) {
        console.log(text);
        break;
      }
      const name = kernels[pick[0]].prim.name;
      // functions are unnamed in the binary; find the one the kernel's export points at
      const internal = new RegExp(`\\(export "${name}" \\(func (\\$\\S+)\\)\\)`).exec(text)?.[1];
      const start = internal ? text.indexOf(`(func ${internal} `) : -1;
      const end = text.indexOf('\n (func ', start + 1);
      console.log(start < 0 ? text : `;; kernel ${name}\n${text.slice(start, end < 0 ? undefined : end)}`);
      break;
    }
  }
  return 0;
}
