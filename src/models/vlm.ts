// What every vision-language model here shares: a vision tower + projector that turn pixel tiles into
// features, a Llama decoder with a KV cache, and an LM head. This class builds the step graphs
// (prefill over a prompt with images scattered into the <image> positions, and one-token decode),
// compiles each shape once and reuses it, and runs one submission per step.
import { GpuError, type Gpu } from '../gpu/device.ts';
import { TUNINGS, type Tuning } from '../gpu/tuning.ts';
import { Graph } from '../graph/graph.ts';
import { Executable } from '../graph/execute.ts';
import { planGraph } from '../graph/plan.ts';
import type { Tensor } from '../graph/tensor.ts';
import type { TextConfig } from './config.ts';
import { KVCache, type LlamaModel } from './llama.ts';
import { Taps } from './taps.ts';
import { WeightStore, type ModelLoadOptions } from './weights.ts';
import { ModelDir } from '../io/model-dir.ts';
import { quantConfigOf } from '../io/quant.ts';
import { Checkpoint } from '../io/checkpoint.ts';
import { join } from 'node:path';
import { embed, NOT_IMAGE } from '../ops/embedding.ts';
import { sliceRows } from '../ops/elementwise.ts';
import { linear } from '../ops/matmul.ts';
import { argmax, candidatesOf, MAX_CANDIDATES, topK, type Candidates } from '../ops/sample.ts';

export interface StepPlan {
  exe: Executable;
  ids: Tensor;
  pixels?: Tensor;
  imageRows?: Tensor;
  logits: Tensor;
  token: Tensor;
  /** With a temperature: its input, and the sampling candidates of the last row (topK). */
  sampler?: { temperature: Tensor; candidates: Tensor };
  /** The requested intermediates this model produces (others are not in the map). */
  taps: Map<string, Tensor>;
}

/**
 * One image as the model takes it: its tiles (consecutive in the pixel tensor) and the geometry its
 * features are packed by — the split or crop grid (0 × 0: not split) and the original size (LLaVA-NeXT
 * un-pads its grid features to it, transformers' `image_sizes`).
 */
export interface ImageLayout {
  tiles: number;
  rows: number;
  cols: number;
  height: number;
  width: number;
  /**
   * The image's tiles when they are made on the device (GPU preprocessing) rather than given as host pixels. It
   * travels with the layout, which every slice of a batch keeps, and its key replaces the key given for the image.
   */
  device?: DeviceTiles;
}

/**
 * An image's tiles made on the device: written into the vision encoder's input buffer when a step needs them,
 * never read back (src/image/gpu-preprocess.ts).
 */
export interface DeviceTiles {
  readonly tiles: number;
  /** The size of every tile (3 channels). */
  readonly height: number;
  readonly width: number;
  /** Equal keys, equal tiles: what prefix reuse compares. */
  readonly key: string;
  /** Queues tiles first .. first + count − 1 as float32 [count, 3, height, width] at byte `offset` of `dst`. */
  write(dst: GPUBuffer, offset: number, first: number, count: number): void;
}

/**
 * Preprocessed images: the tiles' pixels [tiles, C, H, W] and each image's layout, in prompt order. Images whose
 * tiles are on the device (every image has `device`) come with no host pixels: `pixels` is empty.
 */
export interface ImageBatch {
  pixels: Float32Array;
  images: ImageLayout[];
}

/** A vision-encoder plan for a group of tiles: pixels in, image features out (copied on into the step's features). */
interface VisionPlan {
  exe: Executable;
  pixels: Tensor;
  features: Tensor;
  taps: Map<string, Tensor>;
}

export interface ForwardOptions {
  /** Logits for every position ('all', for diff and tests) or only the last (generation). */
  logits?: 'all' | 'last';
  /** Intermediates to keep and read back (names as in the reference files: vision_hidden, ...). */
  taps?: string[];
}

/**
 * How large one submission of a prompt step may be. A step whose activations fit is one graph, vision
 * encoder and decoder together; a larger one runs the vision encoder on groups of tiles (they are
 * independent: attention is block-diagonal), keeping the features on the GPU, then the decoder prefill on
 * chunks of tokens that append to the KV cache. The sizes are the largest equal splits whose every
 * activation fits one storage binding (maxStorageBufferBindingSize) and whose planned activations fit
 * `activationBytes`.
 */
export interface ChunkLimits {
  /** Most bytes of activations one submission may plan (default 1 GiB). */
  activationBytes?: number;
  /** Most image tiles (crops) per vision-encoder submission (default: no limit but the memory's). */
  visionTiles?: number;
  /** Most tokens per prefill submission (default 512, llama.cpp's micro-batch). */
  prefillTokens?: number;
}

export const DEFAULT_CHUNK_LIMITS: Required<ChunkLimits> = { activationBytes: 2 ** 30, visionTiles: Infinity, prefillTokens: 512 };

/** `base` with the limits `over` sets (positive integers, or Infinity), checked and naming a bad one. */
export function chunkLimits(base: Required<ChunkLimits>, over: ChunkLimits = {}): Required<ChunkLimits> {
  const out = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (!(k in DEFAULT_CHUNK_LIMITS)) throw new RangeError(`limits: unknown key "${k}" (expected ${Object.keys(DEFAULT_CHUNK_LIMITS).join(', ')})`);
    if (v === undefined) continue;
    if (!(v === Infinity || (Number.isInteger(v) && v >= 1))) throw new RangeError(`limits.${k} must be a positive integer, got ${v}`);
    out[k as keyof ChunkLimits] = v;
  }
  return out;
}

/** Progress of a prompt step that runs in several submissions: image tiles encoded, prompt tokens prefilled. */
export interface StepProgress {
  stage: 'image' | 'prefill';
  /** Tiles (image) or tokens (prefill) done so far, of `total`. */
  done: number;
  total: number;
  /** Milliseconds since the step started. */
  elapsedMs: number;
}

export interface StepOptions extends ForwardOptions {
  /** Position of the first token in the KV cache (0 for a prompt). */
  pos?: number;
  /** KV-cache positions to reserve beyond the step (the tokens still to be generated). */
  reserve?: number;
  /**
   * Sampling temperature (> 0): the step also picks the largest logits of its last row and the row's
   * softmax mass at this temperature, for candidates().
   */
  temperature?: number;
  /** Called with the device milliseconds of each section (vision, decoder) once the step has run. */
  profile?: (times: Map<string, number>) => void;
  /**
   * Called after each submission (each group of tiles, each chunk of tokens). With it, the vision encoder
   * and the prefill are always submitted apart, so that at least those two are reported.
   */
  onProgress?: (p: StepProgress) => void;
  /** Overrides the model's chunk limits for this step. */
  limits?: ChunkLimits;
  /** A key per image of this step (equal keys: equal pixels), so that a later prompt can reuse the cache. */
  imageKeys?: readonly string[];
  /**
   * The ids are tokens the model generated: an image token among them is text (its embedding row), not a
   * placeholder for image features.
   */
  generated?: boolean;
}

/** What a step produced: the token and logits of its last row, and the intermediates asked for. */
export interface ForwardResult {
  /** The plan that ran last (the only one unless the step was split): it holds the step's logits and token. */
  readonly plan: StepPlan;
  /** Submissions the step took: vision-encoder groups and prefill chunks (0 and 1 for one graph). */
  readonly split: { visionGroups: number; prefillChunks: number };
  /** The requested intermediates the model produced, in compute order. */
  readonly taps: readonly string[];
  tap(name: string): Promise<Float32Array>;
  /** The logits: the last row, or every row under logits 'all'. */
  logits(): Promise<Float32Array>;
  token(): Promise<number>;
  /** The last row's sampling candidates (a step run with a temperature). */
  candidates(): Promise<Candidates>;
}

/**
 * Intermediates a reference names that a model reads on the host out of another one: rows `rows` of `from`
 * (rows of `width` values), in that order.
 */
export type DerivedTaps = Map<string, { from: string; rows: number[]; width: number }>;

/** The split a step takes: tiles per vision group and tokens per prefill chunk, or one graph. */
type Split = { tiles: number; tokens: number } | 'one graph';

export abstract class VisionLanguageModel {
  abstract readonly text: LlamaModel;
  abstract readonly lm_head: Tensor; // [vocab, D]
  /** Token id of the <image> placeholder. */
  abstract readonly imageTokenId: number;
  /** Shape of one preprocessed image tile: [C, H, W]. */
  abstract readonly tileShape: [number, number, number];
  /** Image features (placeholder tokens) per tile. */
  abstract readonly featuresPerTile: number;
  /** pixels [tiles, C, H, W] → features [tiles·rows per tile, D_text] (rows of a tile are contiguous). */
  abstract encodeImages(g: Graph, pixels: Tensor, taps: Taps): Tensor;

  private cache?: KVCache;
  /** Image features of a split step, written by the vision groups and read by the prefill chunks. */
  private features?: { buffer: GPUBuffer; rows: number };
  private readonly plans = new Map<string, StepPlan>();
  private readonly visionPlans = new Map<string, VisionPlan>();
  private readonly splits = new Map<string, Split>();
  private busy = false;
  /** Callers of acquire() waiting for the model, first in line first. */
  private readonly waiting: (() => void)[] = [];

  /** The kernel set its graphs use: the device's (gpu.tuning) unless ModelLoadOptions.kernels says. */
  tuning: Tuning;
  /** Default sizes of a step's submissions (see ChunkLimits); ModelLoadOptions.limits overrides them. */
  limits: Required<ChunkLimits> = { ...DEFAULT_CHUNK_LIMITS };

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
      // Grow geometrically so that a run of slightly longer prompts does not reallocate each time.
      const cap = Math.min(max, Math.max(positions, this.cache ? this.cache.capacity * 2 : 0, 64));
      const grown = new KVCache(this.gpu, this.textConfig, cap);
      // What the old cache holds stays valid (see held): its keys and values move to the new one.
      if (this.cache) grown.copyFrom(this.cache, this.held.ids.length);
      this.cache?.dispose();
      this.cache = grown;
    }
    return this.cache;
  }

  /**
   * What the KV cache holds: the token ids at positions 0 .. n − 1, and for each image whose features
   * filled placeholders among them, its key (null: unknown, never matched) and its placeholder count.
   * Kept by forward().
   */
  private held: { ids: number[]; images: { key: string | null; placeholders: number; end: number }[] } = { ids: [], images: [] };

  /**
   * How much of a prompt the KV cache already holds: the longest common prefix of `ids` and the held ids,
   * shortened to the first placeholder of the first image whose key differs (or that the prefix would
   * cut), and so that at least the last token runs. Returns the tokens and the images within that prefix.
   */
  reusablePrefix(ids: ArrayLike<number>, images: readonly ImageLayout[], keys: readonly string[]): { tokens: number; images: number } {
    const held = this.held;
    let n = 0;
    const max = Math.min(ids.length - 1, held.ids.length);
    while (n < max && ids[n] === held.ids[n]) n++;
    let image = 0;
    let left = 0; // placeholders of the current image still to come
    let kept = 0;
    for (let t = 0; t < n; t++) {
      if (ids[t] !== this.imageTokenId) continue;
      if (left === 0) {
        // The first placeholder of image `image`: keep it only if it is the held one and ends within the prefix.
        const count = image < images.length ? this.placeholders(images[image]) : 0;
        const key = images[image]?.device?.key ?? keys[image];
        const same = image < held.images.length && held.images[image].key !== null && held.images[image].key === key;
        if (!same || !this.imageEndsBy(ids, t, count, n)) {
          n = t;
          break;
        }
        left = count;
        kept = ++image;
      }
      left--;
    }
    return { tokens: n, images: kept };
  }

  /** Whether `count` placeholders starting at `start` all lie before position `end`. */
  private imageEndsBy(ids: ArrayLike<number>, start: number, count: number, end: number): boolean {
    let left = count;
    for (let t = start; t < end && left > 0; t++) if (ids[t] === this.imageTokenId) left--;
    return left === 0;
  }

  /**
   * The layout of an image of height × width as this model's processor tiles it, from its size alone (what a
   * reference's `image_sizes` gives): one tile by default; LLaVA-NeXT's crop grid.
   */
  imageLayout(height: number, width: number): ImageLayout {
    return { tiles: 1, rows: 0, cols: 0, height, width };
  }

  /** Placeholder tokens an image takes: featuresPerTile per tile (LLaVA-NeXT packs its own). */
  placeholders(image: ImageLayout): number {
    return image.tiles * this.featuresPerTile;
  }

  /** Row of encodeImages()' output that the k-th image placeholder takes (identity unless rows are skipped). */
  featureRow(k: number): number {
    return k;
  }

  /**
   * Maps each <image> position of `ids` to the feature row it takes (or NEWLINE_ROW), image by image,
   * checking the counts agree.
   */
  imageRows(ids: ArrayLike<number>, images: readonly ImageLayout[]): Uint32Array {
    const rows = new Uint32Array(ids.length).fill(NOT_IMAGE);
    const order = this.packedRows(images);
    let k = 0;
    for (let t = 0; t < ids.length; t++) if (ids[t] === this.imageTokenId) rows[t] = k < order.length ? order[k++] : (k++, NOT_IMAGE);
    if (k !== order.length) {
      const tiles = images.reduce((a, im) => a + im.tiles, 0);
      throw new Error(
        `the prompt has ${k} image tokens (id ${this.imageTokenId}) but ${tiles} image tile(s) give ${order.length} features ` +
          `(${images.length ? `${images.length} image(s): ${images.map((im) => this.placeholders(im)).join(' + ')}` : 'no image'}); ` +
          'expand each image placeholder as the processor does',
      );
    }
    return rows;
  }

  /** The feature rows the placeholders take, in order, for these images (their tiles consecutive). */
  protected packedRows(images: readonly ImageLayout[]): number[] {
    const n = images.reduce((a, im) => a + this.placeholders(im), 0);
    return Array.from({ length: n }, (_, k) => this.featureRow(k));
  }

  /** The DerivedTaps this model has (e.g. per-crop features without their CLS rows); none by default. */
  protected derivedTaps(_ids: ArrayLike<number>, _images: readonly ImageLayout[]): DerivedTaps {
    return new Map();
  }

  /** Image-newline vector [D] that packed rows may name with NEWLINE_ROW (LLaVA-NeXT). */
  get imageNewline(): Tensor | undefined {
    return undefined;
  }

  /**
   * The decoder over T tokens: embeddings (with image features scattered into the <image> rows), the
   * layers over the KV cache, and the logits of the last row (or all rows) with their argmax.
   */
  private decoder(g: Graph, T: number, image: { features: Tensor } | undefined, mode: 'all' | 'last', taps: Taps, sample = false) {
    g.section('decoder');
    const ids = g.input('input_ids', [T], 'u32');
    const imageRows = image && g.input('image_rows', [T], 'u32');
    const x = taps.tap(g, 'inputs_embeds', embed(g, ids, this.text.embed_tokens, image && { features: image.features, rows: imageRows!, newline: this.imageNewline }));
    const h = this.text.forward(g, x, this.cache!, taps);
    const last = mode === 'all' ? h : sliceRows(g, h, T - 1, 1);
    const logits = taps.tap(g, 'logits', linear(g, last, this.lm_head));
    let sampler: StepPlan['sampler'];
    if (sample) {
      const temperature = g.input('temperature', [1], 'f32');
      sampler = { temperature, candidates: topK(g, logits, temperature, MAX_CANDIDATES) };
    }
    return { ids, imageRows, logits, token: argmax(g, logits), sampler };
  }

  /** The step as one graph: T tokens with `tiles` image tiles (0 = text only), vision encoder included. */
  private oneGraph(T: number, tiles: number, mode: 'all' | 'last', taps: Taps, sample = false) {
    const g = new Graph(this.tuning);
    let pixels: Tensor | undefined;
    let features: Tensor | undefined;
    if (tiles > 0) {
      g.section('vision');
      pixels = g.input('pixel_values', [tiles, ...this.tileShape], 'f32');
      features = this.encodeImages(g, pixels, taps);
    }
    return { g, pixels, ...this.decoder(g, T, features && { features }, mode, taps, sample) };
  }

  /** A prefill chunk of T tokens reading image features (rows [featureRows, D]) that the vision groups wrote. */
  private prefillGraph(T: number, featureRows: number, buffer: GPUBuffer, mode: 'all' | 'last', taps: Taps, sample = false) {
    const g = new Graph(this.tuning);
    const features = featureRows > 0 ? g.state('image_features', [featureRows, this.textConfig.hidden_size], 'f32', buffer) : undefined;
    return { g, pixels: undefined, ...this.decoder(g, T, features && { features }, mode, taps, sample) };
  }

  /** The vision encoder on a group of `tiles` tiles. */
  private visionGraph(tiles: number, taps: Taps) {
    const g = new Graph(this.tuning);
    g.section('vision');
    const pixels = g.input('pixel_values', [tiles, ...this.tileShape], 'f32');
    return { g, pixels, features: this.encodeImages(g, pixels, taps) };
  }

  /** Whether a graph's activations fit: each tensor in one binding, all of them within the budget. */
  private fits(g: Graph, outputs: Tensor[], taps: Taps, activationBytes: number): boolean {
    const layout = planGraph(g, outputs, { keep: [...taps.tensors.values()] });
    return (layout.largest?.bytes ?? 0) <= this.gpu.maxBinding && layout.bytesPlanned <= activationBytes;
  }

  /**
   * The size of the parts of `total` items (at most `cap` each): the largest size whose graph fits (a
   * binary search, activations growing with the size), then evened out over as many parts as that takes.
   * Throws when one item alone does not fit.
   */
  private largestFitting(total: number, cap: number, what: string, limits: Required<ChunkLimits>, fits: (n: number) => boolean): number {
    let lo = 0; // the largest size known to fit
    let hi = Math.min(total, cap) + 1; // the smallest size known not to (or one past the cap)
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      if (fits(mid)) lo = mid;
      else hi = mid;
    }
    if (lo === 0) {
      throw new GpuError(
        `one ${what} alone needs more activation memory than this device allows in one submission ` +
          `(maxStorageBufferBindingSize ${this.gpu.maxBinding} bytes per tensor, ${limits.activationBytes} bytes in all)`,
      );
    }
    return Math.ceil(total / Math.ceil(total / lo));
  }

  /**
   * Whether a step runs as one graph (where `oneGraph` allows it), or else its vision-group and prefill-chunk
   * sizes; cached per shape.
   */
  private split(T: number, tiles: number, mode: 'all' | 'last', tapNames: string[], limits: Required<ChunkLimits>, oneGraph: boolean): Split {
    const key = `${T}|${tiles}|${mode}|${tapNames.join(',')}|${limits.activationBytes}|${limits.visionTiles}|${limits.prefillTokens}|${oneGraph}`;
    let s = this.splits.get(key);
    if (s) return s;
    const taps = () => new Taps(new Set(tapNames));
    const fits = (b: { g: Graph }, outputs: Tensor[], t: Taps) => this.fits(b.g, outputs, t, limits.activationBytes);
    const whole = () => {
      const t = taps();
      const b = this.oneGraph(T, tiles, mode, t);
      return fits(b, [b.token, b.logits], t);
    };
    if (oneGraph && T <= limits.prefillTokens && tiles <= limits.visionTiles && whole()) {
      s = 'one graph';
    } else {
      const tileRows = tiles > 0 ? this.featureRowsPerTile : 0;
      const perGroup = tiles === 0 ? 0 : this.largestFitting(tiles, limits.visionTiles, 'image tile', limits, (n) => {
        const t = taps();
        const b = this.visionGraph(n, t);
        return fits(b, [b.features], t);
      });
      const perChunk = this.largestFitting(T, limits.prefillTokens, 'prompt token', limits, (n) => {
        const t = taps();
        const b = this.prefillGraph(n, tiles * tileRows, this.gpu.dummy, mode, t);
        return fits(b, [b.token, b.logits], t);
      });
      s = { tiles: perGroup, tokens: perChunk };
    }
    this.splits.set(key, s);
    return s;
  }

  /** Rows of encodeImages()' output per tile (featuresPerTile, plus rows the placeholders skip, e.g. CLIP's CLS). */
  private get featureRowsPerTile(): number {
    return this.featureRow(this.featuresPerTile - 1) + 1;
  }

  private async compilePlan(key: string, build: (t: Taps) => ReturnType<VisionLanguageModel['oneGraph']>, tapNames: string[]): Promise<StepPlan> {
    return cachedPlan(this.plans, key, async () => {
      const taps = new Taps(new Set(tapNames));
      const b = build(taps);
      const exe = await Executable.compile(this.gpu, b.g, stepOutputs(b), { keep: [...taps.tensors.values()] });
      return { exe, ids: b.ids, pixels: b.pixels, imageRows: b.imageRows, logits: b.logits, token: b.token, sampler: b.sampler, taps: taps.tensors };
    });
  }

  private async visionPlan(tiles: number, tapNames: string[]): Promise<VisionPlan> {
    return cachedPlan(this.visionPlans, `${tiles}|${tapNames.join(',')}`, async () => {
      const taps = new Taps(new Set(tapNames));
      const b = this.visionGraph(tiles, taps);
      const exe = await Executable.compile(this.gpu, b.g, [b.features], { keep: [...taps.tensors.values()] });
      return { exe, pixels: b.pixels, features: b.features, taps: taps.tensors };
    });
  }

  /** The buffer for a split step's image features, [rows, D] f32; prefill plans bound to a smaller one are dropped. */
  private featureBuffer(rows: number): GPUBuffer {
    if (!this.features || this.features.rows < rows) {
      for (const [k, p] of this.plans) {
        if (k.startsWith('chunk|')) {
          p.exe.dispose();
          this.plans.delete(k);
        }
      }
      if (this.features) this.gpu.pool.destroy(this.features.buffer);
      const bytes = rows * this.textConfig.hidden_size * 4;
      if (bytes > this.gpu.maxBinding) {
        throw new GpuError(`image features: ${rows} rows need ${bytes} bytes, above maxStorageBufferBindingSize (${this.gpu.maxBinding}); use fewer or smaller images`);
      }
      this.features = { buffer: this.gpu.pool.create(bytes, undefined, 'image features'), rows };
    }
    return this.features.buffer;
  }

  /**
   * Runs a prompt: ids (with image placeholders expanded) and the image tiles' pixels. Tokens occupy
   * positions pos .. pos + T of the KV cache. One graph and one submission where the step's activations
   * fit; otherwise vision groups and prefill chunks (see ChunkLimits), with the same results.
   */
  async forward(ids: ArrayLike<number>, input: Float32Array | ImageBatch | null, opts: StepOptions = {}): Promise<ForwardResult> {
    const batch = this.imageBatch(input);
    // Until the step has run, the cache holds only what precedes it (a failed step leaves no stale tokens);
    // then it holds these tokens after that.
    const before = this.heldBefore(opts.pos ?? 0);
    this.held = before;
    const derived: DerivedTaps = opts.taps?.length ? this.derivedTaps(ids, batch?.images ?? []) : new Map();
    const taps = opts.taps?.map((n) => derived.get(n)?.from ?? n);
    const result = withDerivedTaps(await this.step(ids, batch, { ...opts, taps }), derived, new Set(opts.taps));
    // Each image of the step ends after its last placeholder.
    const images = [];
    let t = 0;
    for (const [i, im] of (batch?.images ?? []).entries()) {
      const placeholders = this.placeholders(im);
      for (let left = placeholders; left > 0; t++) if (ids[t] === this.imageTokenId) left--;
      images.push({ key: im.device?.key ?? opts.imageKeys?.[i] ?? null, placeholders, end: before.ids.length + t });
    }
    this.held = { ids: [...before.ids, ...Array.from(ids)], images: [...before.images, ...images] };
    return result;
  }

  /** Images given as bare tiles (a flat pixel tensor) are one image per tile, unsplit. */
  imageBatch(input: Float32Array | ImageBatch | null): ImageBatch | null {
    if (!input) return null;
    if (!(input instanceof Float32Array)) {
      const tiles = input.images.reduce((a, im) => a + im.tiles, 0);
      const onDevice = input.images.filter((im) => im.device).length;
      if (onDevice > 0) {
        const [, H, W] = this.tileShape;
        if (onDevice < input.images.length || input.pixels.length !== 0) {
          throw new Error(`an image batch has tiles on the device for ${onDevice} of ${input.images.length} images and ${input.pixels.length} host values: give all on the device, or all as pixels`);
        }
        const bad = input.images.find((im) => im.device!.tiles !== im.tiles || im.device!.height !== H || im.device!.width !== W);
        if (bad) {
          const d = bad.device!;
          throw new Error(`an image's device tiles are ${d.tiles} of ${d.height}×${d.width}, but its layout has ${bad.tiles} and the model takes ${H}×${W}`);
        }
        return input;
      }
      if (tiles * this.tileElems !== input.pixels.length) {
        throw new Error(`pixel_values hold ${input.pixels.length} values, but the images' ${tiles} tiles of [${this.tileShape.join(', ')}] take ${tiles * this.tileElems}`);
      }
      return input;
    }
    const tiles = input.length / this.tileElems;
    if (!Number.isInteger(tiles)) throw new Error(`pixel_values hold ${input.length} values, not a whole number of [${this.tileShape.join(', ')}] tiles`);
    const [, H, W] = this.tileShape;
    return { pixels: input, images: Array.from({ length: tiles }, () => ({ tiles: 1, rows: 0, cols: 0, height: H, width: W })) };
  }

  /** Values of one tile's pixels (C·H·W). */
  get tileElems(): number {
    return this.tileShape.reduce((a, b) => a * b, 1);
  }

  /** The held record of positions 0 .. pos − 1 (positions never written count as unknown tokens, −1). */
  private heldBefore(pos: number): VisionLanguageModel['held'] {
    const ids = this.held.ids.slice(0, pos);
    while (ids.length < pos) ids.push(-1);
    // The images whose placeholders all lie before pos.
    return { ids, images: this.held.images.filter((im) => im.end <= pos) };
  }

  private async step(ids: ArrayLike<number>, batch: ImageBatch | null, opts: StepOptions): Promise<ForwardResult> {
    const T = ids.length;
    if (T === 0) throw new Error('forward: empty prompt');
    const pos = opts.pos ?? 0;
    const vocab = this.textConfig.vocab_size;
    for (let t = 0; t < T; t++) {
      if (!Number.isInteger(ids[t]) || ids[t] < 0 || ids[t] >= vocab) throw new Error(`token ${t}: id ${ids[t]} is outside the vocabulary [0, ${vocab})`);
    }
    const tiles = batch?.images.reduce((a, im) => a + im.tiles, 0) ?? 0;
    if (opts.generated && batch) throw new Error('forward: generated tokens come without images');
    const rows = opts.generated ? new Uint32Array(T).fill(NOT_IMAGE) : this.imageRows(ids, batch?.images ?? []);
    this.ensureCapacity(pos + T + (opts.reserve ?? 0));
    const mode = opts.logits ?? 'last';
    const tapNames = [...(opts.taps ?? [])].sort();
    const limits = chunkLimits(this.limits, opts.limits);
    // Progress needs submissions to report: a step with a progress callback runs at least its vision
    // encoder and its prefill apart.
    const split = this.split(T, tiles, mode, tapNames, limits, !opts.onProgress);
    const sample = opts.temperature !== undefined;
    if (sample && !(opts.temperature! > 0)) throw new RangeError(`forward: temperature must be > 0, got ${opts.temperature}`);
    if (split === 'one graph') {
      const plan = await this.compilePlan(`one|${T}|${tiles}|${mode}|${tapNames.join(',')}|${sample}`, (t) => this.oneGraph(T, tiles, mode, t, sample), tapNames);
      plan.exe.write(plan.ids, Uint32Array.from(ids));
      if (plan.sampler) plan.exe.write(plan.sampler.temperature, Float32Array.of(opts.temperature!));
      if (tiles > 0) {
        this.writeTiles(plan.exe, plan.pixels!, batch!, 0, tiles);
        plan.exe.write(plan.imageRows!, rows);
      }
      if (opts.profile) opts.profile(await plan.exe.runProfiled({ pos }));
      else plan.exe.run({ pos });
      return planResult(plan, { visionGroups: 0, prefillChunks: 1 });
    }
    return this.forwardSplit(Uint32Array.from(ids), batch, rows, tiles, split, pos, mode, tapNames, opts);
  }

  /** Fills a plan's pixel input with tiles first .. first + count − 1 of the batch: host pixels, or written on the device. */
  private writeTiles(exe: Executable, input: Tensor, batch: ImageBatch, first: number, count: number): void {
    const tileElems = this.tileElems;
    if (!batch.images[0]?.device) {
      exe.write(input, batch.pixels.subarray(first * tileElems, (first + count) * tileElems));
      return;
    }
    const dst = exe.inputBuffer(input, count * tileElems * 4);
    let start = 0; // the image's first tile in the batch
    for (const im of batch.images) {
      const a = Math.max(first, start);
      const b = Math.min(first + count, start + im.tiles);
      if (a < b) im.device!.write(dst, (a - first) * tileElems * 4, a - start, b - a);
      start += im.tiles;
    }
  }

  /** A step in vision groups and prefill chunks; intermediates and all-row logits are gathered on the host. */
  private async forwardSplit(
    ids: Uint32Array,
    batch: ImageBatch | null,
    rows: Uint32Array,
    tiles: number,
    split: { tiles: number; tokens: number },
    pos: number,
    mode: 'all' | 'last',
    tapNames: string[],
    opts: StepOptions,
  ): Promise<ForwardResult> {
    const t0 = performance.now();
    const T = ids.length;
    const times = new Map<string, number>();
    const timed = !!(opts.profile || opts.onProgress);
    const run = async (exe: Executable, step: { pos: number }) => {
      if (!timed) return exe.run(step);
      for (const [k, v] of await exe.runProfiled(step)) times.set(k, (times.get(k) ?? 0) + v);
    };
    // Requested intermediates (and all-row logits) are read after each submission, in compute order.
    const gathered = new Map<string, Float32Array[]>();
    const gather = async (exe: Executable, produced: Map<string, Tensor>) => {
      for (const [name, t] of [...produced].sort((a, b) => exe.layout.order.indexOf(a[1].node!) - exe.layout.order.indexOf(b[1].node!))) {
        const parts = gathered.get(name) ?? [];
        parts.push((await exe.read(t)) as Float32Array);
        gathered.set(name, parts);
      }
    };
    const tileRows = this.featureRowsPerTile;
    const featureRows = tiles * tileRows;
    const buffer = tiles > 0 ? this.featureBuffer(featureRows) : this.gpu.dummy;
    let groups = 0;
    if (tiles > 0) {
      const rowBytes = this.textConfig.hidden_size * 4;
      for (let first = 0; first < tiles; first += split.tiles) {
        const n = Math.min(split.tiles, tiles - first);
        const plan = await this.visionPlan(n, tapNames);
        this.writeTiles(plan.exe, plan.pixels, batch!, first, n);
        await run(plan.exe, { pos: 0 });
        plan.exe.copyTo(plan.features, buffer, first * tileRows * rowBytes);
        if (plan.taps.size) await gather(plan.exe, plan.taps);
        groups++;
        opts.onProgress?.({ stage: 'image', done: first + n, total: tiles, elapsedMs: performance.now() - t0 });
      }
    }
    let plan: StepPlan | undefined;
    let chunks = 0;
    const logitRows: Float32Array[] = [];
    for (let first = 0; first < T; first += split.tokens) {
      const n = Math.min(split.tokens, T - first);
      const sample = opts.temperature !== undefined && first + n === T; // the last chunk's row is sampled
      plan = await this.compilePlan(`chunk|${n}|${featureRows}|${mode}|${tapNames.join(',')}|${sample}`, (t) => this.prefillGraph(n, featureRows, buffer, mode, t, sample), tapNames);
      plan.exe.write(plan.ids, ids.subarray(first, first + n));
      if (plan.sampler) plan.exe.write(plan.sampler.temperature, Float32Array.of(opts.temperature!));
      if (plan.imageRows) plan.exe.write(plan.imageRows, rows.subarray(first, first + n));
      await run(plan.exe, { pos: pos + first });
      if (plan.taps.size) await gather(plan.exe, plan.taps);
      if (mode === 'all') logitRows.push((await plan.exe.read(plan.logits)) as Float32Array);
      chunks++;
      opts.onProgress?.({ stage: 'prefill', done: first + n, total: T, elapsedMs: performance.now() - t0 });
    }
    if (opts.profile) opts.profile(times);
    const last = plan!;
    const concat = (parts: Float32Array[]) => {
      const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
      let o = 0;
      for (const p of parts) (out.set(p, o), (o += p.length));
      return out;
    };
    return {
      plan: last,
      split: { visionGroups: groups, prefillChunks: chunks },
      taps: [...gathered.keys()],
      tap: async (name) => {
        const parts = gathered.get(name);
        if (!parts) throw new Error(`tap ${name}: not produced by this step`);
        return concat(parts);
      },
      logits: async () => (mode === 'all' ? concat(logitRows) : ((await last.exe.read(last.logits)) as Float32Array)),
      token: async () => (await last.exe.read(last.token))[0],
      candidates: () => readCandidates(last),
    };
  }

  /**
   * Creates, all at once, the pipelines that the first prompt with an image and the decode steps use, so
   * that the driver compiles them at load (concurrently where it can) rather than inside the first step.
   * Prompts of other shapes may use a few more kernel variants, made when first needed. Returns how many
   * pipelines were created.
   */
  async preparePipelines(): Promise<number> {
    const T = this.featuresPerTile + 16; // a prompt with one image: the prefill kernel variants
    this.ensureCapacity(T + 1);
    // The decode step once greedy and once sampling (top_k).
    const keys = [this.oneGraph(T, 1, 'last', new Taps()), this.oneGraph(1, 0, 'last', new Taps()), this.oneGraph(1, 0, 'last', new Taps(), true)].flatMap((b) =>
      Executable.pipelinesOf(this.gpu, b.g, stepOutputs(b)),
    );
    return this.gpu.pipelines.prepare(keys);
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
    for (const p of [...this.plans.values(), ...this.visionPlans.values()]) p.exe.dispose();
    this.plans.clear();
    this.visionPlans.clear();
  }

  /** Frees every GPU buffer the model holds: weights, KV cache, and the plans' activation buffers. */
  dispose(): void {
    this.disposePlans();
    this.cache?.dispose();
    this.cache = undefined;
    if (this.features) this.gpu.pool.destroy(this.features.buffer);
    this.features = undefined;
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
  const ckpt = await Checkpoint.open(dir, { root: opts.root, config: opts.config });
  try {
    const config = parse(ckpt.config, join(ckpt.dir, 'config.json'));
    const quantizeConfig =
      opts.quantizeConfig !== undefined ? opts.quantizeConfig : (await ModelDir.open(ckpt.dir, ['quantize_config.json'])).json('quantize_config.json');
    const quantization = quantConfigOf(ckpt.config, quantizeConfig ?? undefined, ckpt.dir);
    const model = build(new WeightStore(gpu, ckpt, opts.dtype, quantization, opts.nativeF16), config, ckpt);
    if (opts.kernels) {
      if (!(opts.kernels in TUNINGS)) throw new Error(`kernels must be "gpu" or "cpu", not ${JSON.stringify(opts.kernels)}`);
      model.tuning = TUNINGS[opts.kernels];
    }
    try {
      await model.store.load(opts.onProgress);
      await model.preparePipelines();
    } catch (e) {
      model.dispose();
      throw e;
    }
    return model;
  } finally {
    await ckpt.close();
  }
}

/** What a step plan computes: the argmax, the logits, and the sampling candidates when it samples. */
function stepOutputs(b: { token: Tensor; logits: Tensor; sampler?: StepPlan['sampler'] }): Tensor[] {
  return [b.token, b.logits, ...(b.sampler ? [b.sampler.candidates] : [])];
}

/** The sampling candidates of a plan's last row of logits ([rows, vocab]). */
async function readCandidates(plan: StepPlan): Promise<Candidates> {
  if (!plan.sampler) throw new Error('candidates: the step ran without a temperature');
  return candidatesOf((await plan.exe.read(plan.sampler.candidates)) as Uint32Array, plan.logits.shape[1]);
}

/** The result of a step that ran as one plan. */
function planResult(plan: StepPlan, split: ForwardResult['split']): ForwardResult {
  const order = plan.exe.layout.order;
  return {
    plan,
    split,
    taps: [...plan.taps].sort((a, b) => order.indexOf(a[1].node!) - order.indexOf(b[1].node!)).map(([n]) => n),
    tap: async (name) => {
      const t = plan.taps.get(name);
      if (!t) throw new Error(`tap ${name}: not produced by this step`);
      return (await plan.exe.read(t)) as Float32Array;
    },
    logits: async () => (await plan.exe.read(plan.logits)) as Float32Array,
    token: async () => (await plan.exe.read(plan.token))[0],
    candidates: () => readCandidates(plan),
  };
}

/** Compiled plans kept per model and kind (prompt shapes differ from call to call): the most recently used. */
const MAX_PLANS = 12;

/**
 * The plan under `key`, compiled on a miss; the least recently used beyond MAX_PLANS is disposed and its
 * buffers destroyed (the pool keeps released buffers for reuse at the same size, which another prompt
 * length rarely has).
 */
async function cachedPlan<P extends { exe: Executable }>(plans: Map<string, P>, key: string, compile: () => Promise<P>): Promise<P> {
  let plan = plans.get(key);
  if (plan) plans.delete(key); // re-inserted below: a Map keeps insertion order, the oldest first
  else plan = await compile();
  plans.set(key, plan);
  for (const [k, p] of plans) {
    if (plans.size <= MAX_PLANS) break;
    p.exe.dispose();
    p.exe.gpu.pool.trim();
    plans.delete(k);
  }
  return plan;
}

/**
 * A step's result with derived intermediates added: each one listed where its source is, and read as its
 * source's rows.
 */
function withDerivedTaps(r: ForwardResult, derived: DerivedTaps, wanted: ReadonlySet<string>): ForwardResult {
  const asked = [...derived].filter(([name, d]) => wanted.has(name) && r.taps.includes(d.from));
  if (!asked.length) return r;
  const names = r.taps.flatMap((n) => [...(wanted.has(n) ? [n] : []), ...asked.filter(([, d]) => d.from === n).map(([name]) => name)]);
  return {
    ...r,
    taps: names,
    tap: async (name) => {
      const d = derived.get(name);
      if (!d || !wanted.has(name)) return r.tap(name);
      const src = await r.tap(d.from);
      const width = d.width;
      const out = new Float32Array(d.rows.length * width);
      d.rows.forEach((row, i) => out.set(src.subarray(row * width, (row + 1) * width), i * width));
      return out;
    },
  };
}
