export async function inspectCommand(_pos: string[], _v: Record<string, unknown>): Promise<number> {
  throw new Error('not yet');
}
