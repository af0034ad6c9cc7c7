// Command-line checks shared by the subcommands. A command line kiln cannot use is KilnError E_USAGE: the top
// level prints the message and the subcommand's usage lines, and exits with status 2.
import { KilnError } from '../runtime/errors.js';

export function usageError(message: string, hint?: string): KilnError {
  return new KilnError('E_USAGE', message, hint ? { hint } : {});
}

/** An integer flag: undefined -> dflt; anything but an integer in [min, max] is a usage error. */
export function intFlag(
  s: string | undefined,
  flag: string,
  dflt: number,
  min = 1,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (s === undefined) return dflt;
  const n = Number(s);
  if (s.trim() === '' || !Number.isInteger(n) || n < min || n > max) {
    const range =
      max === Number.MAX_SAFE_INTEGER
        ? min === 1
          ? 'a positive integer'
          : min === 0
            ? 'a non-negative integer'
            : `an integer >= ${min}`
        : `an integer from ${min} to ${max}`;
    throw usageError(`bad ${flag} '${s}': expected ${range} (e.g. ${flag} ${dflt})`);
  }
  return n;
}

/** A flag with a fixed set of values: undefined -> dflt. */
export function choiceFlag<T extends string>(s: string | undefined, flag: string, choices: readonly T[], dflt: T): T;
export function choiceFlag<T extends string>(s: string | undefined, flag: string, choices: readonly T[]): T | undefined;
export function choiceFlag<T extends string>(
  s: string | undefined,
  flag: string,
  choices: readonly T[],
  dflt?: T,
): T | undefined {
  if (s === undefined) return dflt;
  if (!(choices as readonly string[]).includes(s))
    throw usageError(
      `unknown ${flag} '${s}'`,
      `use ${choices.length > 1 ? `${choices.slice(0, -1).join(', ')} or ${choices[choices.length - 1]}` : choices[0]}`,
    );
  return s as T;
}

/** "name=value" (--input, --specialize) -> [name, value]. */
export function namedValue(s: string, flag: string, example: string): [string, string] {
  const eq = s.indexOf('=');
  if (eq <= 0 || eq === s.length - 1) throw usageError(`bad ${flag} '${s}'`, `write ${flag} ${example}`);
  return [s.slice(0, eq), s.slice(eq + 1)];
}
