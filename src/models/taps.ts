// Named intermediates ("taps") that debug mode and `diff` read back. A model names a tensor with
// tap(); when a tap falls inside a fusion (the attention output before its residual add), the model
// asks wants() and builds the unfused form so the value exists.
import type { Graph } from '../graph/graph.ts';
import type { Tensor } from '../graph/tensor.ts';

export class Taps {
  readonly tensors = new Map<string, Tensor>();
  constructor(readonly wanted: ReadonlySet<string> = new Set()) {}

  wants(name: string): boolean {
    return this.wanted.has(name);
  }

  tap(g: Graph, name: string, t: Tensor): Tensor {
    if (this.wanted.has(name)) {
      g.name(t, name);
      this.tensors.set(name, t);
    }
    return t;
  }
}
