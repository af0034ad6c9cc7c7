#!/usr/bin/env node
// The kiln command. Each subcommand is a thin layer over the API.
import { parseArgs } from 'node:util';
import { KilnError } from '../runtime/errors.js';
import { onnxTestCommand } from './onnx-test.js';

const USAGE = `kiln — ahead-of-time compiler for ONNX models

  kiln compile MODEL.onnx -o OUT.kiln [--input-shape name=1,3,224,224] [--specialize name=file.pb] [--no-optimize]
  kiln run ARTIFACT.kiln [--input name=file.npy|.pb ...] [--output-dir DIR [--output-format npy|pb]] [--bench N] [--threads N] [--target wasm|webgpu|cuda]
  kiln profile ARTIFACT.kiln [--runs N] [--trace trace.json] [--input name=file ...] [--top N]
  kiln compile MODEL.onnx --target cuda [--sm 80|86|90] [--verbose]   PTX for NVIDIA GPUs (--verbose: ptxas resource usage)
  kiln inspect MODEL.onnx|ARTIFACT.kiln --level graph|fused|te|loop|wasm|wgsl|ptx [--kernel N] [--sm 80|86|90]
  kiln onnx-test DIR... [--verbose] [--json FILE] [--filter REGEX] [--target wasm|webgpu|cuda]
  kiln tune MODEL.onnx [--target wasm|webgpu|cuda [--sm 80] [--build-only]] [--trials N] [--time-budget 20m]
            [--workers 2] [--db PATH] [--seed S] [--strategy evolutionary|random|compare] [--curve FILE.csv]
  kiln db export|import FILE.jsonl [--db PATH]   (also: kiln db stats)
  kiln demo                      compile a bundled model, run it, compare with ONNX Runtime
  kiln serve [MODEL.kiln|MODEL.onnx] [--port N]   browser demo: classify an image (WebGPU or WebAssembly)
`;

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      output: { type: 'string', short: 'o' },
      'output-dir': { type: 'string' },
      'output-format': { type: 'string' },
      input: { type: 'string', multiple: true, short: 'i' },
      'input-shape': { type: 'string', multiple: true },
      specialize: { type: 'string', multiple: true },
      'no-optimize': { type: 'boolean' },
      bench: { type: 'string' },
      runs: { type: 'string' },
      threads: { type: 'string' },
      trace: { type: 'string' },
      top: { type: 'string' },
      level: { type: 'string' },
      kernel: { type: 'string' },
      verbose: { type: 'boolean', short: 'v' },
      json: { type: 'string' },
      filter: { type: 'string' },
      target: { type: 'string' },
      sm: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
      trials: { type: 'string' },
      'time-budget': { type: 'string' },
      workers: { type: 'string' },
      db: { type: 'string' },
      seed: { type: 'string' },
      strategy: { type: 'string' },
      curve: { type: 'string' },
      'no-tuning': { type: 'boolean' },
      'build-only': { type: 'boolean' },
      port: { type: 'string' },
    },
  });
  if (!cmd || values.help || cmd === 'help') { console.log(USAGE); return 0; }
  switch (cmd) {
    case 'onnx-test': return onnxTestCommand(positionals, { verbose: values.verbose, json: values.json, filter: values.filter, target: values.target });
    case 'compile': return (await import('./compile.js')).compileCommand(positionals, values);
    case 'run': return (await import('./run.js')).runCommand(positionals, values);
    case 'profile': return (await import('./profile.js')).profileCommand(positionals, values);
    case 'inspect': return (await import('./inspect.js')).inspectCommand(positionals, values);
    case 'tune': return (await import('./tune.js')).tuneCommand(positionals, values);
    case 'db': return (await import('./tune.js')).dbCommand(positionals, values);
    case 'demo': return (await import('./demo.js')).demoCommand(positionals, values);
    case 'serve': return (await import('./serve.js')).serveCommand(positionals, values);
    default:
      console.error(`kiln: unknown command '${cmd}'\n\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (e) => {
  if (e instanceof KilnError) {
    console.error(`kiln: ${e.message}`);
    process.exitCode = 1;
  } else {
    console.error(e);
    process.exitCode = 70;
  }
});
