// Scaled dot-product attention (shaders/attention.wgsl): bidirectional for the vision encoder, causal
// over a KV cache for the decoder, grouped-query when kv_heads < heads, online softmax in f32.
import type { Graph, Kernel } from '../graph/graph.ts';
import { type Tensor, expectShape } from '../graph/tensor.ts';
import { uniforms, f32 } from './common.ts';
import { GEMV_MAX_M, type AOperand } from './matmul.ts';

interface Attrs {
  /** Query rows of the step. */
  T: number;
  heads: number;
  kvHeads: number;
  d: number;
  causal: boolean;
  scale: number;
  /** Valid keys for a step: T for the encoder, pos + T for the decoder's cache. */
  kvLen: (pos: number) => number;
  /** Block-diagonal bidirectional attention: rows attend within blocks of this many (0 = all). */
  block: number;
  /** Split-KV: keys per split and number of splits (1 = the single-pass kernel). */
  chunk: number;
  splits: number;
  /** Causal sliding window: keys more than this many positions back are not seen (0 = none). */
  window: number;
}

const params = (a: Attrs, pos: number) =>
  uniforms(a.T, a.heads, a.kvHeads, a.d, a.kvLen(pos), a.causal ? pos : 0, a.causal ? 1 : 0, f32(a.scale), a.block, a.chunk, a.splits, a.window);

/**
 * An attention kernel: `entry` of shaders/attention.wgsl with the node's inputs and output bound at
 * `slots` (in that order), and the grid from the attributes.
 */
function attentionKernel(
  entry: string,
  slots: number[],
  grid: (a: Attrs) => [number, number, number?],
  constants?: Record<string, number>,
): Kernel<Attrs> {
  return {
    name: entry,
    encode(node, buf) {
      const a = node.attrs;
      const tensors = [...node.inputs, node.output];
      return [
        {
          pipeline: { shader: 'attention', entry, constants },
          bindings: slots.map((binding, i) => ({ binding, buffer: buf(tensors[i]) })),
          uniforms: (step) => params(a, step.pos),
          workgroups: grid(a),
        },
      ];
    },
  };
}

/** Single pass: one workgroup per (query, head). */
const kernel = attentionKernel('attention', [1, 2, 3, 4], (a) => [a.T, a.heads]);
/** Split-KV, first pass: (query, head, split) → scratch of partial results ([T·heads·splits, d + 2]). */
const partialKernel = attentionKernel('attention_partial', [1, 2, 3, 5], (a) => [a.T, a.heads, a.splits]);
/** Split-KV, second pass: merges the splits of each (query, head). */
const combineKernel = attentionKernel('attention_combine', [5, 4], (a) => [a.T, a.heads]);
/** SIMD-on-CPU devices: one invocation per query row, keys and values read as broadcast vec4s. */
const ROWS_PER_GROUP = 16;
const rowsKernel = attentionKernel('attention_rows', [6, 7, 8, 9], (a) => [Math.ceil(a.T / ROWS_PER_GROUP), a.heads], { ARWG: ROWS_PER_GROUP });
/** Decode on SIMD-on-CPU devices: one workgroup per (query, head), its lanes splitting the keys. */
const lanesKernel = attentionKernel('attention_lanes', [6, 7, 8, 9], (a) => [a.T, a.heads]);

/** Use split-KV when one workgroup per (query, head) would leave the device mostly idle. */
const SPLIT_BELOW_WORKGROUPS = 128;
const MAX_SPLITS = 32;

export interface AttentionOptions {
  heads: number;
  kvHeads: number;
  causal: boolean;
  /** Defaults to 1/sqrt(head_dim). */
  scale?: number;
  /** Bidirectional only: independent sequences of this many rows each (image tiles); 0 = one sequence. */
  block?: number;
  /** Causal only: a query sees the last `window` positions, itself included (Mistral's sliding_window); 0 = all. */
  window?: number;
  /**
   * 'auto' (default): on a SIMD-on-CPU device with d % 4 == 0, rows when T >= 16 and lanes below;
   * otherwise split-KV when T·heads is small (decode), else single. The others force a variant.
   */
  variant?: 'auto' | 'single' | 'split' | 'rows' | 'lanes';
}

/**
 * q: [T, heads·d]; k, v: [S, kvHeads·d]. Bidirectional: S = T, all keys. Causal: k and v are the KV
 * cache; query t sits at position step.pos + t and sees keys 0 ..= step.pos + t.
 */
export function attention(g: Graph, q: Tensor, k: Tensor, v: Tensor, o: AttentionOptions): Tensor {
  const r = attentionOperand(g, q, k, v, o, false);
  return r.x;
}

/**
 * Attention as the A operand of the projection that reads it (o_proj): the output [T, heads·d], or,
 * where split-KV is chosen and `mergeInConsumer`, its partials [T·heads·splits, d + 2] with the operand
 * that makes the decode gemv merge them as it reads (shaders/gemv.wgsl, partials): one dispatch fewer.
 */
export function attentionOperand(
  g: Graph,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  o: AttentionOptions,
  mergeInConsumer = true,
): { x: Tensor; a: AOperand } {
  const { heads, kvHeads, causal } = o;
  const d = q.dim(1) / heads;
  if (!Number.isInteger(d)) throw new Error(`attention: query width ${q.dim(1)} is not a multiple of ${heads} heads`);
  if (d > 256) throw new Error(`attention: head_dim ${d} exceeds the kernel's 256`);
  if (heads % kvHeads !== 0) throw new Error(`attention: ${heads} query heads are not a multiple of ${kvHeads} KV heads`);
  expectShape('attention', 'keys', k, [null, kvHeads * d], ['f32']);
  expectShape('attention', 'values', v, [k.dim(0), kvHeads * d], ['f32']);
  const T = q.dim(0);
  if (!causal && k.dim(0) !== T) throw new Error(`attention: bidirectional attention over ${k.dim(0)} keys for ${T} queries`);
  const block = o.block ?? 0;
  const window = o.window ?? 0;
  if (window && !causal) throw new Error('attention: a sliding window needs causal attention');
  if (!(Number.isInteger(window) && window >= 0)) throw new Error(`attention: window must be a non-negative integer, got ${window}`);
  if (block && (causal || T % block !== 0)) throw new Error(`attention: block ${block} needs bidirectional attention over a multiple of it (T = ${T})`);
  // Split-KV sizes from the most keys a step can see (the cache capacity): empty splits exit at once.
  const maxKeys = block || k.dim(0);
  const auto = (o.variant ?? 'auto') === 'auto';
  // On SIMD-on-CPU devices the rows kernel wants at least a workgroup of query rows; decode takes lanes.
  const cpu = auto && g.tuning.target === 'cpu' && d % 4 === 0;
  const rows = o.variant === 'rows' || (cpu && T >= ROWS_PER_GROUP);
  const lanes = o.variant === 'lanes' || (cpu && T < ROWS_PER_GROUP);
  if ((rows || lanes) && d % 4 !== 0) throw new Error(`attention: the ${o.variant} variant reads vec4s and needs head_dim (${d}) to be a multiple of 4`);
  const split = !rows && !lanes && (o.variant === 'split' || (auto && !block && T * heads < SPLIT_BELOW_WORKGROUPS && maxKeys > 64));
  const chunk = split ? Math.max(64, Math.ceil(maxKeys / MAX_SPLITS / 64) * 64) : maxKeys;
  const attrs: Attrs = {
    T,
    heads,
    kvHeads,
    d,
    causal,
    scale: o.scale ?? 1 / Math.sqrt(d),
    kvLen: causal ? (pos) => pos + T : () => T,
    block,
    chunk,
    splits: split ? Math.ceil(maxKeys / chunk) : 1,
    window,
  };
  const plain = (x: Tensor) => ({ x, a: { mode: 'plain' } as const });
  if (rows) return plain(g.add(rowsKernel, [q, k, v], { shape: [T, heads * d], dtype: 'f32' }, attrs));
  if (lanes) return plain(g.add(lanesKernel, [q, k, v], { shape: [T, heads * d], dtype: 'f32' }, attrs));
  if (!split) return plain(g.add(kernel, [q, k, v], { shape: [T, heads * d], dtype: 'f32' }, attrs));
  const part = g.add(partialKernel, [q, k, v], { shape: [T * heads * attrs.splits, d + 2], dtype: 'f32' }, attrs);
  if (mergeInConsumer && T <= GEMV_MAX_M) return { x: part, a: { mode: 'attn_partials', heads, d, splits: attrs.splits } };
  return plain(g.add(combineKernel, [part], { shape: [T, heads * d], dtype: 'f32' }, attrs));
}
