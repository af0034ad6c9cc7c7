// kiln serve [MODEL.kiln|MODEL.onnx] [--port N]: the browser demo. Serves the page, the runtime and the demo script
// (from dist/), and the artifact, on 127.0.0.1 only, cross-origin isolated (COOP/COEP) so the runtime can use
// Web Workers on shared memory. An .onnx model is compiled first with target 'webgpu' (the artifact then holds
// WGSL and WebAssembly, and the page picks).
import { createServer, type Server } from 'node:http';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { KilnError } from '../runtime/errors.js';
import { DEMO_PAGE } from '../demo/page.js';
import { intFlag } from './usage.js';

export const DEFAULT_DEMO_MODEL = join('.cache', 'models', 'mobilenet_v2', 'model.onnx');

export interface DemoServerOptions {
  /** An .onnx model (compiled on start) or a .kiln artifact. Default: DEFAULT_DEMO_MODEL. */
  model?: string;
  /** An artifact to serve instead of `model`. */
  artifact?: Uint8Array;
  /** Port on 127.0.0.1; 0 (the default) picks a free one. */
  port?: number;
  log?: (line: string) => void;
}

export interface DemoServer {
  url: string;
  port: number;
  artifact: Uint8Array;
  close(): Promise<void>;
}

const TYPES: Record<string, string> = {
  '.js': 'text/javascript',
  '.map': 'application/json',
  '.json': 'application/json',
  '.html': 'text/html',
};

/** dist/ (holding runtime/ and demo/): next to this file when it runs from dist, else ./dist (tests run src/). */
function distRoot(): string {
  const here = join(dirname(fileURLToPath(import.meta.url)), '..');
  return existsSync(join(here, 'runtime', 'index.js')) && existsSync(join(here, 'demo', 'app.js'))
    ? here
    : join(process.cwd(), 'dist');
}

async function artifactFor(path: string, log: (s: string) => void): Promise<Uint8Array> {
  if (!existsSync(path)) {
    throw new KilnError('E_IO', `no model at ${path}`, {
      hint:
        path === DEFAULT_DEMO_MODEL
          ? 'generate the test models first: npm run fixtures'
          : 'give an .onnx model or a .kiln artifact',
    });
  }
  const bytes = readFileSync(path);
  if (!path.endsWith('.onnx')) return bytes;
  const { compile } = await import('../compiler/compile.js');
  const t0 = performance.now();
  let r: Awaited<ReturnType<typeof compile>>;
  try {
    r = await compile(bytes, { modelPath: path, target: 'webgpu' });
  } catch (e) {
    if (!(e instanceof KilnError) || e.code !== 'E_UNSUPPORTED') throw e;
    log(`kiln: no WebGPU kernels for this model (${e.message}); serving WebAssembly only`);
    r = await compile(bytes, { modelPath: path });
  }
  log(
    `kiln: compiled ${path} in ${((performance.now() - t0) / 1000).toFixed(2)} s (${(r.artifact.length / 1048576).toFixed(2)} MiB${r.header.webgpu ? ', WebGPU + WebAssembly' : ''})`,
  );
  return r.artifact;
}

export async function startDemoServer(opts: DemoServerOptions = {}): Promise<DemoServer> {
  const log = opts.log ?? (() => {});
  const modelPath = opts.model ?? DEFAULT_DEMO_MODEL;
  const artifact = opts.artifact ?? (await artifactFor(modelPath, log));
  const name = opts.artifact
    ? 'model'
    : basename(modelPath) === 'model.onnx'
      ? basename(dirname(modelPath))
      : basename(modelPath).replace(/\.(onnx|kiln)$/, '');
  const info = JSON.stringify({ name });
  const dist = distRoot();
  if (!existsSync(join(dist, 'demo', 'app.js')))
    throw new KilnError('E_IO', `no demo script at ${join(dist, 'demo', 'app.js')}`, {
      hint: 'build first: npm run build',
    });
  const server: Server = createServer((req, res) => {
    const path = decodeURIComponent((req.url ?? '/').split('?')[0]);
    let body: string | Uint8Array | undefined;
    let type = 'application/octet-stream';
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405).end();
      return;
    }
    if (path === '/' || path === '/index.html') {
      body = DEMO_PAGE;
      type = 'text/html; charset=utf-8';
    } else if (path === '/model.kiln') body = artifact;
    else if (path === '/info.json') {
      body = info;
      type = TYPES['.json'];
    } else if (path.startsWith('/kiln/runtime/') || path.startsWith('/kiln/demo/')) {
      // Only the runtime and the demo script, never the rest of dist/ (the compiler, the CLI).
      const file = normalize(join(dist, path.slice('/kiln/'.length)));
      const ok = [join(dist, 'runtime') + sep, join(dist, 'demo') + sep].some((d) => file.startsWith(d));
      if (ok && existsSync(file) && statSync(file).isFile()) {
        body = readFileSync(file);
        type = TYPES[file.slice(file.lastIndexOf('.'))] ?? type;
      }
    }
    if (body === undefined) {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
      return;
    }
    res.writeHead(200, {
      'Content-Type': type,
      'Cache-Control': 'no-cache',
      'Cross-Origin-Opener-Policy': 'same-origin',
      'Cross-Origin-Embedder-Policy': 'require-corp',
      'Cross-Origin-Resource-Policy': 'same-origin',
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(
        e.code === 'EADDRINUSE'
          ? new KilnError('E_IO', `port ${opts.port} is in use`, { hint: 'pick another with --port N' })
          : e,
      ),
    );
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    port,
    artifact,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

export async function serveCommand(pos: string[], v: { port?: string }): Promise<number> {
  const port = intFlag(v.port, '--port', 8080, 0, 65535);
  const server = await startDemoServer({ model: pos[0], port, log: (s) => console.log(s) });
  console.log(`kiln: demo at ${server.url} (127.0.0.1 only; Ctrl-C stops)`);
  await new Promise<void>((resolve) => process.once('SIGINT', resolve));
  await server.close();
  return 0;
}
