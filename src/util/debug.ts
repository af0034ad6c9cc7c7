// KILN_DEBUG: comma-separated debug switches. `stack`: the CLI prints stack traces; `verify`: the graph and loop
// IR are verified after every pass (slower; a broken pass fails where it breaks the IR); `all`: every switch.
export type DebugSwitch = 'stack' | 'verify';

export function debugSwitch(name: DebugSwitch): boolean {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.KILN_DEBUG ?? '';
  return env.split(',').some((s) => s.trim() === name || s.trim() === 'all');
}
