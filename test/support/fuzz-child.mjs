// One fuzz worker (test/fuzz.test.ts starts it; runs the BUILT Kiln in dist/, so `npm run build` first).
//   node test/support/fuzz-child.mjs '{"seed":24301,"kind":"model","indices":[0,1,2]}'
// For each index it derives one mutated ONNX model (kind "model") or artifact (kind "artifact") from the seed alone,
// then compiles / loads / runs it. It writes one JSON line per case to stdout: {"start":i,"desc":...} before and
// {"done":i,"outcome":"ok"|"kiln"|"bad",...} after. "bad" is any thrown value other than a KilnError with a code,
// an output whose data does not match its shape, or an artifact fresh from compile that load calls damaged. A crash or hang shows as a start without its done.
import { writeSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';

const dist = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'dist');
const { compile, load } = await import(join(dist, 'index.js'));
const { buildModel, randomF32 } = await import(join(dist, 'frontend/onnx/model-builder.js'));
const pb = await import(join(dist, 'frontend/onnx/proto/onnx_pb.js'));

const spec = JSON.parse(process.argv[2] ?? '{}');
const SEED = spec.seed >>> 0;
const RUN_TIMEOUT_MS = spec.runTimeoutMs ?? 10_000;

const emit = (o) => writeSync(1, `${JSON.stringify(o)}\n`);
let current = -1;
// an error that escapes the case (a worker's error event, a stray rejection) is that case's failure
const stray = (e) => {
  emit({ done: current, outcome: 'bad', stray: true, ...describeError(e) });
  process.exit(3);
};
process.on('uncaughtException', stray);
process.on('unhandledRejection', stray);

// ---- deterministic randomness ----
function rng(...keys) {
  let h = 2166136261 >>> 0;
  for (const k of keys)
    for (const c of String(k)) {
      h ^= c.charCodeAt(0);
      h = Math.imul(h, 16777619) >>> 0;
    }
  let s = h || 1;
  const next = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
  return {
    float: next,
    int: (n) => Math.floor(next() * n),
    pick: (a) => a[Math.floor(next() * a.length)],
    chance: (p) => next() < p,
  };
}

// ---- base models: small, so that a compile takes ~0.1 s ----
const i64 = (shape, vals) => ({ dtype: 'int64', shape, data: BigInt64Array.from(vals.map(BigInt)) });
const f32 = (shape, vals) => ({ dtype: 'float32', shape, data: Float32Array.from(vals) });
const BASES = [
  () =>
    buildModel({
      inputs: [['x', 'float32', [1, 2, 5, 5]]],
      outputs: [['y', 'float32', [1, 3, 5, 5]]],
      initializers: { w: randomF32([3, 2, 3, 3], 1), b: randomF32([3], 2) },
      nodes: [
        {
          op: 'Conv',
          inputs: ['x', 'w', 'b'],
          outputs: ['c'],
          attrs: { pads: [1, 1, 1, 1], kernel_shape: [3, 3], strides: [1, 1] },
        },
        { op: 'Relu', inputs: ['c'], outputs: ['r'] },
        { op: 'Add', inputs: ['r', 'c'], outputs: ['y'] },
      ],
    }),
  () =>
    buildModel({
      inputs: [['a', 'float32', [2, 8]]],
      outputs: [['p', 'float32', [2, 4]]],
      initializers: { w: randomF32([8, 4], 3), bias: randomF32([4], 4) },
      nodes: [
        { op: 'MatMul', inputs: ['a', 'w'], outputs: ['m'] },
        { op: 'Add', inputs: ['m', 'bias'], outputs: ['s'] },
        { op: 'Softmax', inputs: ['s'], outputs: ['p'], attrs: { axis: -1 } },
      ],
    }),
  () =>
    buildModel({
      inputs: [['x', 'float32', [2, 3, 4]]],
      outputs: [['z', 'float32', [2, 24]]],
      initializers: { shape: { dtype: 'int64', shape: [2], data: BigInt64Array.from([2n, 12n]) } },
      nodes: [
        { op: 'Transpose', inputs: ['x'], outputs: ['t'], attrs: { perm: [0, 2, 1] } },
        { op: 'Reshape', inputs: ['t', 'shape'], outputs: ['r'] },
        { op: 'Concat', inputs: ['r', 'r'], outputs: ['z'], attrs: { axis: 1 } },
      ],
    }),
  () =>
    buildModel({
      inputs: [['x', 'float32', [1, 2, 6, 6]]],
      outputs: [['g', 'float32', [1, 5]]],
      initializers: { w: randomF32([5, 18], 5), b: randomF32([5], 6) },
      nodes: [
        { op: 'MaxPool', inputs: ['x'], outputs: ['p'], attrs: { kernel_shape: [2, 2], strides: [2, 2] } },
        { op: 'Flatten', inputs: ['p'], outputs: ['f'], attrs: { axis: 1 } },
        { op: 'Gemm', inputs: ['f', 'w', 'b'], outputs: ['g'], attrs: { transB: 1 } },
      ],
    }),
  // ops whose shapes come from initializer values (Slice, Gather, Expand, Pad, Range, TopK, Split, Tile)
  () =>
    buildModel({
      inputs: [['x', 'float32', [2, 6]]],
      outputs: [['p', 'float32', [3, 2, 4]]],
      initializers: {
        starts: i64([1], [1]),
        ends: i64([1], [5]),
        axes: i64([1], [1]),
        steps: i64([1], [1]),
        idx: i64([2], [0, 3]),
        shape: i64([3], [3, 2, 2]),
        pads: i64([6], [0, 0, 1, 0, 0, 1]),
      },
      nodes: [
        { op: 'Slice', inputs: ['x', 'starts', 'ends', 'axes', 'steps'], outputs: ['s'] },
        { op: 'Gather', inputs: ['s', 'idx'], outputs: ['g'], attrs: { axis: 1 } },
        { op: 'Expand', inputs: ['g', 'shape'], outputs: ['e'] },
        { op: 'Pad', inputs: ['e', 'pads'], outputs: ['p'] },
      ],
    }),
  () =>
    buildModel({
      inputs: [['x', 'float32', [4]]],
      outputs: [
        ['v', 'float32', [2]],
        ['i', 'int64', [2]],
      ],
      initializers: { start: f32([], [0]), limit: f32([], [8]), delta: f32([], [2]), k: i64([1], [2]) },
      nodes: [
        { op: 'Range', inputs: ['start', 'limit', 'delta'], outputs: ['r'] },
        { op: 'Add', inputs: ['x', 'r'], outputs: ['a'] },
        { op: 'TopK', inputs: ['a', 'k'], outputs: ['v', 'i'] },
      ],
    }),
  () =>
    buildModel({
      inputs: [['x', 'float32', [4, 4]]],
      outputs: [['t', 'float32', [2, 8]]],
      initializers: { split: i64([2], [2, 2]), reps: i64([2], [1, 2]) },
      nodes: [
        { op: 'Split', inputs: ['x', 'split'], outputs: ['a', 'b'], attrs: { axis: 0 } },
        { op: 'Greater', inputs: ['a', 'b'], outputs: ['c'] },
        { op: 'Where', inputs: ['c', 'a', 'b'], outputs: ['w'] },
        { op: 'Tile', inputs: ['w', 'reps'], outputs: ['t'] },
      ],
    }),
];
const baseModels = BASES.map((b) => b());

// ---- model mutations ----
const T = pb.AttributeProto_AttributeType;
const HUGE = [-1, -7, 0, 1, 3, 2 ** 31, 2 ** 40, 2 ** 62, -(2 ** 63)];
const DTYPES = [0, 1, 2, 6, 7, 8, 9, 10, 11, 14, 16, 17, 23, 999, -1];
const OPS = [
  'Relu',
  'Add',
  'MatMul',
  'Conv',
  'Reshape',
  'Softmax',
  'Gemm',
  'Transpose',
  'Concat',
  'Split',
  'Gather',
  'Slice',
  'Pad',
  'Resize',
  'LSTM',
  'If',
  'Loop',
  'Einsum',
  'ReduceMean',
  'BatchNormalization',
  'Expand',
  'Tile',
  'Where',
  'Cast',
  'TopK',
  'Range',
  'NonZero',
  'FooBarOp',
];

const big = (v) => BigInt(Math.trunc(v) === v ? v : Math.trunc(v));
const allValueInfos = (g) => [...g.input, ...g.output, ...g.valueInfo];
const dimsOf = (vi) => (vi.type?.value?.case === 'tensorType' ? (vi.type.value.value.shape?.dim ?? []) : []);

const STRUCTURAL = {
  dimValue(m, r) {
    const vis = allValueInfos(m.graph).filter((v) => dimsOf(v).length);
    const vi = r.pick(vis);
    const d = r.pick(dimsOf(vi));
    const v = r.pick(HUGE);
    d.value = { case: 'dimValue', value: big(v) };
    return `${vi.name}: a dim = ${v}`;
  },
  dimParam(m, r) {
    const vi = r.pick(allValueInfos(m.graph).filter((v) => dimsOf(v).length));
    const d = r.pick(dimsOf(vi));
    d.value = r.chance(0.5) ? { case: 'dimParam', value: r.pick(['N', '', 'batch size', '-1']) } : { case: undefined };
    return `${vi.name}: a dim symbolic or unset`;
  },
  rank(m, r) {
    const vi = r.pick(allValueInfos(m.graph).filter((v) => v.type?.value?.case === 'tensorType'));
    const shape = vi.type.value.value.shape;
    if (!shape) return `${vi.name}: no shape`;
    if (r.chance(0.5) && shape.dim.length) {
      shape.dim.pop();
      return `${vi.name}: rank - 1`;
    }
    if (r.chance(0.3)) {
      vi.type.value.value.shape = undefined;
      return `${vi.name}: shape removed`;
    }
    shape.dim.push(
      create(pb.TensorShapeProto_DimensionSchema, { value: { case: 'dimValue', value: big(r.pick([1, 2, 0, -1])) } }),
    );
    return `${vi.name}: rank + 1`;
  },
  elemType(m, r) {
    const vi = r.pick(allValueInfos(m.graph).filter((v) => v.type?.value?.case === 'tensorType'));
    const t = r.pick(DTYPES);
    vi.type.value.value.elemType = t;
    return `${vi.name}: elemType ${t}`;
  },
  typeCase(m, r) {
    const vi = r.pick(m.graph.input);
    vi.type = r.chance(0.5)
      ? undefined
      : create(pb.TypeProtoSchema, { value: { case: 'sequenceType', value: create(pb.TypeProto_SequenceSchema, {}) } });
    return `input ${vi.name}: type ${vi.type ? 'sequence' : 'removed'}`;
  },
  dropInput(m, r) {
    const i = r.int(m.graph.input.length);
    const [v] = m.graph.input.splice(i, 1);
    return `drop input ${v.name}`;
  },
  dropOutput(m, r) {
    const i = r.int(m.graph.output.length);
    const [v] = m.graph.output.splice(i, 1);
    return `drop output ${v.name}`;
  },
  dupOutput(m, r) {
    const v = r.pick(m.graph.output);
    m.graph.output.push(create(pb.ValueInfoProtoSchema, v));
    return `duplicate output ${v.name}`;
  },
  outputName(m, r) {
    const v = r.pick(m.graph.output);
    const n = r.pick(['nowhere', '', m.graph.input[0]?.name ?? 'x', m.graph.node[0]?.output[0] ?? 'y']);
    v.name = n;
    return `output renamed '${n}'`;
  },
  dropNode(m, r) {
    const i = r.int(m.graph.node.length);
    const [n] = m.graph.node.splice(i, 1);
    return `drop node ${n.opType}`;
  },
  dupNode(m, r) {
    const n = r.pick(m.graph.node);
    m.graph.node.push(create(pb.NodeProtoSchema, n));
    return `duplicate node ${n.opType} (two producers)`;
  },
  reorder(m) {
    m.graph.node.reverse();
    return 'nodes in reverse order';
  },
  nodeInput(m, r) {
    const n = r.pick(m.graph.node);
    const what = r.pick(['nowhere', '', n.output[0], 'DROP', 'EXTRA']);
    if (what === 'DROP') {
      n.input.pop();
      return `${n.opType}: last input dropped`;
    }
    if (what === 'EXTRA') {
      n.input.push(n.input[0] ?? 'x');
      return `${n.opType}: extra input`;
    }
    const k = r.int(Math.max(1, n.input.length));
    n.input[k] = what;
    return `${n.opType}: input ${k} = '${what}'`;
  },
  nodeOutput(m, r) {
    const n = r.pick(m.graph.node);
    const what = r.pick(['', 'EXTRA', 'NONE', m.graph.input[0].name]);
    if (what === 'EXTRA') n.output.push(`${n.output[0]}_extra`);
    else if (what === 'NONE') n.output.length = 0;
    else n.output[0] = what;
    return `${n.opType}: output ${what}`;
  },
  opType(m, r) {
    const n = r.pick(m.graph.node);
    const old = n.opType;
    n.opType = r.pick(OPS);
    return `${old} -> ${n.opType}`;
  },
  domain(m, r) {
    const n = r.pick(m.graph.node);
    n.domain = r.pick(['com.microsoft', 'ai.onnx.ml', 'local', 'ai.onnx']);
    return `${n.opType}: domain ${n.domain}`;
  },
  attrType(m, r) {
    const n = r.pick(m.graph.node.filter((x) => x.attribute.length).concat(m.graph.node));
    if (!n.attribute.length) {
      n.attribute.push(
        create(pb.AttributeProtoSchema, {
          name: r.pick(['axis', 'perm', 'kernel_shape', 'bogus']),
          type: T.INT,
          i: 5n,
        }),
      );
      return `${n.opType}: attribute added`;
    }
    const a = r.pick(n.attribute);
    const t = r.pick([T.UNDEFINED, T.FLOAT, T.INT, T.STRING, T.TENSOR, T.GRAPH, T.FLOATS, T.INTS, T.STRINGS, 99]);
    a.type = t;
    return `${n.opType}.${a.name}: type -> ${t} (value fields unchanged)`;
  },
  attrValue(m, r) {
    const n = r.pick(m.graph.node);
    const name = r.pick([
      'axis',
      'perm',
      'kernel_shape',
      'strides',
      'pads',
      'dilations',
      'group',
      'transB',
      'alpha',
      'auto_pad',
      'ceil_mode',
      'storage_order',
      'keepdims',
    ]);
    const kind = r.pick(['int', 'ints', 'float', 'string', 'emptyInts']);
    const v = r.pick([-1, 0, 2, 99, -(2 ** 40), 2 ** 40, 7]);
    const a =
      kind === 'int'
        ? create(pb.AttributeProtoSchema, { name, type: T.INT, i: big(v) })
        : kind === 'ints'
          ? create(pb.AttributeProtoSchema, {
              name,
              type: T.INTS,
              ints: [big(v), big(r.pick([0, 1, -1, 3])), big(v), 0n],
            })
          : kind === 'float'
            ? create(pb.AttributeProtoSchema, { name, type: T.FLOAT, f: r.pick([NaN, Infinity, -0.5, 1.5, 1e38]) })
            : kind === 'string'
              ? create(pb.AttributeProtoSchema, {
                  name,
                  type: T.STRING,
                  s: new TextEncoder().encode(r.pick(['SAME_UPPER', 'VALID', '', 'NOTSET', '\u0000\uffff'])),
                })
              : create(pb.AttributeProtoSchema, { name, type: T.INTS, ints: [] });
    const at = n.attribute.findIndex((x) => x.name === name);
    if (at >= 0 && r.chance(0.7)) n.attribute[at] = a;
    else n.attribute.push(a);
    return `${n.opType}.${name} = ${kind} ${kind === 'float' ? a.f : v}`;
  },
  dropAttr(m, r) {
    const n = r.pick(m.graph.node.filter((x) => x.attribute.length).concat(m.graph.node));
    if (!n.attribute.length) return `${n.opType}: no attribute to drop`;
    const [a] = n.attribute.splice(r.int(n.attribute.length), 1);
    return `${n.opType}: drop attribute ${a.name}`;
  },
  initDims(m, r) {
    if (!m.graph.initializer.length) return 'no initializer';
    const t = r.pick(m.graph.initializer);
    const v = r.pick(HUGE);
    if (r.chance(0.3)) t.dims.push(big(v));
    else if (t.dims.length) t.dims[r.int(t.dims.length)] = big(v);
    return `initializer ${t.name}: dims [${t.dims}]`;
  },
  initData(m, r) {
    if (!m.graph.initializer.length) return 'no initializer';
    const t = r.pick(m.graph.initializer);
    const how = r.pick(['truncate', 'extend', 'empty', 'floatData', 'int64Data', 'both']);
    if (how === 'truncate') t.rawData = t.rawData.subarray(0, r.int(t.rawData.length));
    else if (how === 'extend') {
      const x = new Uint8Array(t.rawData.length + 1 + r.int(16));
      x.set(t.rawData);
      t.rawData = x;
    } else if (how === 'empty') t.rawData = new Uint8Array(0);
    else if (how === 'floatData') {
      t.rawData = new Uint8Array(0);
      t.floatData = [1, 2, 3];
    } else if (how === 'int64Data') {
      t.rawData = new Uint8Array(0);
      t.int64Data = [1n, -1n];
    } else t.floatData = [1, 2];
    return `initializer ${t.name}: data ${how}`;
  },
  initValue(m, r) {
    // the values that shapes are computed from: Reshape/Expand shapes, Slice bounds, pads, k, Range bounds, repeats
    const inits = m.graph.initializer.filter(
      (t) => (t.dataType === 7 || t.dataType === 1) && t.rawData.length && t.rawData.length <= 64,
    );
    if (!inits.length) return 'no small initializer';
    const t = r.pick(inits);
    const dv = new DataView(t.rawData.buffer, t.rawData.byteOffset, t.rawData.byteLength);
    const n = r.chance(0.6) ? 1 : 2 + r.int(3);
    const set = [];
    for (let j = 0; j < n; j++) {
      if (t.dataType === 7) {
        const at = r.int(t.rawData.length / 8);
        const v = r.pick([-1n, 0n, 1n, -2n, 5n, 1000n, 2n ** 31n, 2n ** 62n, -(2n ** 63n), 2n ** 63n - 1n]);
        dv.setBigInt64(at * 8, v, true);
        set.push(`[${at}]=${v}`);
      } else {
        const at = r.int(t.rawData.length / 4);
        const v = r.pick([0, -0, -1, 1e-30, 1e30, NaN, Infinity, -Infinity, 0.5]);
        dv.setFloat32(at * 4, v, true);
        set.push(`[${at}]=${v}`);
      }
    }
    return `initializer ${t.name}: ${set.join(' ')}`;
  },
  initDtype(m, r) {
    if (!m.graph.initializer.length) return 'no initializer';
    const t = r.pick(m.graph.initializer);
    t.dataType = r.pick(DTYPES);
    return `initializer ${t.name}: dataType ${t.dataType}`;
  },
  initExternal(m, r) {
    if (!m.graph.initializer.length) return 'no initializer';
    const t = r.pick(m.graph.initializer);
    t.rawData = new Uint8Array(0);
    t.dataLocation = pb.TensorProto_DataLocation.EXTERNAL;
    const loc = r.pick(['weights.bin', '../../../../etc/passwd', '/etc/hostname', '']);
    t.externalData = [
      create(pb.StringStringEntryProtoSchema, { key: 'location', value: loc }),
      create(pb.StringStringEntryProtoSchema, { key: 'offset', value: r.pick(['0', '-5', '1e30', 'x']) }),
      create(pb.StringStringEntryProtoSchema, { key: 'length', value: r.pick(['16', '-1', '99999999999']) }),
    ];
    return `initializer ${t.name}: external data '${loc}'`;
  },
  initName(m, r) {
    if (!m.graph.initializer.length) return 'no initializer';
    const t = r.pick(m.graph.initializer);
    const n = r.pick([m.graph.input[0].name, m.graph.output[0].name, '', 'DUP']);
    if (n === 'DUP') {
      m.graph.initializer.push(create(pb.TensorProtoSchema, t));
      return `initializer ${t.name} twice`;
    }
    t.name = n;
    return `initializer renamed '${n}'`;
  },
  opset(m, r) {
    const v = r.pick([0, 1, 6, 7, 11, 999, -1, 2 ** 40]);
    const how = r.pick(['set', 'drop', 'dup', 'domain']);
    if (how === 'set') m.opsetImport[0].version = big(v);
    else if (how === 'drop') m.opsetImport.length = 0;
    else if (how === 'dup') m.opsetImport.push(create(pb.OperatorSetIdProtoSchema, { domain: '', version: big(v) }));
    else m.opsetImport[0].domain = 'ai.onnx.ml';
    return `opset ${how} ${v}`;
  },
  irVersion(m, r) {
    const v = r.pick([0, -1, 1, 3, 999]);
    m.irVersion = big(v);
    return `irVersion ${v}`;
  },
  noGraph(m, r) {
    if (r.chance(0.5)) {
      m.graph = undefined;
      return 'no graph';
    }
    m.graph.node.length = 0;
    return 'graph without nodes';
  },
  valueInfo(m, r) {
    const n = r.pick(m.graph.node);
    const name = n.output[0] ?? 'v';
    const shape = [r.pick([1, 7, -3, 0]), r.pick([2, 1000000])];
    m.graph.valueInfo.push(
      create(pb.ValueInfoProtoSchema, {
        name,
        type: create(pb.TypeProtoSchema, {
          value: {
            case: 'tensorType',
            value: create(pb.TypeProto_TensorSchema, {
              elemType: r.pick([1, 7, 9]),
              shape: create(pb.TensorShapeProtoSchema, {
                dim: shape.map((d) =>
                  create(pb.TensorShapeProto_DimensionSchema, { value: { case: 'dimValue', value: big(d) } }),
                ),
              }),
            }),
          },
        }),
      }),
    );
    return `value_info ${name}: [${shape}] (conflicting)`;
  },
  deepGraph(m, r) {
    // a long chain of the same op: recursion depth in the importer and passes
    const n = 2000 + r.int(8000);
    const g = m.graph;
    const x = g.input[0].name;
    const out = g.output[0].name;
    g.node.length = 0;
    let prev = x;
    for (let i = 0; i < n; i++) {
      const o = i === n - 1 ? `chain_${i}` : `chain_${i}`;
      g.node.push(create(pb.NodeProtoSchema, { opType: r.chance(0.5) ? 'Relu' : 'Neg', input: [prev], output: [o] }));
      prev = o;
    }
    g.node.push(create(pb.NodeProtoSchema, { opType: 'Identity', input: [prev], output: [out] }));
    g.output.length = 1;
    g.output[0].type = create(pb.TypeProtoSchema, g.input[0].type);
    return `chain of ${n} elementwise nodes`;
  },
  subgraph(m, r) {
    const n = r.pick(m.graph.node);
    n.attribute.push(
      create(pb.AttributeProtoSchema, {
        name: r.pick(['then_branch', 'body', 'axis']),
        type: T.GRAPH,
        g: create(pb.GraphProtoSchema, {
          name: 'sub',
          node: [create(pb.NodeProtoSchema, { opType: 'Relu', input: ['zz'], output: ['zz'] })],
        }),
      }),
    );
    return `${n.opType}: a GRAPH attribute`;
  },
};

function mutateBytes(bytes, r) {
  const b = Array.from(bytes);
  const how = r.pick(['flip', 'flip', 'flips', 'insert', 'delete', 'truncate', 'dup', 'varint']);
  let desc = how;
  if (how === 'flip') {
    const i = r.int(b.length);
    const bit = r.int(8);
    b[i] ^= 1 << bit;
    desc = `flip bit ${bit} of byte ${i}`;
  } else if (how === 'flips') {
    const k = 2 + r.int(30);
    for (let j = 0; j < k; j++) b[r.int(b.length)] = r.int(256);
    desc = `${k} random bytes`;
  } else if (how === 'insert') {
    const i = r.int(b.length + 1);
    const k = 1 + r.int(8);
    b.splice(i, 0, ...Array.from({ length: k }, () => r.int(256)));
    desc = `insert ${k} bytes at ${i}`;
  } else if (how === 'delete') {
    const i = r.int(b.length);
    const k = 1 + r.int(8);
    b.splice(i, k);
    desc = `delete ${k} bytes at ${i}`;
  } else if (how === 'truncate') {
    const i = r.int(b.length);
    b.length = i;
    desc = `truncate to ${i} bytes`;
  } else if (how === 'dup') {
    const i = r.int(b.length);
    const k = 1 + r.int(40);
    b.splice(i, 0, ...b.slice(i, i + k));
    desc = `duplicate ${k} bytes at ${i}`;
  } else {
    const i = r.int(b.length);
    const k = 1 + r.int(10);
    for (let j = 0; j < k && i + j < b.length; j++) b[i + j] = 0xff;
    desc = `${k} bytes 0xff at ${i} (huge varints)`;
  }
  return { bytes: Uint8Array.from(b), desc };
}

function modelCase(i) {
  const r = rng(SEED, 'model', i);
  const base = r.int(baseModels.length);
  if (r.chance(0.35)) {
    let { bytes, desc } = mutateBytes(baseModels[base], r);
    if (r.chance(0.3)) {
      const more = mutateBytes(bytes, r);
      bytes = more.bytes;
      desc += `; ${more.desc}`;
    }
    return { bytes, desc: `base ${base}: ${desc}` };
  }
  const m = fromBinary(pb.ModelProtoSchema, baseModels[base]);
  const names = [...Object.keys(STRUCTURAL), 'initValue', 'initValue', 'initValue', 'attrValue', 'dimValue'];
  const k = r.chance(0.75) ? 1 : 2 + r.int(2);
  const descs = [];
  for (let j = 0; j < k; j++) {
    const name = r.pick(names);
    try {
      descs.push(
        `${name}: ${m.graph || name === 'opset' || name === 'irVersion' ? STRUCTURAL[name](m, r) : 'no graph'}`,
      );
    } catch (e) {
      descs.push(`${name}: not applicable (${e.message})`);
    }
  }
  return { bytes: toBinary(pb.ModelProtoSchema, m), desc: `base ${base}: ${descs.join('; ')}` };
}

// ---- artifact mutations ----
const PREFIX = 48;
const u32 = (b, at) => new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(at, true);
const setU32 = (b, at, v) => new DataView(b.buffer, b.byteOffset, b.byteLength).setUint32(at, v >>> 0, true);
async function resign(b) {
  if (b.length >= PREFIX) b.set(new Uint8Array(await crypto.subtle.digest('SHA-256', b.subarray(PREFIX))), 16);
  return b;
}
const SLACK = 4096;
/** The artifact with SLACK spaces of room after its header JSON, sections moved (a valid artifact too). */
function withSlack(a) {
  const hl = u32(a, 8);
  const header = JSON.parse(new TextDecoder().decode(a.subarray(PREFIX, PREFIX + hl)));
  const shift = (s) => s && { offset: s.offset + SLACK, length: s.length };
  const h2 = {
    ...header,
    sections: Object.fromEntries(Object.entries(header.sections).map(([k, s]) => [k, shift(s)])),
  };
  const json = new TextEncoder().encode(JSON.stringify(h2));
  const out = new Uint8Array(a.length + SLACK);
  out.set(a.subarray(0, PREFIX));
  out.fill(0x20, PREFIX, PREFIX + hl + SLACK);
  out.set(json, PREFIX);
  setU32(out, 8, hl + SLACK);
  out.set(a.subarray(PREFIX + hl), PREFIX + hl + SLACK);
  return { bytes: out, header: h2, headerBytes: hl + SLACK };
}
const baseArtifacts = new Map();
async function baseArtifact(k) {
  if (!baseArtifacts.has(k)) {
    const { artifact } = await compile(baseModels[k], {});
    const s = withSlack(artifact);
    await resign(s.bytes);
    baseArtifacts.set(k, s);
  }
  return baseArtifacts.get(k);
}
const JSON_VALUES = [
  null,
  -1,
  0,
  1,
  1.5,
  2 ** 31,
  2 ** 53,
  1e300,
  -(2 ** 31),
  'x',
  '',
  [],
  {},
  true,
  [1, 2, 3],
  { offset: 0, length: 0 },
];
function paths(v, at = [], out = []) {
  if (v && typeof v === 'object')
    for (const [k, x] of Object.entries(v)) {
      const p = [...at, Array.isArray(v) ? Number(k) : k];
      out.push(p);
      if (!(typeof x === 'string' && x.length > 200)) paths(x, p, out);
    }
  return out;
}
const getAt = (o, p) => p.reduce((a, k) => a?.[k], o);
function headerEdit(h, r) {
  const targeted = [
    () => {
      h.inputs[0].shape = r.pick([[-1], [1e9, 1e9], [], [0], [1.5], ['2'], null]);
      return `inputs[0].shape = ${JSON.stringify(h.inputs[0].shape)}`;
    },
    () => {
      h.inputs[0].dtype = r.pick(['float16', 'string', 'complex64', 42, null, 'int64', 'bool']);
      return `inputs[0].dtype = ${JSON.stringify(h.inputs[0].dtype)}`;
    },
    () => {
      h.inputs[0].offset = r.pick([h.memoryBytes + 100, h.memoryBytes - 4, -8, 1.5, 2 ** 32, 3]);
      return `inputs[0].offset = ${h.inputs[0].offset}`;
    },
    () => {
      const o = r.pick(h.outputs);
      o.offset = r.pick([h.memoryBytes, -4, 2 ** 40, 1]);
      return `outputs offset = ${o.offset}`;
    },
    () => {
      const o = r.pick(h.outputs);
      o.shape = r.pick([[1e9], [-2], [2 ** 31, 2], [0], []]);
      return `outputs shape = ${JSON.stringify(o.shape)}`;
    },
    () => {
      h.outputs = r.pick([[], null, [...h.outputs, ...h.outputs]]);
      return `outputs = ${JSON.stringify(h.outputs)?.slice(0, 40)}`;
    },
    () => {
      const c = r.pick(h.calls);
      c.kernel = r.pick([99, -1, '0', 1.5, null, h.kernels.length]);
      return `calls[].kernel = ${c.kernel}`;
    },
    () => {
      const c = r.pick(h.calls);
      const j = r.int(c.args.length);
      c.args[j] = r.pick([-16, h.memoryBytes, 2 ** 40, 3, null]);
      return `calls[].args[${j}] = ${c.args[j]}`;
    },
    () => {
      const c = r.pick(h.calls);
      c.args = r.pick([[], c.args.slice(1), [...c.args, ...c.args]]);
      return `calls[].args length ${c.args.length}`;
    },
    () => {
      const k = r.pick(h.kernels);
      k.name = r.pick(['nope', '__proto__', 'memory', '', 'constructor']);
      return `kernels[].name = ${k.name}`;
    },
    () => {
      const k = r.pick(h.kernels);
      k.phases = r.pick([[], [true, true, true, true], [false], null, 'x']);
      return `kernels[].phases = ${JSON.stringify(k.phases)}`;
    },
    () => {
      h.memoryBytes = r.pick([0, 16, -1, 2 ** 40, 2 ** 32 + 16, 1.5, 'big']);
      return `memoryBytes = ${h.memoryBytes}`;
    },
    () => {
      h.weightsAt = r.pick([-16, 2 ** 40, h.memoryBytes, 1, null]);
      return `weightsAt = ${h.weightsAt}`;
    },
    () => {
      const s = r.pick(Object.keys(h.sections));
      h.sections[s] = r.pick([
        { offset: 0, length: 48 },
        { offset: -1, length: 4 },
        { offset: 1e20, length: 1 },
        { offset: h.sections[s].offset, length: 0 },
        null,
        { offset: h.sections[s].offset + 1, length: h.sections[s].length - 1 },
      ]);
      return `sections.${s} = ${JSON.stringify(h.sections[s])}`;
    },
    () => {
      h.target = r.pick(['cuda', 'webgpu', 'x', null]);
      return `target = ${h.target}`;
    },
    () => {
      h.webgpu = r.pick([{}, { kernels: [], calls: [{ kernel: 3 }] }, null]);
      return `webgpu = ${JSON.stringify(h.webgpu)}`;
    },
    () => {
      h.cuda = r.pick([{}, { ptx: 'junk', kernels: [], memoryBytes: -1 }]);
      return `cuda = ${JSON.stringify(h.cuda)}`;
    },
    () => {
      h.kiln = r.pick(['0.0.0', '', 7]);
      return `kiln = ${h.kiln}`;
    },
    () => {
      h.calls = r.pick([[], [...h.calls, ...h.calls], h.calls.slice().reverse()]);
      return `calls: ${h.calls.length}`;
    },
    () => {
      h.kernels = r.pick([[], h.kernels.slice(1)]);
      return `kernels: ${h.kernels.length}`;
    },
    () => {
      h.inputs = r.pick([
        [],
        [...h.inputs, { ...h.inputs[0], name: 'second' }],
        [{ ...h.inputs[0], name: h.outputs[0].name }],
      ]);
      return `inputs: ${JSON.stringify(h.inputs.map((i) => i.name))}`;
    },
  ];
  if (r.chance(0.55)) return targeted[r.int(targeted.length)]();
  const ps = paths(h);
  const p = r.pick(ps);
  const parent = getAt(h, p.slice(0, -1));
  const key = p[p.length - 1];
  const how = r.pick(['set', 'set', 'set', 'delete', 'dupElem']);
  if (how === 'delete' || (how === 'dupElem' && !Array.isArray(parent))) {
    if (Array.isArray(parent)) parent.splice(key, 1);
    else delete parent[key];
    return `delete ${p.join('.')}`;
  }
  if (how === 'dupElem') {
    parent.splice(key, 0, structuredClone(parent[key]));
    return `duplicate ${p.join('.')}`;
  }
  const v = r.pick(JSON_VALUES);
  parent[key] = structuredClone(v);
  return `${p.join('.')} = ${JSON.stringify(v)}`;
}

async function artifactCase(i) {
  const r = rng(SEED, 'artifact', i);
  const k = r.int(baseModels.length);
  const base = await baseArtifact(k);
  const b = base.bytes.slice();
  const h = base.header;
  const regions = {
    prefix: [0, PREFIX],
    header: [PREFIX, PREFIX + base.headerBytes],
    wasm: [h.sections.wasm.offset, h.sections.wasm.offset + h.sections.wasm.length],
    weights: [h.sections.weights.offset, h.sections.weights.offset + h.sections.weights.length],
  };
  const how = r.pick([
    'flip',
    'flip',
    'truncate',
    'append',
    'flipSigned',
    'flipSigned',
    'flipSigned',
    'truncateSigned',
    'headerLen',
    'json',
    'json',
    'json',
    'json',
    'json',
    'json',
  ]);
  const nonEmpty = (names) => names.filter((n) => regions[n][1] > regions[n][0]);
  const region = r.pick(
    nonEmpty(how === 'flipSigned' ? ['header', 'wasm', 'wasm', 'wasm', 'weights'] : Object.keys(regions)),
  );
  const [lo, hi] = regions[region];
  if (how === 'flip' || how === 'flipSigned') {
    const n = 1 + (r.chance(0.5) ? 0 : r.int(6));
    const at = [];
    for (let j = 0; j < n; j++) {
      const p = lo + r.int(Math.max(1, hi - lo));
      b[p] ^= 1 << r.int(8);
      at.push(p);
    }
    if (how === 'flipSigned') await resign(b);
    return {
      bytes: b,
      desc: `base ${k}: ${n} bit flip(s) in ${region} at ${at.join(',')}${how === 'flipSigned' ? ', SHA-256 recomputed' : ''}`,
    };
  }
  if (how === 'truncate' || how === 'truncateSigned') {
    const at = r.int(b.length);
    const t = b.slice(0, at);
    if (how === 'truncateSigned') await resign(t);
    return {
      bytes: t,
      desc: `base ${k}: truncated to ${at} of ${b.length} bytes${how === 'truncateSigned' ? ', SHA-256 recomputed' : ''}`,
    };
  }
  if (how === 'append') {
    const n = 1 + r.int(64);
    const out = new Uint8Array(b.length + n);
    out.set(b);
    if (r.chance(0.5)) await resign(out);
    return { bytes: out, desc: `base ${k}: ${n} bytes appended` };
  }
  if (how === 'headerLen') {
    const v = r.pick([0, 1, base.headerBytes - 1, base.headerBytes + 16, b.length, 2 ** 32 - 1, 10]);
    setU32(b, 8, v);
    if (r.chance(0.5)) setU32(b, 12, r.int(2 ** 32));
    return { bytes: b, desc: `base ${k}: header length field = ${v} (the prefix is not under the SHA-256)` };
  }
  // header JSON edits, SHA-256 recomputed
  const hdr = structuredClone(h);
  const descs = [];
  const n = r.chance(0.8) ? 1 : 2 + r.int(3);
  for (let j = 0; j < n; j++) {
    try {
      descs.push(headerEdit(hdr, r));
    } catch (e) {
      descs.push(`(edit not applicable: ${e.message})`);
    }
  }
  let json = new TextEncoder().encode(JSON.stringify(hdr));
  if (r.chance(0.1)) {
    json = json.subarray(0, r.int(json.length));
    descs.push('JSON cut short');
  }
  if (json.length > base.headerBytes)
    return { bytes: b, desc: `base ${k}: header edit too long, unchanged artifact (${descs.join('; ')})` };
  b.fill(0x20, PREFIX, PREFIX + base.headerBytes);
  b.set(json, PREFIX);
  await resign(b);
  return { bytes: b, desc: `base ${k}: header ${descs.join('; ')}; SHA-256 recomputed` };
}

// ---- running one case ----
function describeError(e) {
  const err = e instanceof Error ? e : undefined;
  return {
    name: err?.name ?? typeof e,
    code: e && typeof e === 'object' && 'code' in e ? String(e.code) : undefined,
    message: String(err ? err.message : e).slice(0, 500),
    stack: (err?.stack ?? '')
      .split('\n')
      .filter((l) => /^\s+at /.test(l))
      .slice(0, 5)
      .map((l) => l.trim().replace(/\(file:\/\/[^)]*\/(dist|node_modules)\//, '($1/')),
  };
}
const isKilnError = (e) =>
  !!e && typeof e === 'object' && e.name === 'KilnError' && typeof e.code === 'string' && e.code.startsWith('E_');
const ARRAYS = {
  float32: Float32Array,
  float64: Float64Array,
  int8: Int8Array,
  uint8: Uint8Array,
  int16: Int16Array,
  uint16: Uint16Array,
  int32: Int32Array,
  uint32: Uint32Array,
  int64: BigInt64Array,
  uint64: BigUint64Array,
  bool: Uint8Array,
};

/** Feeds for what the (possibly mutated) model says its inputs are; a nonsense declaration gets a 1-element
 *  float32 tensor, which the runtime must reject with E_INPUT rather than trip over. */
function feedsFor(inputs) {
  const feeds = {};
  for (const i of Array.isArray(inputs) ? inputs : []) {
    const shape = Array.isArray(i?.shape) ? i.shape : null;
    const n = shape?.every((d) => Number.isInteger(d) && d >= 0) ? shape.reduce((a, d) => a * d, 1) : -1;
    const Ctor = ARRAYS[i?.dtype];
    if (n >= 0 && n <= 1 << 20 && Ctor) {
      const data = new Ctor(n);
      for (let j = 0; j < n; j++)
        data[j] =
          Ctor === BigInt64Array || Ctor === BigUint64Array
            ? BigInt(j % 5)
            : i.dtype === 'bool'
              ? j & 1
              : ((j * 37) % 17) / 8 - 1;
      feeds[String(i?.name)] = { dtype: i.dtype, shape: [...shape], data };
    } else feeds[String(i?.name)] = { dtype: 'float32', shape: [1], data: new Float32Array(1) };
  }
  return feeds;
}

/** How a case loads: with { timeoutMs } (the model in a supervised worker) or on this thread; 1 or 2 threads.
 *  Arbitrary code (a SHA-256-recomputed change to the wasm section) always runs with timeoutMs: on this thread an
 *  endless loop cannot be stopped, by design. */
function loadMode(r, untrustedCode) {
  const supervised = r.chance(0.5) || untrustedCode;
  return { supervised, threads: r.chance(0.25) ? 2 : 1 };
}

async function loadAndRun(artifact, { supervised, threads }, at) {
  const opts = supervised ? { threads, timeoutMs: RUN_TIMEOUT_MS } : { threads };
  const model = await load(artifact, opts);
  at('run');
  try {
    const out = await model.run(feedsFor(model.inputs), supervised ? { timeoutMs: RUN_TIMEOUT_MS } : undefined);
    for (const [name, t] of Object.entries(out ?? {})) {
      const n = Array.isArray(t?.shape) ? t.shape.reduce((a, d) => a * d, 1) : NaN;
      if (!t?.data || t.data.length !== n)
        throw Object.assign(
          new Error(`output '${name}' is malformed: shape [${t?.shape}], ${t?.data?.length} values`),
          { name: 'MalformedOutput' },
        );
    }
    return `ran (${supervised ? 'timeoutMs' : 'in-thread'}, ${threads} thread${threads > 1 ? 's' : ''})`;
  } finally {
    model.dispose?.();
  }
}

async function runCase(kind, i) {
  const r = rng(SEED, 'run', kind, i);
  current = i;
  let c;
  try {
    c = kind === 'model' ? modelCase(i) : await artifactCase(i);
  } catch (e) {
    emit({ start: i, kind, desc: '(mutation failed)' });
    emit({ done: i, outcome: 'harness', ...describeError(e) });
    return;
  }
  const mode = loadMode(r, /wasm.*SHA-256 recomputed/.test(c.desc));
  emit({
    start: i,
    kind,
    desc: `${c.desc} [${mode.supervised ? 'timeoutMs' : 'in-thread'}, ${mode.threads} thread${mode.threads > 1 ? 's' : ''}]`,
    bytes: c.bytes.length,
  });
  let stage = kind === 'model' ? 'compile' : 'load';
  try {
    let artifact = c.bytes;
    if (kind === 'model') {
      artifact = (await compile(c.bytes, {})).artifact;
      stage = 'load';
    }
    const note = await loadAndRun(artifact, mode, (s) => {
      stage = s;
    });
    emit({ done: i, outcome: 'ok', note });
  } catch (e) {
    if (isKilnError(e) && kind === 'model' && stage !== 'compile' && e.code === 'E_ARTIFACT') {
      // what compile just wrote must load: the compiler accepted a model its own runtime calls damaged
      emit({
        done: i,
        outcome: 'bad',
        stage,
        name: 'CompiledArtifactRejected',
        code: e.code,
        message: String(e.message).split('\n')[0].slice(0, 300),
      });
    } else if (isKilnError(e))
      emit({ done: i, outcome: 'kiln', stage, code: e.code, message: String(e.message).split('\n')[0].slice(0, 300) });
    else emit({ done: i, outcome: 'bad', stage, ...describeError(e) });
  }
}

for (const i of spec.indices ?? []) await runCase(spec.kind, i);
emit({ finished: true });
// workers of a model whose dispose did not end them must not keep the process alive
process.exit(0);
