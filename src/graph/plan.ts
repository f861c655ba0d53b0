// Execution plan: keeps the nodes the requested outputs need, in graph order (which is topological,
// since a node can only consume tensors that already exist), and assigns activation buffers by
// liveness: a buffer returns to the free list after its last reader and the next tensor takes the
// smallest free buffer that fits. WEBGPU_VLM_NO_REUSE=1 gives every tensor its own buffer.
import type { Graph, Node } from './graph.ts';
import type { Tensor } from './tensor.ts';

export interface Slot {
  index: number;
  bytes: number;
}

export interface PlanLayout {
  order: Node[];
  /** Activation and input tensors → the slot whose buffer holds them. */
  slotOf: Map<Tensor, Slot>;
  slots: Slot[];
  /** Peak bytes of activations with reuse, and what they would take without it. */
  bytesPlanned: number;
  bytesUnshared: number;
  /** The largest placed tensor: it must fit one storage binding. */
  largest: Tensor | undefined;
}

export interface PlanOptions {
  /** Tensors kept alive to the end (debug read-back of intermediates). */
  keep?: Tensor[];
  reuse?: boolean;
}

const placed = (t: Tensor) => t.kind === 'value' || t.kind === 'input';

export function planGraph(graph: Graph, outputs: Tensor[], opts: PlanOptions = {}): PlanLayout {
  const reuse = opts.reuse ?? process.env.WEBGPU_VLM_NO_REUSE !== '1';
  // 1. Liveness: walk back from the outputs.
  const needed = new Set<Node>();
  const stack = [...outputs, ...(opts.keep ?? [])].map((t) => t.node).filter((n): n is Node => !!n);
  while (stack.length) {
    const n = stack.pop()!;
    if (needed.has(n)) continue;
    needed.add(n);
    for (const i of n.inputs) if (i.node && !needed.has(i.node)) stack.push(i.node);
  }
  const order = graph.nodes.filter((n) => needed.has(n));

  // 2. Last use of every placed tensor; outputs, kept tensors and inputs live to the end.
  const lastUse = new Map<Tensor, number>();
  order.forEach((n, i) => n.inputs.forEach((t) => placed(t) && lastUse.set(t, i)));
  const pinned = new Set<Tensor>([...outputs, ...(opts.keep ?? []), ...graph.inputs]);

  // 3. Greedy assignment.
  const slots: Slot[] = [];
  const free: Slot[] = [];
  const slotOf = new Map<Tensor, Slot>();
  const take = (t: Tensor) => {
    let best = -1;
    for (let i = 0; i < free.length; i++) {
      const s = free[i];
      if (s.bytes >= t.bytes && (best < 0 || s.bytes < free[best].bytes)) best = i;
    }
    // No free slot fits: grow the largest free one rather than open a new one.
    if (best < 0 && free.length) best = free.reduce((b, s, i) => (s.bytes > free[b].bytes ? i : b), 0);
    let slot: Slot;
    if (reuse && best >= 0) {
      slot = free.splice(best, 1)[0];
      slot.bytes = Math.max(slot.bytes, t.bytes);
    } else {
      slot = { index: slots.length, bytes: t.bytes };
      slots.push(slot);
    }
    slotOf.set(t, slot);
  };
  for (const t of graph.inputs) take(t);
  let unshared = graph.inputs.reduce((a, t) => a + t.bytes, 0);
  order.forEach((n, i) => {
    const out = n.output;
    if (placed(out)) {
      take(out);
      unshared += out.bytes;
    }
    for (const t of new Set(n.inputs)) {
      if (placed(t) && lastUse.get(t) === i && !pinned.has(t)) free.push(slotOf.get(t)!);
    }
    // An output nobody reads (and nobody asked for) is dead right after its node.
    if (placed(out) && !lastUse.has(out) && !pinned.has(out)) free.push(slotOf.get(out)!);
  });
  return {
    order,
    slotOf,
    slots,
    bytesPlanned: slots.reduce((a, s) => a + s.bytes, 0),
    bytesUnshared: unshared,
    largest: [...slotOf.keys()].reduce<Tensor | undefined>((a, t) => (!a || t.bytes > a.bytes ? t : a), undefined),
  };
}
