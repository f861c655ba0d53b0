// The computation graph: ops are nodes with inferred output shape and dtype. Models build a graph
// once per step shape (prefill of length T, decode of one token); the plan then reuses it.
import { Tensor, type DType, type Chunk, type Quant } from './tensor.ts';
import type { PipelineKey } from '../gpu/pipelines.ts';
import { DEFAULT_TUNING, type Tuning } from '../gpu/tuning.ts';

/** Values that change between executions of one plan (decode position), read when uniforms are written. */
export interface Step {
  /** Absolute position of the first row of this step's tokens (0 for prefill). */
  pos: number;
}

/** A buffer range bound to one @binding of a dispatch. */
export interface Binding {
  binding: number;
  buffer: GPUBuffer;
  offset?: number;
  size?: number;
}

/** One compute dispatch of a node; a node may need several (a weight split in chunks). */
export interface Dispatch {
  pipeline: PipelineKey;
  bindings: Binding[];
  /**
   * Uniform struct bound at @binding(0), as 32-bit words: fixed, or a function of the step (decode
   * position), recomputed for each execution. Fixed ones are written once, when the plan is compiled.
   */
  uniforms: Uint32Array | ((step: Step) => Uint32Array);
  workgroups: [number, number?, number?];
}

/** Resolves the buffer holding a tensor (activation, input, weight or state) when the plan is compiled. */
export type BufferOf = (t: Tensor) => GPUBuffer;

export interface Kernel<A = unknown> {
  /** Family name, e.g. "matmul"; shown in errors and profiles. */
  readonly name: string;
  /** Emits this node's dispatches once buffers are known. */
  encode(node: Node<A>, buf: BufferOf, gpu: KernelContext): Dispatch[];
}

/** What a kernel may ask of the device when it picks a variant. */
export interface KernelContext {
  has(feature: 'shader-f16' | 'subgroups' | 'timestamp-query'): boolean;
  /** A 16-byte buffer bound where an optional input (bias, residual) is absent. */
  readonly dummy: GPUBuffer;
  /** Row reductions may use subgroupAdd (see Gpu.subgroupReduce). */
  readonly subgroupReduce: boolean;
}

export class Node<A = unknown> {
  readonly kernel: Kernel<A>;
  readonly inputs: Tensor[];
  readonly output: Tensor;
  readonly attrs: A;
  /** The part of the model it belongs to ("vision", "decoder"), timed separately when profiling. */
  section = 'main';
  constructor(kernel: Kernel<A>, inputs: Tensor[], output: Tensor, attrs: A) {
    this.kernel = kernel;
    this.inputs = inputs;
    this.output = output;
    this.attrs = attrs;
  }
}

export class Graph {
  /** The device's kernel choices (gpu.tuning); ops with 'auto' variants pick by it. */
  readonly tuning: Tuning;
  readonly nodes: Node[] = [];
  readonly inputs: Tensor[] = [];
  private readonly names = new Map<string, Tensor>();
  private currentSection = 'main';

  constructor(tuning: Tuning = DEFAULT_TUNING) {
    this.tuning = tuning;
  }

  /** Nodes added from now on belong to `name` (a profiling section: a separate compute pass when timed). */
  section(name: string): void {
    this.currentSection = name;
  }

  /** A tensor the caller fills before each execution (pixels, token ids). */
  input(name: string, shape: number[], dtype: DType): Tensor {
    const t = new Tensor(shape, dtype, 'input', name);
    this.inputs.push(t);
    this.names.set(name, t);
    return t;
  }

  /** Binds already-uploaded buffers (weights) as a tensor. */
  weight(name: string, shape: readonly number[], dtype: DType, chunks: Chunk[], quant?: Quant): Tensor {
    const t = new Tensor(shape, dtype, 'weight', name);
    t.chunks = chunks;
    t.quant = quant;
    return t;
  }

  /** Persistent state (KV cache) that nodes write into and that survives executions. */
  state(name: string, shape: number[], dtype: DType, buffer: GPUBuffer): Tensor {
    const t = new Tensor(shape, dtype, 'state', name);
    t.chunks = [{ buffer, row0: 0, rows: shape[0] ?? 1 }];
    return t;
  }

  /**
   * Adds a node. `out` is the inferred output shape and dtype; when `writes` names a state tensor the
   * node writes into it and returns a tensor that aliases it, so that readers depend on the write.
   */
  add<A>(kernel: Kernel<A>, inputs: Tensor[], out: { shape: number[]; dtype: DType }, attrs: A, writes?: Tensor): Tensor {
    let t: Tensor;
    if (writes) {
      t = new Tensor(writes.shape, writes.dtype, 'state', writes.name);
      t.chunks = writes.chunks;
    } else {
      t = new Tensor(out.shape, out.dtype, 'value');
    }
    const node = new Node(kernel, inputs, t, attrs);
    node.section = this.currentSection;
    t.node = node;
    this.nodes.push(node as Node);
    return t;
  }

  /**
   * Declares that the node producing `by` also writes the state tensor `state` (a kernel with several
   * outputs, e.g. RoPE that appends keys and values to the caches) and returns the state as that node
   * leaves it, for readers to depend on.
   */
  alsoWrites(by: Tensor, state: Tensor): Tensor {
    if (!by.node) throw new Error(`alsoWrites: ${by} is not produced by a node`);
    if (state.kind !== 'state') throw new Error(`alsoWrites: ${state} is not a state tensor`);
    const t = new Tensor(state.shape, state.dtype, 'state', state.name);
    t.chunks = state.chunks;
    t.node = by.node;
    return t;
  }

  /** Names a tensor so that debug mode and `diff` can read it back. */
  name(t: Tensor, name: string): Tensor {
    t.name = name;
    this.names.set(name, t);
    return t;
  }

  get(name: string): Tensor | undefined {
    return this.names.get(name);
  }

  get named(): ReadonlyMap<string, Tensor> {
    return this.names;
  }
}
