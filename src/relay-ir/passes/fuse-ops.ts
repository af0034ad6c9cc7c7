// Operator fusion driven by op-pattern kinds and post-dominators (after TVM's FuseOps).
// A node is fused into its immediate post-dominator when every node on the paths between them is cheap enough
// to inline: injective producers fuse into their consumers (including reductions), and an anchor
// (conv/matmul/reduction: OutEWiseFusable or CommReduce) takes its elementwise/broadcast epilogue (bias,
// activation, residual add). A group holds at most one anchor, and only its root's value leaves it, so each
// group becomes one kernel: a call to a primitive function.
import {
  type CallNode,
  type ConstNode,
  type FuncNode,
  type GExpr,
  type VarNode,
  gcall,
  gcallFunc,
  gfunc,
  gtuple,
  gvar,
  isFuncCall,
  postOrder,
} from '../expr.js';
import { OpPattern, type OpSpec } from '../op.js';
import { mapBodies } from '../control.js';

const isAnchor = (p: OpPattern) => p === OpPattern.OutEWiseFusable || p === OpPattern.CommReduce;
/** Constants this small are embedded in the kernel instead of being passed in. */
const EMBED_MAX = 1;
/**
 * Most operators one kernel holds (TVM's max_fuse_depth is 256). Without a cap a long elementwise chain would
 * become one tensor expression as deep as the chain, which the recursive TE and loop-IR walks cannot take; with
 * it the chain becomes many same-shaped kernels, which the program deduplicates. 32 rather than 256: binaryen's
 * optimizer time grows faster than linearly with a kernel's size (a chain of 12 kinds of transcendental activations
 * compiled in 3.3 s per 32-op kernel, 48 ops took 5 s, a 64-op kernel did not finish in 5 minutes), and groups
 * of more than 32 operators are rare outside such chains.
 */
export const MAX_FUSED_OPS = 32;

/**
 * A cap on the buffers one kernel binds (WebGPU's maxStorageBuffersPerShaderStage): a group grows only while its
 * inputs and output take at most `max` bindings, `of` counting a value's bindings (more than one where it is bound
 * as several windows).
 */
export interface FusionBindingLimit {
  max: number;
  of: (e: GExpr) => number;
}

export function fuseOps(fn: FuncNode, maxOps = MAX_FUSED_OPS, bindingLimit?: FusionBindingLimit): FuncNode {
  // the bodies of If / Loop / Scan regions are fused like this function (each then holds its own kernels)
  fn = mapBodies(fn, (body) => fuseOps(body, maxOps, bindingLimit), false);
  const order = postOrder(fn.body).filter((n): n is CallNode => n.kind === 'call' && !isFuncCall(n));
  const pattern = (n: CallNode) => (n.op as OpSpec).pattern;

  // consumers; a value used by the function result (or a tuple) has the sink as a consumer
  const consumers = new Map<CallNode, (CallNode | null)[]>(order.map((n) => [n, []]));
  for (const n of order) for (const a of n.args) if (a.kind === 'call' && consumers.has(a)) consumers.get(a)!.push(n);
  const roots = fn.body.kind === 'tuple' ? fn.body.fields : [fn.body];
  for (const r of roots) if (r.kind === 'call' && consumers.has(r)) consumers.get(r)!.push(null);

  // immediate post-dominators (null = sink), computed consumers-first
  const ipdom = new Map<CallNode, CallNode | null>();
  const depth = new Map<CallNode | null, number>([[null, 0]]);
  const lca = (a: CallNode | null, b: CallNode | null): CallNode | null => {
    while (a !== b) {
      if (a === null || b === null) return null;
      if (depth.get(a)! >= depth.get(b)!) a = ipdom.get(a)!;
      else b = ipdom.get(b)!;
    }
    return a;
  };
  for (let i = order.length - 1; i >= 0; i--) {
    const n = order[i];
    const cs = consumers.get(n)!;
    let d: CallNode | null = cs.length ? cs[0] : null;
    for (const c of cs.slice(1)) d = lca(d, c);
    ipdom.set(n, d);
    depth.set(n, depth.get(d)! + 1);
  }

  // union-find groups
  const parent = new Map<CallNode, CallNode>(order.map((n) => [n, n]));
  const find = (n: CallNode): CallNode => {
    let r = n;
    while (parent.get(r) !== r) r = parent.get(r)!;
    for (let m = n; m !== r; ) {
      const next = parent.get(m)!;
      parent.set(m, r);
      m = next;
    } // full path compression
    return r;
  };
  const anchors = new Map<CallNode, number>(order.map((n) => [n, isAnchor(pattern(n)) ? 1 : 0]));
  const size = new Map<CallNode, number>(order.map((n) => [n, 1]));
  const groupOf = new Map<CallNode, CallNode[]>(order.map((n) => [n, [n]]));
  const union = (a: CallNode, b: CallNode) => {
    const ra = find(a),
      rb = find(b);
    if (ra === rb) return;
    parent.set(ra, rb);
    groupOf.set(rb, [...groupOf.get(rb)!, ...groupOf.get(ra)!]);
    groupOf.delete(ra);
    anchors.set(rb, anchors.get(rb)! + anchors.get(ra)!);
    size.set(rb, size.get(rb)! + size.get(ra)!);
  };

  /** Nodes strictly between n and dom on any path, or undefined if some path avoids the predicate. */
  const pathNodes = (n: CallNode, dom: CallNode, ok: (m: CallNode) => boolean): CallNode[] | undefined => {
    const found = new Set<CallNode>();
    const stack = consumers.get(n)!.slice();
    while (stack.length) {
      const m = stack.pop()!;
      if (m === null) return undefined;
      if (m === dom || found.has(m)) continue;
      if (!ok(m)) return undefined;
      found.add(m);
      stack.push(...consumers.get(m)!);
    }
    return [...found];
  };

  for (const n of order) {
    const dom = ipdom.get(n);
    if (!dom) continue;
    const p = pattern(n),
      pd = pattern(dom);
    let path: CallNode[] | undefined;
    if (p <= OpPattern.Injective && anchors.get(find(n))! > 0) {
      // n is already an anchor's epilogue: the group grows only by more elementwise / broadcast work, which the
      // write-back of the anchor's tile applies; an injective consumer (pad, transpose, ...) would move the
      // anchor's output elements and force it out of its register-tiled schedule
      if (pd > OpPattern.Broadcast) continue;
      path = pathNodes(n, dom, (m) => pattern(m) <= OpPattern.Broadcast);
    } else if (p <= OpPattern.Injective) {
      // injective producers fuse into injective consumers or into a reduction that reads them
      if (pd > OpPattern.Injective && pd !== OpPattern.CommReduce) continue;
      path = pathNodes(n, dom, (m) => pattern(m) <= OpPattern.Injective);
    } else if (isAnchor(p)) {
      // an anchor takes its elementwise / broadcast epilogue
      if (pd > OpPattern.Broadcast) continue;
      path = pathNodes(n, dom, (m) => pattern(m) <= OpPattern.Broadcast);
    }
    if (!path) continue;
    const groups = new Set([find(n), find(dom), ...path.map(find)]);
    let count = 0,
      ops = 0;
    for (const g of groups) {
      count += anchors.get(g)!;
      ops += size.get(g)!;
    }
    if (count > 1 || ops > maxOps) continue;
    if (
      bindingLimit &&
      bindingsOf(
        [...groups].flatMap((g) => groupOf.get(g)!),
        bindingLimit,
      ) > bindingLimit.max
    )
      continue;
    for (const m of [...path, dom]) union(n, m);
  }

  // build one primitive function per group, rooted at its last node
  const members = new Map<CallNode, CallNode[]>();
  for (const n of order) {
    const r = find(n);
    if (!members.has(r)) members.set(r, []);
    members.get(r)!.push(n);
  }
  const replaced = new Map<GExpr, GExpr>();
  const outer = (e: GExpr): GExpr => replaced.get(e) ?? e;
  let kernelNo = 0;
  for (const n of order) {
    const group = members.get(find(n))!;
    if (group[group.length - 1] !== n) continue;
    const inGroup = new Set(group);
    const params: VarNode[] = [];
    const args: GExpr[] = [];
    const inner = new Map<GExpr, GExpr>();
    const bind = (a: GExpr): GExpr => {
      if (inner.has(a)) return inner.get(a)!;
      if (a.kind === 'const' && (a as ConstNode).value.data.length <= EMBED_MAX) return a;
      const v = gvar(`p${params.length}`, a.type as VarNode['type']);
      params.push(v);
      args.push(outer(a));
      inner.set(a, v);
      return v;
    };
    for (const m of group) {
      const margs = m.args.map((a) => (a.kind === 'call' && inGroup.has(a) ? inner.get(a)! : bind(a)));
      inner.set(m, gcall(m.op as OpSpec, margs, m.attrs, m.origin));
    }
    const name = `fused_${group
      .map((m) => (m.op as OpSpec).name)
      .filter((x, i, a) => a.indexOf(x) === i)
      .slice(0, 4)
      .join('_')}_${kernelNo++}`;
    const prim = gfunc(params, inner.get(n)!, name, true);
    replaced.set(
      n,
      gcallFunc(
        prim,
        args,
        group.flatMap((m) => m.origin),
      ),
    );
  }
  const body = fn.body.kind === 'tuple' ? gtuple(fn.body.fields.map(outer)) : outer(fn.body);
  return gfunc(fn.params, body, fn.name);
}

const embedded = (a: GExpr) => a.kind === 'const' && (a as ConstNode).value.data.length <= EMBED_MAX;

/**
 * Bindings of the kernel a group of calls would become: its distinct inputs from outside the group (constants
 * small enough to embed take none) and its output, the value of the group's last call.
 */
function bindingsOf(group: readonly CallNode[], limit: FusionBindingLimit): number {
  const inGroup = new Set<GExpr>(group);
  const inputs = new Set<GExpr>();
  for (const m of group) for (const a of m.args) if (!inGroup.has(a) && !embedded(a)) inputs.add(a);
  // the group's output: the member no other member consumes (post-order puts it last among members)
  const consumed = new Set<GExpr>(group.flatMap((m) => m.args));
  const outs = group.filter((m) => !consumed.has(m));
  let n = 0;
  for (const a of inputs) n += limit.of(a);
  for (const o of outs) n += limit.of(o);
  return n;
}

/** Kernel calls of a fused main function, in execution order. */
export function kernelCalls(fn: FuncNode): (CallNode & { op: FuncNode })[] {
  return postOrder(fn.body).filter((n): n is CallNode & { op: FuncNode } => n.kind === 'call' && isFuncCall(n));
}
