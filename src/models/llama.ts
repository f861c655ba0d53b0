// Llama decoder (transformers LlamaModel), as SmolVLM's text model and LLaVA's language model:
//   embed → N × [RMSNorm → GQA attention with RoPE over the KV cache → +res → RMSNorm → SwiGLU → +res] → RMSNorm.
// Reference: llama2.c run.c forward(); HF LlamaDecoderLayer for names and the rotate_half RoPE.
import type { Gpu } from '../gpu/device.ts';
import type { Graph } from '../graph/graph.ts';
import { Tensor } from '../graph/tensor.ts';
import type { TextConfig } from './config.ts';
import type { VarBuilder } from './weights.ts';
import type { Taps } from './taps.ts';
import { Linear } from './vit.ts';
import { rmsNorm } from '../ops/norm.ts';
import { attentionOperand } from '../ops/attention.ts';
import { ropeQKV, ropeInvFreq } from '../ops/rope.ts';
import { add, activationOf } from '../ops/elementwise.ts';
import { swiGlu } from '../ops/gemv.ts';
import { linear, matmulNode, type NormFold } from '../ops/matmul.ts';

export class RMSNorm {
  readonly weight: Tensor; // [D]
  constructor(
    vb: VarBuilder,
    D: number,
    readonly eps: number,
  ) {
    this.weight = vb.get('weight', [D]);
  }
  forward(g: Graph, x: Tensor): Tensor {
    return rmsNorm(g, x, this.weight, this.eps);
  }
  /** The norm for the layers that read its output to apply (the ops fold it into their kernels where they can). */
  get fold(): NormFold {
    return { weight: this.weight, eps: this.eps };
  }
}

/** Per-layer key and value caches, [capacity, kv_heads·head_dim] f32 each, preallocated. */
export class KVCache {
  readonly k: GPUBuffer[];
  readonly v: GPUBuffer[];
  readonly width: number;
  constructor(
    readonly gpu: Gpu,
    c: TextConfig,
    readonly capacity: number,
  ) {
    this.width = c.num_key_value_heads * c.head_dim;
    const bytes = capacity * this.width * 4;
    if (bytes > gpu.maxBinding) {
      throw new Error(`KV cache: ${capacity} positions need ${bytes} bytes per layer, above maxStorageBufferBindingSize ${gpu.maxBinding}`);
    }
    this.k = Array.from({ length: c.num_hidden_layers }, (_, i) => gpu.pool.create(bytes, undefined, `kv.k.${i}`));
    this.v = Array.from({ length: c.num_hidden_layers }, (_, i) => gpu.pool.create(bytes, undefined, `kv.v.${i}`));
  }
  /** Copies the first `positions` keys and values of every layer of `from` (a smaller cache) into this one. */
  copyFrom(from: KVCache, positions: number): void {
    const bytes = Math.min(positions, from.capacity, this.capacity) * this.width * 4;
    if (!bytes) return;
    const enc = this.gpu.device.createCommandEncoder();
    for (let i = 0; i < this.k.length; i++) {
      enc.copyBufferToBuffer(from.k[i], 0, this.k[i], 0, bytes);
      enc.copyBufferToBuffer(from.v[i], 0, this.v[i], 0, bytes);
    }
    this.gpu.device.queue.submit([enc.finish()]);
  }

  /** The layer's caches as graph state tensors. */
  layer(g: Graph, i: number): { k: Tensor; v: Tensor } {
    return {
      k: g.state(`kv.k.${i}`, [this.capacity, this.width], 'f32', this.k[i]),
      v: g.state(`kv.v.${i}`, [this.capacity, this.width], 'f32', this.v[i]),
    };
  }
  dispose(): void {
    for (const b of [...this.k, ...this.v]) this.gpu.pool.destroy(b);
  }
}

export class LlamaAttention {
  readonly q_proj: Linear; // [heads·hd, D]
  readonly k_proj: Linear; // [kv_heads·hd, D]
  readonly v_proj: Linear; // [kv_heads·hd, D]
  readonly o_proj: Linear; // [D, heads·hd]
  /** q_proj, k_proj and v_proj stacked after loading ([(heads + 2·kv_heads)·hd, D]): one matmul. */
  readonly qkv: { weight: Tensor; bias?: Tensor };
  readonly heads: number;
  readonly kvHeads: number;
  /** Mistral's sliding window (0: every earlier position is seen). */
  readonly window: number;
  constructor(vb: VarBuilder, c: TextConfig) {
    const D = c.hidden_size;
    const hd = c.head_dim;
    this.heads = c.num_attention_heads;
    this.kvHeads = c.num_key_value_heads;
    this.window = c.sliding_window ?? 0;
    this.q_proj = new Linear(vb.pp('q_proj'), D, this.heads * hd, c.attention_bias);
    this.k_proj = new Linear(vb.pp('k_proj'), D, this.kvHeads * hd, c.attention_bias);
    this.v_proj = new Linear(vb.pp('v_proj'), D, this.kvHeads * hd, c.attention_bias);
    this.o_proj = new Linear(vb.pp('o_proj'), this.heads * hd, D, c.attention_bias);
    const parts = [this.q_proj, this.k_proj, this.v_proj];
    this.qkv = {
      weight: vb.store.stackRows(vb.path('{q,k,v}_proj.weight'), parts.map((l) => l.weight)),
      bias: c.attention_bias ? vb.store.stackRows(vb.path('{q,k,v}_proj.bias'), parts.map((l) => l.bias!)) : undefined,
    };
  }
  /**
   * x: [T, D] at positions step.pos .. step.pos + T. Appends RoPE'd keys and the values to the cache,
   * attends causally over it, and returns o_proj(out) (+ residual, fused, when given).
   */
  forward(g: Graph, x: Tensor, cache: { k: Tensor; v: Tensor }, invFreq: Tensor, residual?: Tensor, norm?: NormFold): Tensor {
    // One matmul for q, k and v; RoPE on q and k and the append of keys and values to the caches, one kernel.
    const qkv = linear(g, x, this.qkv.weight, { bias: this.qkv.bias, norm });
    const { q, k, v } = ropeQKV(g, qkv, invFreq, this.heads, this.kvHeads, cache);
    // In decode on a GPU, o_proj's gemv merges the split-KV partials as it reads them (no combine pass).
    const o = attentionOperand(g, q, k, v, { heads: this.heads, kvHeads: this.kvHeads, causal: true, window: this.window });
    return matmulNode(g, o.x, this.o_proj.weight, x.dim(0), o.a, { bias: this.o_proj.bias, residual });
  }
}

export class LlamaMLP {
  readonly gate_proj: Linear; // [I, D]
  readonly up_proj: Linear; // [I, D]
  readonly down_proj: Linear; // [D, I]
  constructor(vb: VarBuilder, c: TextConfig) {
    if (activationOf(c.hidden_act, 'text_config') !== 'silu') {
      throw new Error(`text_config: hidden_act "${c.hidden_act}" is not supported by the Llama MLP (expected silu)`);
    }
    this.gate_proj = new Linear(vb.pp('gate_proj'), c.hidden_size, c.intermediate_size, c.mlp_bias);
    this.up_proj = new Linear(vb.pp('up_proj'), c.hidden_size, c.intermediate_size, c.mlp_bias);
    this.down_proj = new Linear(vb.pp('down_proj'), c.intermediate_size, c.hidden_size, c.mlp_bias);
  }
  /** down(silu(gate(norm(x))) · up(norm(x))) + residual. */
  forward(g: Graph, x: Tensor, residual: Tensor, norm?: NormFold): Tensor {
    const h = swiGlu(g, x, this.gate_proj.weight, this.up_proj.weight, { gateBias: this.gate_proj.bias, upBias: this.up_proj.bias, norm });
    return this.down_proj.forward(g, h, { residual });
  }
}

export class LlamaDecoderLayer {
  readonly input_layernorm: RMSNorm;
  readonly self_attn: LlamaAttention;
  readonly post_attention_layernorm: RMSNorm;
  readonly mlp: LlamaMLP;
  constructor(vb: VarBuilder, c: TextConfig) {
    this.input_layernorm = new RMSNorm(vb.pp('input_layernorm'), c.hidden_size, c.rms_norm_eps);
    this.self_attn = new LlamaAttention(vb.pp('self_attn'), c);
    this.post_attention_layernorm = new RMSNorm(vb.pp('post_attention_layernorm'), c.hidden_size, c.rms_norm_eps);
    this.mlp = new LlamaMLP(vb.pp('mlp'), c);
  }
  forward(g: Graph, x: Tensor, cache: { k: Tensor; v: Tensor }, invFreq: Tensor, taps?: Taps, attnTap?: string): Tensor {
    const norm = this.input_layernorm.fold;
    let r: Tensor;
    if (attnTap && taps?.wants(attnTap)) {
      r = add(g, taps.tap(g, attnTap, this.self_attn.forward(g, x, cache, invFreq, undefined, norm)), x);
    } else {
      r = this.self_attn.forward(g, x, cache, invFreq, x, norm);
    }
    return this.mlp.forward(g, r, r, this.post_attention_layernorm.fold);
  }
}

/** LlamaModel: embed_tokens, layers, norm (the LM head belongs to the enclosing model). */
export class LlamaModel {
  readonly embed_tokens: Tensor; // [vocab, D]
  readonly layers: LlamaDecoderLayer[];
  readonly norm: RMSNorm;
  /** inv_freq [head_dim / 2] for RoPE, uploaded once. */
  readonly invFreq: Tensor;
  constructor(
    vb: VarBuilder,
    readonly config: TextConfig,
  ) {
    const c = config;
    this.embed_tokens = vb.get('embed_tokens.weight', [c.vocab_size, c.hidden_size], { role: 'table' });
    this.layers = Array.from({ length: c.num_hidden_layers }, (_, i) => new LlamaDecoderLayer(vb.pp('layers').pp(i), c));
    this.norm = new RMSNorm(vb.pp('norm'), c.hidden_size, c.rms_norm_eps);
    const gpu = vb.store.gpu;
    this.invFreq = new Tensor([c.head_dim / 2], 'f32', 'weight', 'rope.inv_freq');
    this.invFreq.chunks = [{ buffer: gpu.pool.upload(ropeInvFreq(c.rope_theta, c.head_dim), 'rope.inv_freq'), row0: 0, rows: c.head_dim / 2 }];
  }

  /** x: input embeddings [T, D] at positions step.pos ..; returns the final-norm hidden states [T, D]. */
  forward(g: Graph, x: Tensor, cache: KVCache, taps?: Taps): Tensor {
    this.layers.forEach((layer, i) => {
      x = layer.forward(g, x, cache.layer(g, i), this.invFreq, taps, i === 0 ? 'layer0_text_attn' : undefined);
      taps?.tap(g, `layer${i}_text`, x);
    });
    return taps ? taps.tap(g, 'text_final_norm', this.norm.forward(g, x)) : this.norm.forward(g, x);
  }

  dispose(gpu: Gpu): void {
    for (const c of this.invFreq.chunks ?? []) gpu.pool.destroy(c.buffer);
  }
}
