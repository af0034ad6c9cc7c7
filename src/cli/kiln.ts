#!/usr/bin/env node
// The kiln command. Each subcommand is a thin layer over the API.
// Exit status: 0 success; 1 a KilnError (bad model, artifact, input, missing device...); 2 a command line kiln cannot
// use (E_USAGE: the message and the subcommand's usage lines); 70 a bug in Kiln (E_INTERNAL or any other error: a
// short message, no stack unless KILN_DEBUG includes 'stack').
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { KilnError } from '../runtime/errors.js';
import { usageError } from './usage.js';
import { debugSwitch } from '../util/debug.js';

const OPTIONS = {
  output: { type: 'string', short: 'o' },
  'output-dir': { type: 'string' },
  'output-format': { type: 'string' },
  input: { type: 'string', multiple: true, short: 'i' },
  'input-shape': { type: 'string', multiple: true },
  'input-dtype': { type: 'string', multiple: true },
  dim: { type: 'string', multiple: true },
  specialize: { type: 'string', multiple: true },
  'no-optimize': { type: 'boolean' },
  bench: { type: 'string' },
  runs: { type: 'string' },
  threads: { type: 'string' },
  trace: { type: 'string' },
  top: { type: 'string' },
  level: { type: 'string' },
  kernel: { type: 'string' },
  after: { type: 'string' },
  verbose: { type: 'boolean', short: 'v' },
  json: { type: 'string' },
  filter: { type: 'string' },
  target: { type: 'string' },
  sm: { type: 'string' },
  cpu: { type: 'string' },
  'webgpu-limits': { type: 'string' },
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
  'symbolic-dims': { type: 'string' },
  'run-time-sizes': { type: 'boolean' },
  port: { type: 'string' },
  models: { type: 'string', multiple: true },
  config: { type: 'string' },
  host: { type: 'string' },
  labels: { type: 'string', multiple: true },
  'max-batch-size': { type: 'string' },
  'preferred-batch-sizes': { type: 'string' },
  'max-queue-delay-ms': { type: 'string' },
  'max-queue-size': { type: 'string' },
  'timeout-ms': { type: 'string' },
  'body-limit': { type: 'string' },
  instances: { type: 'string' },
  'log-level': { type: 'string' },
} as const;
type OptionName = keyof typeof OPTIONS;
type Flags = {
  [K in OptionName]?: (typeof OPTIONS)[K] extends { multiple: true }
    ? string[]
    : (typeof OPTIONS)[K]['type'] extends 'boolean'
      ? boolean
      : string;
};

interface Subcommand {
  usage: string[];
  options: OptionName[];
  /** Positional arguments: at least min, at most max, named in the message when one is missing. */
  positionals: { min: number; max: number; name: string };
  run(pos: string[], v: Flags): Promise<number>;
}

const COMPILE_FLAGS: OptionName[] = [
  'input-shape',
  'input-dtype',
  'dim',
  'specialize',
  'no-optimize',
  'target',
  'sm',
  'cpu',
  'webgpu-limits',
];

const COMMANDS: Record<string, Subcommand> = {
  compile: {
    usage: [
      'kiln compile MODEL.onnx -o OUT.kiln [--dim batch=1] [--input-shape name=1,3,224,224] [--specialize name=file.pb] [--no-optimize] [--db PATH | --no-tuning]',
      'kiln compile MODEL.onnx --target wasm|webgpu|cuda [--sm 80|86|90] [--verbose]   (cuda: PTX for NVIDIA GPUs; --verbose: ptxas resource usage)',
      'kiln compile MODEL.onnx --target native [--cpu x86-64-v3|x86-64-v4|x86-64|native]   (x86-64 code through LLVM (opt, llc) in a shared library; --cpu native: the best level of this machine)',
      "kiln compile MODEL.onnx --target webgpu [--webgpu-limits default|desktop|LIMITS.json]   (the device limits the kernels fit; default: the WebGPU spec's)",
      'kiln compile MODEL.pt2 ...   (a torch.export.save archive: the same options; the format is detected from the file)',
      'kiln compile MODEL.pt --input-shape x=1,3,224,224 [--input-dtype ids=int64] ...   (a torch.jit.save TorchScript file; a traced one records its inputs, a scripted one needs their shapes, and dtypes other than float32)',
    ],
    options: ['output', ...COMPILE_FLAGS, 'verbose', 'db', 'no-tuning'],
    positionals: { min: 1, max: 1, name: 'MODEL.onnx' },
    run: async (p, v) => (await import('./compile.js')).compileCommand(p, v),
  },
  run: {
    usage: [
      'kiln run ARTIFACT.kiln [--input name=file.npy|.pb ...] [--output-dir DIR [--output-format npy|pb]] [--bench N] [--threads N] [--target wasm|webgpu|cuda|native]',
    ],
    options: ['input', 'output-dir', 'output-format', 'bench', 'threads', 'target'],
    positionals: { min: 1, max: 1, name: 'ARTIFACT.kiln' },
    run: async (p, v) => (await import('./run.js')).runCommand(p, v),
  },
  profile: {
    usage: [
      'kiln profile ARTIFACT.kiln [--runs N] [--trace trace.json] [--input name=file ...] [--top N] [--threads N]',
      "          [--target wasm|native]   (native: each kernel call through the library's per-call entry)",
    ],
    options: ['runs', 'trace', 'input', 'top', 'threads', 'target'],
    positionals: { min: 1, max: 1, name: 'ARTIFACT.kiln' },
    run: async (p, v) => (await import('./profile.js')).profileCommand(p, v),
  },
  inspect: {
    usage: [
      'kiln inspect MODEL.onnx|MODEL.pt2|MODEL.pt|ARTIFACT.kiln --level graph|fused|te|loop|wasm|wgsl|ptx [--kernel N] [--sm 80|86|90]',
      '          [--target wasm|webgpu|cuda [--after PASS]]   (--level loop: the IR that target emits, or after PASS)',
    ],
    options: ['level', 'kernel', 'after', ...COMPILE_FLAGS],
    positionals: { min: 1, max: 1, name: 'MODEL.onnx or ARTIFACT.kiln' },
    run: async (p, v) => (await import('./inspect.js')).inspectCommand(p, v),
  },
  'onnx-test': {
    usage: [
      'kiln onnx-test DIR... [--verbose] [--json FILE] [--filter REGEX] [--target wasm|webgpu|cuda|native]',
      '                   [--symbolic-dims leading|all [--run-time-sizes]]',
    ],
    options: ['verbose', 'json', 'filter', 'target', 'symbolic-dims', 'run-time-sizes'],
    positionals: { min: 1, max: Infinity, name: 'DIR (a folder of ONNX backend test cases)' },
    run: async (p, v) =>
      (await import('./onnx-test.js')).onnxTestCommand(p, {
        verbose: v.verbose,
        json: v.json,
        filter: v.filter,
        target: v.target,
        symbolicDims: v['symbolic-dims'],
        runTimeSizes: v['run-time-sizes'],
      }),
  },
  tune: {
    usage: [
      'kiln tune MODEL.onnx [--target wasm|webgpu|cuda|native [--sm 80] [--build-only] [--cpu x86-64-v3|x86-64-v4|native]]',
      '          [--trials N] [--time-budget 20m]',
      '          [--workers 2] [--db PATH] [--seed S] [--strategy evolutionary|random|compare] [--curve FILE.csv]',
      '          [--webgpu-limits default|desktop|LIMITS.json]   (target webgpu: the kernels kiln compile makes for that profile)',
      '          [--dim NAME=LO..HI] [--dim NAME=N] [--input-shape name=1,3,224,224] [--specialize name=file.pb]',
      '          (a range tunes the kernels for run-time sizes of kiln compile --dim NAME=LO..HI, target wasm; timed at sizes in it)',
    ],
    options: [
      'target',
      'sm',
      'build-only',
      'cpu',
      'trials',
      'time-budget',
      'workers',
      'db',
      'seed',
      'strategy',
      'curve',
      'webgpu-limits',
      'input-shape',
      'dim',
      'specialize',
    ],
    positionals: { min: 1, max: 1, name: 'MODEL.onnx' },
    run: async (p, v) => (await import('./tune.js')).tuneCommand(p, v),
  },
  db: {
    usage: ['kiln db export|import FILE.jsonl [--db PATH]   (also: kiln db stats)'],
    options: ['db'],
    positionals: { min: 1, max: 2, name: 'export, import or stats' },
    run: async (p, v) => (await import('./tune.js')).dbCommand(p, v),
  },
  demo: {
    usage: ['kiln demo [MODEL_NAME] [--bench N]   compile a bundled model, run it, compare with ONNX Runtime'],
    options: ['bench'],
    positionals: { min: 0, max: 1, name: 'MODEL_NAME' },
    run: async (p, v) => (await import('./demo.js')).demoCommand(p, v),
  },
  serve: {
    usage: [
      'kiln serve [MODEL.kiln|MODEL.onnx] [--port N]   browser demo: classify an image (WebGPU or WebAssembly)',
      'kiln serve --models [NAME=]PATH... [--config FILE.yaml|json] [--port N] [--host H] [--threads N] [--instances N]',
      '           [--max-batch-size N] [--preferred-batch-sizes 4,8] [--max-queue-delay-ms N] [--max-queue-size N]',
      '           [--timeout-ms N] [--labels [NAME=]FILE] [--body-limit MB] [--input-shape x=8,3,224,224]',
      '           [--dim batch=1..8] [--target wasm|native] [--log-level info|warn|...]',
      '           model server: KServe v2 HTTP protocol, /predict, dynamic batching, /metrics',
    ],
    options: [
      'port',
      'models',
      'config',
      'host',
      'threads',
      'labels',
      'max-batch-size',
      'preferred-batch-sizes',
      'max-queue-delay-ms',
      'max-queue-size',
      'timeout-ms',
      'body-limit',
      'input-shape',
      'dim',
      'target',
      'instances',
      'log-level',
    ],
    positionals: { min: 0, max: 64, name: 'MODEL' },
    run: async (p, v) => (await import('./serve.js')).serveCommand(p, v),
  },
};

const ORDER = ['compile', 'run', 'profile', 'inspect', 'onnx-test', 'tune', 'db', 'demo', 'serve'];
const USAGE = `kiln — ahead-of-time compiler for ONNX models\n\n${ORDER.flatMap((c) => COMMANDS[c].usage)
  .map((l) => `  ${l}`)
  .join('\n')}\n`;

/** Usage lines of one subcommand (all of them for an unknown one). */
function usageOf(cmd: string | undefined): string {
  const sub = cmd !== undefined ? COMMANDS[cmd] : undefined;
  if (!sub) return USAGE;
  return `usage:\n${sub.usage.map((l) => `  ${l}`).join('\n')}\n(kiln --help lists every command)`;
}

/** node:util parseArgs errors as E_USAGE, in kiln's words. */
function parseError(e: unknown, cmd: string): KilnError {
  const err = e as { code?: string; message?: string };
  const msg = String(err.message ?? e);
  const name = /'(-[^']*?)(?: <value>)?'/.exec(msg)?.[1]?.replace(/^-\w, /, '');
  switch (err.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return usageError(`unknown option '${name ?? msg}' for kiln ${cmd}`);
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      if (/does not take an argument/.test(msg)) return usageError(`option ${name} takes no value`);
      if (/ambiguous/.test(msg))
        return usageError(
          `option ${name} is missing its value`,
          `write ${name}=VALUE for a value that starts with '-'`,
        );
      return usageError(`option ${name} is missing its value`);
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return usageError(`unexpected argument ${/'([^']*)'/.exec(msg)?.[1] ?? ''}`.trim());
    default:
      return usageError(msg.split('\n')[0]);
  }
}

async function main(argv: string[], state: { cmd?: string }): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '--help' || cmd === '-h') {
    console.log(USAGE);
    return 0;
  }
  if (cmd === 'help') {
    console.log(rest[0] && COMMANDS[rest[0]] ? usageOf(rest[0]) : USAGE);
    return 0;
  }
  const sub = COMMANDS[cmd];
  if (!sub) {
    if (cmd.startsWith('-'))
      throw usageError(`'${cmd}' before the command`, 'the command comes first: kiln COMMAND [options]');
    throw usageError(`unknown command '${cmd}'`);
  }
  state.cmd = cmd;
  const options: NonNullable<ParseArgsConfig['options']> = { help: OPTIONS.help };
  for (const o of sub.options) options[o] = OPTIONS[o];
  let values: Flags, positionals: string[];
  try {
    ({ values, positionals } = parseArgs({ args: rest, allowPositionals: true, strict: true, options }) as {
      values: Flags;
      positionals: string[];
    });
  } catch (e) {
    throw parseError(e, cmd);
  }
  if (values.help) {
    console.log(usageOf(cmd));
    return 0;
  }
  const { min, max, name } = sub.positionals;
  if (positionals.length < min) throw usageError(`kiln ${cmd}: no ${name} given`);
  if (positionals.length > max)
    throw usageError(`kiln ${cmd}: unexpected argument '${positionals[max]}'${max ? ` after ${name}` : ''}`);
  return sub.run(positionals, values);
}

const debugStack = () => debugSwitch('stack');

/** What reaches the top level: the message, never a stack (KILN_DEBUG=stack prints it); returns the exit status. */
function report(e: unknown, cmd: string | undefined): number {
  if (e instanceof KilnError && e.code === 'E_USAGE') {
    console.error(`kiln: ${e.message}\n\n${usageOf(cmd)}`);
    return 2;
  }
  if (e instanceof KilnError && e.code !== 'E_INTERNAL') {
    console.error(`kiln: ${e.message}`);
    if (debugStack()) console.error(e.stack);
    return 1;
  }
  const what =
    e instanceof KilnError
      ? e.message
      : e instanceof Error
        ? `internal error: ${e.name}: ${e.message.split('\n')[0]}`
        : `internal error: ${String(e)}`;
  console.error(`kiln: ${what}`);
  console.error(
    'kiln: this is a bug in Kiln; please report it with the command line and the model' +
      (debugStack() ? '' : ' (KILN_DEBUG=stack prints the stack trace)'),
  );
  if (debugStack() && e instanceof Error) console.error(e.stack);
  return 70;
}

const state: { cmd?: string } = {};
let reported = false;
const fatal = (e: unknown) => {
  if (reported) return;
  reported = true;
  process.exitCode = report(e, state.cmd);
};
// errors thrown outside main's promise chain (a worker's event, a stray rejection) get the same short report
process.on('uncaughtException', (e) => {
  fatal(e);
  process.exit();
});
process.on('unhandledRejection', (e) => {
  fatal(e);
  process.exit();
});
main(process.argv.slice(2), state).then((code) => {
  if (!reported) process.exitCode = code;
}, fatal);
