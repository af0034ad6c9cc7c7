// A peer for `npm run bench:serve`: onnxruntime-node behind the same HTTP framework (fastify), one request per
// session.run() (no batching), speaking the KServe v2 binary-data request and response the bench sends.
// node dist/bench/ort-serve-peer.js MODEL.onnx PORT
import fastify from 'fastify';
import * as ort from 'onnxruntime-node';

const [modelPath, portText] = process.argv.slice(2);
const session = await ort.InferenceSession.create(modelPath, { intraOpNumThreads: 2 });
const app = fastify({ logger: false, bodyLimit: 64 << 20 });
app.removeAllContentTypeParsers();
app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
const ARRAYS = { FP32: Float32Array, INT64: BigInt64Array } as const;
const TYPES = { FP32: 'float32', INT64: 'int64' } as const;

app.get('/v2/health/ready', async () => ({ ready: true }));
app.post('/v2/models/:name/infer', async (req, reply) => {
  const body = req.body as Buffer;
  const n = Number(req.headers['inference-header-content-length']);
  const header = JSON.parse(body.subarray(0, n).toString()) as {
    inputs: { name: string; shape: number[]; datatype: 'FP32' | 'INT64'; parameters: { binary_data_size: number } }[];
  };
  const feeds: Record<string, ort.Tensor> = {};
  let at = n;
  for (const i of header.inputs) {
    const size = i.parameters.binary_data_size;
    const bytes = new Uint8Array(size);
    bytes.set(body.subarray(at, at + size));
    at += size;
    const Arr = ARRAYS[i.datatype];
    feeds[i.name] = new ort.Tensor(TYPES[i.datatype], new Arr(bytes.buffer, 0, size / Arr.BYTES_PER_ELEMENT), i.shape);
  }
  const out = await session.run(feeds);
  const outputs = Object.entries(out).map(([name, t]) => ({ name, t }));
  const blobs = outputs.map(({ t }) => {
    const d = t.data as Float32Array;
    return Buffer.from(d.buffer, d.byteOffset, d.byteLength);
  });
  const json = Buffer.from(
    JSON.stringify({
      model_name: (req.params as { name: string }).name,
      outputs: outputs.map(({ name, t }, k) => ({
        name,
        datatype: 'FP32',
        shape: t.dims,
        parameters: { binary_data_size: blobs[k].length },
      })),
    }),
  );
  reply.header('Inference-Header-Content-Length', String(json.length)).type('application/octet-stream');
  return reply.send(Buffer.concat([json, ...blobs]));
});
await app.listen({ port: Number(portText), host: '127.0.0.1' });
process.once('SIGTERM', () => void app.close().then(() => process.exit(0)));
