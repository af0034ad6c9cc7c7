// Temporary folders for tests, removed when the test file finishes: importing this module registers one afterAll
// on the importing file (vitest evaluates a test file's imports while collecting it, in the file's own module
// registry), so a full run leaves nothing in os.tmpdir().
import { afterAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const made: string[] = [];

afterAll(() => {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A new empty folder `os.tmpdir()/<prefix>XXXXXX`, removed after the test file's last test. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}
