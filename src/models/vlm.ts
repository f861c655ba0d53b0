// What every vision-language model here shares: a vision tower + projector that turn pixel tiles into
// features, a Llama decoder with a KV cache, and an LM head. This class builds the step graphs
// (prefill over a prompt with images scattered into the <image> positions, and one-token decode),
// compiles each shape once and reuses it, and runs one submission per step.
import type { Gpu } from '../gpu/device.ts';
import { TUNINGS, type Tuning } from '../gpu/tuning.ts';
import { Graph } from '../graph/graph.ts';
import { Executable } from '../graph/execute.ts';
import type { Tensor } from '../graph/tensor.ts';
import type { TextConfig } from './config.ts';
import { KVCache, type LlamaModel } from './llama.ts';
import { Taps } from './taps.ts';
import { WeightStore, type ModelLoadOptions } from './weights.ts';
import { Checkpoint } from '../io/checkpoint.ts';
import { join } from 'node:path';
import { embed, NOT_IMAGE } from '../ops/embedding.ts';
import { sliceRows } from '../ops/elementwise.ts';
import { linear } from '../ops/matmul.ts';
import { argmax } from '../ops/sample.ts';

export interface StepPlan {
  exe: Executable;
  ids: Tensor;
  pixels?: Tensor;
  imageRows?: Tensor;
  logits: Tensor;
  token: Tensor;
  /** The requested intermediates this model produces (others are not in the map). */
  taps: Map<string, Tensor>;
}

export interface ForwardOptions {
  /** Logits for every position ('all', for diff and tests) or only the last (generation). */
  logits?: 'all' | 'last';
  /** Intermediates to keep and read back (names as in the reference files: vision_hidden, ...). */
  taps?: string[];
}

export abstract class VisionLanguageModel {
  abstract readonly text: LlamaModel;
  abstract readonly lm_head: Tensor; // [vocab, D]
  /** Token id of the <image> placeholder. */
  abstract readonly imageTokenId: number;
  /** Shape of one preprocessed image tile: [C, H, W]. */
  abstract readonly tileShape: [number, number, number];
  /** Image features (placeholder tokens) per tile. */
  abstract readonly featuresPerTile: number;
  /** pixels [tiles, C, H, W] → features [tiles·featuresPerTile, D_text]. */
  abstract encodeImages(g: Graph, pixels: Tensor, taps: Taps): Tensor;

  private cache?: KVCache;
  private readonly plans = new Map<string, StepPlan>();
  private busy = false;
  /** Callers of acquire() waiting for the model, first in line first. */
  private readonly waiting: (() => void)[] = [];

  /** The kernel set its graphs use: the device's (gpu.tuning) unless ModelLoadOptions.kernels says. */
  tuning: Tuning;

  constructor(
    readonly gpu: Gpu,
    readonly store: WeightStore,
  ) {
    this.tuning = gpu.tuning;
  }

  get textConfig(): TextConfig {
    return this.text.config;
  }

  /** Makes sure the KV cache holds `positions` tokens; plans bound to a smaller cache are dropped. */
  ensureCapacity(positions: number): KVCache {
    const max = this.textConfig.max_position_embeddings;
    if (positions > max) {
      throw new Error(`sequence of ${positions} tokens exceeds max_position_embeddings (${max}) of this model`);
    }
    if (!this.cache || this.cache.capacity < positions) {
      this.disposePlans();
      this.cache?.dispose();
      // Grow geometrically so that a run of slightly longer prompts does not reallocate each time.
      const cap = Math.min(max, Math.max(positions, this.cache ? this.cache.capacity * 2 : 0, 64));
      this.cache = new KVCache(this.gpu, this.textConfig, cap);
    }
    return this.cache;
  }

  /** Row of encodeImages()' output that the k-th image placeholder takes (identity unless rows are skipped). */
  featureRow(k: number): number {
    return k;
  }

  /** Maps each <image> position of `ids` to its feature row, checking the counts agree. */
  imageRows(ids: ArrayLike<number>, tiles: number): Uint32Array {
    const rows = new Uint32Array(ids.length).fill(NOT_IMAGE);
    let k = 0;
    for (let t = 0; t < ids.length; t++) if (ids[t] === this.imageTokenId) rows[t] = this.featureRow(k++);
    const want = tiles * this.featuresPerTile;
    if (k !== want) {
      throw new Error(
        `the prompt has ${k} image tokens (id ${this.imageTokenId}) but ${tiles} image tile(s) give ${want} features ` +
          `(${this.featuresPerTile} each); expand each image placeholder as the processor does`,
      );
    }
    return rows;
  }

  /** The plan for a prompt of T tokens with `tiles` image tiles (0 = text only), compiled once. */
  async forwardPlan(T: number, tiles: number, opts: ForwardOptions = {}): Promise<StepPlan> {
    const mode = opts.logits ?? 'last';
    const tapNames = [...(opts.taps ?? [])].sort();
    const key = `${T}|${tiles}|${mode}|${tapNames.join(',')}`;
    const cached = this.plans.get(key);
    if (cached) return cached;
    const cache = this.cache!;
    const g = new Graph(this.tuning);
    const taps = new Taps(new Set(tapNames));
    const ids = g.input('input_ids', [T], 'u32');
    let pixels: Tensor | undefined;
    let imageRows: Tensor | undefined;
    let image: { features: Tensor; rows: Tensor } | undefined;
    if (tiles > 0) {
      g.section('vision');
      pixels = g.input('pixel_values', [tiles, ...this.tileShape], 'f32');
      imageRows = g.input('image_rows', [T], 'u32');
      image = { features: this.encodeImages(g, pixels, taps), rows: imageRows };
    }
    g.section('decoder');
    const x = taps.tap(g, 'inputs_embeds', embed(g, ids, this.text.embed_tokens, image));
    const h = this.text.forward(g, x, cache, taps);
    const last = mode === 'all' ? h : sliceRows(g, h, T - 1, 1);
    const logits = taps.tap(g, 'logits', linear(g, last, this.lm_head));
    const token = argmax(g, logits);
    const exe = await Executable.compile(this.gpu, g, [token, logits], { keep: [...taps.tensors.values()] });
    const plan = { exe, ids, pixels, imageRows, logits, token, taps: taps.tensors };
    this.plans.set(key, plan);
    return plan;
  }

  /**
   * Runs a prompt: ids (with image placeholders expanded) and the image tiles' pixels. Tokens occupy
   * positions pos .. pos + T of the KV cache. Returns the plan, whose outputs can then be read.
   */
  async forward(
    ids: ArrayLike<number>,
    pixels: Float32Array | null,
    opts: ForwardOptions & { pos?: number; reserve?: number; profile?: (times: Map<string, number>) => void } = {},
  ): Promise<StepPlan> {
    const T = ids.length;
    if (T === 0) throw new Error('forward: empty prompt');
    const pos = opts.pos ?? 0;
    const vocab = this.textConfig.vocab_size;
    for (let t = 0; t < T; t++) {
      if (!Number.isInteger(ids[t]) || ids[t] < 0 || ids[t] >= vocab) throw new Error(`token ${t}: id ${ids[t]} is outside the vocabulary [0, ${vocab})`);
    }
    const tileElems = this.tileShape.reduce((a, b) => a * b, 1);
    const tiles = pixels ? pixels.length / tileElems : 0;
    if (!Number.isInteger(tiles)) throw new Error(`pixel_values hold ${pixels!.length} values, not a whole number of [${this.tileShape.join(', ')}] tiles`);
    const rows = this.imageRows(ids, tiles);
    this.ensureCapacity(pos + T + (opts.reserve ?? 0));
    const plan = await this.forwardPlan(T, tiles, opts);
    plan.exe.write(plan.ids, Uint32Array.from(ids));
    if (tiles > 0) {
      plan.exe.write(plan.pixels!, pixels!);
      plan.exe.write(plan.imageRows!, rows);
    }
    if (opts.profile) opts.profile(await plan.exe.runProfiled({ pos }));
    else plan.exe.run({ pos });
    return plan;
  }

  /**
   * Serialises generations (one KV cache per model): resolves with the function that frees the model once it is
   * this caller's turn, callers in the order they asked. A caller whose `signal` aborts while it waits leaves the
   * queue at once and the promise rejects with the signal's reason (as it does when the signal is already aborted).
   */
  acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      // Hand the model straight to the next waiter, so that no later caller can slip in between.
      const next = this.waiting.shift();
      if (next) next();
      else this.busy = false;
    };
    if (!this.busy) {
      this.busy = true;
      return Promise.resolve(release);
    }
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        this.waiting.splice(this.waiting.indexOf(grant), 1);
        reject(signal!.reason);
      };
      const grant = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve(release);
      };
      this.waiting.push(grant);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private disposePlans(): void {
    for (const p of this.plans.values()) p.exe.dispose();
    this.plans.clear();
  }

  /** Frees every GPU buffer the model holds: weights, KV cache, and the plans' activation buffers. */
  dispose(): void {
    this.disposePlans();
    this.cache?.dispose();
    this.cache = undefined;
    this.text.dispose(this.gpu);
    this.store.dispose();
    this.gpu.pool.trim();
  }
}

/**
 * Opens a model folder, parses its config, builds the model (which asks the store for its weights by
 * name), then uploads them; the checkpoint is closed either way and a failed load frees what it took.
 */
export async function loadCheckpointModel<C, M extends VisionLanguageModel>(
  gpu: Gpu,
  dir: string,
  opts: ModelLoadOptions,
  parse: (json: unknown, file: string) => C,
  build: (store: WeightStore, config: C, ckpt: Checkpoint) => M,
): Promise<M> {
  const ckpt = await Checkpoint.open(dir, { root: opts.root });
  try {
    const config = parse(ckpt.config, join(ckpt.dir, 'config.json'));
    const model = build(new WeightStore(gpu, ckpt, opts.dtype), config, ckpt);
    if (opts.kernels) {
      if (!(opts.kernels in TUNINGS)) throw new Error(`kernels must be "gpu" or "cpu", not ${JSON.stringify(opts.kernels)}`);
      model.tuning = TUNINGS[opts.kernels];
    }
    try {
      await model.store.load(opts.onProgress);
    } catch (e) {
      model.dispose();
      throw e;
    }
    return model;
  } finally {
    await ckpt.close();
  }
}
