// The browser demo's files: the page, the artifact, its info, and the runtime and demo scripts (from dist/), served
// cross-origin isolated (COOP/COEP) so the runtime can use Web Workers on shared memory. Shared by the demo server
// (`kiln serve MODEL`) and the model server (`kiln serve --models`, at /).
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEMO_PAGE } from '../demo/page.js';

const TYPES: Record<string, string> = {
  '.js': 'text/javascript',
  '.map': 'application/json',
  '.json': 'application/json',
  '.html': 'text/html',
};

export const DEMO_HEADERS = {
  'Cache-Control': 'no-cache',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

/** dist/ (holding runtime/ and demo/): next to this file when it runs from dist, else ./dist (tests run src/). */
export function distRoot(): string {
  const here = join(dirname(fileURLToPath(import.meta.url)), '..');
  return existsSync(join(here, 'runtime', 'index.js')) && existsSync(join(here, 'demo', 'app.js'))
    ? here
    : join(process.cwd(), 'dist');
}

/** The demo file at a URL path, or undefined (404). */
export function demoAsset(
  path: string,
  dist: string,
  artifact: Uint8Array,
  info: string,
): { body: string | Uint8Array; type: string } | undefined {
  if (path === '/' || path === '/index.html') return { body: DEMO_PAGE, type: 'text/html; charset=utf-8' };
  if (path === '/model.kiln') return { body: artifact, type: 'application/octet-stream' };
  if (path === '/info.json') return { body: info, type: TYPES['.json'] };
  if (path.startsWith('/kiln/runtime/') || path.startsWith('/kiln/demo/')) {
    // Only the runtime and the demo script, never the rest of dist/ (the compiler, the CLI).
    const file = normalize(join(dist, path.slice('/kiln/'.length)));
    const ok = [join(dist, 'runtime') + sep, join(dist, 'demo') + sep].some((d) => file.startsWith(d));
    if (ok && existsSync(file) && statSync(file).isFile())
      return { body: readFileSync(file), type: TYPES[file.slice(file.lastIndexOf('.'))] ?? 'application/octet-stream' };
  }
  return undefined;
}
