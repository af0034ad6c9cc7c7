// Kernels are compiled against a plain (unshared) imported memory so that a single-threaded load works
// everywhere, including pages that are not cross-origin isolated. For threads, the runtime flips the memory
// import's limits flag to "shared" (0x01 -> 0x03: same byte count) and compiles that variant.
import { KilnError } from './errors.js';

function readLeb(b: Uint8Array, at: number): [value: number, next: number] {
  let v = 0,
    shift = 0,
    i = at;
  for (;;) {
    const byte = b[i++];
    v += (byte & 0x7f) * 2 ** shift;
    shift += 7;
    if (!(byte & 0x80)) return [v, i];
  }
}

export function withSharedMemoryImport(wasm: Uint8Array): Uint8Array {
  const out = wasm.slice();
  let at = 8; // magic + version
  while (at < out.length) {
    const id = out[at];
    const [size, body] = readLeb(out, at + 1);
    if (id === 2) {
      let [count, p] = readLeb(out, body);
      while (count-- > 0) {
        let len: number;
        [len, p] = readLeb(out, p);
        p += len; // module name
        [len, p] = readLeb(out, p);
        p += len; // field name
        const kind = out[p++];
        if (kind === 0x02) {
          if (out[p] !== 0x01)
            throw new KilnError('E_ARTIFACT', 'kernel module memory import has no maximum; cannot share it', {
              hint: 'recompile the model',
            });
          out[p] = 0x03;
          return out;
        }
        if (kind === 0x00)
          [, p] = readLeb(out, p); // function: type index
        else if (kind === 0x01) {
          p++;
          const f = out[p++];
          [, p] = readLeb(out, p);
          if (f & 1) [, p] = readLeb(out, p);
        } // table
        else if (kind === 0x03)
          p += 2; // global: type + mutability
        else
          throw new KilnError('E_ARTIFACT', `unknown import kind ${kind} in the kernel module`, {
            hint: 'recompile the model',
          });
      }
    }
    at = body + size;
  }
  throw new KilnError('E_ARTIFACT', 'kernel module imports no memory', { hint: 'recompile the model' });
}
