// The runtime must load alone in a browser: nothing from the compiler folders, no Node built-ins.
import { describe, expect, it } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

describe('runtime', () => {
  it('imports only its own files and web-platform APIs', () => {
    const dir = 'src/runtime';
    for (const f of readdirSync(dir).filter((x) => x.endsWith('.ts'))) {
      const src = readFileSync(join(dir, f), 'utf8');
      const imports = [...src.matchAll(/(?:import|export)[^'"]*from\s+'([^']+)'/g)].map((m) => m[1]);
      for (const spec of imports) expect(spec, `${f} imports ${spec}`).toMatch(/^\.\/[\w-]+\.js$/);
      expect(src, f).not.toMatch(/\bprocess\.|\brequire\(|\bBuffer\./); // Node's Buffer, not ArrayBuffer
    }
  });
});
