// The KilnError a call throws, for tests of bad input: a TypeError, another error or no error fails the test, and
// every KilnError must carry a hint (what to do).
import { expect } from 'vitest';
import { KilnError } from '../../src/index.js';

export async function kilnError(f: () => unknown): Promise<KilnError> {
  try {
    await f();
  } catch (e) {
    if (!(e instanceof KilnError)) throw e;
    expect(e.hint).toBeTruthy();
    return e;
  }
  throw new Error('expected a KilnError');
}
