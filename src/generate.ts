// Text generation over a VisionLanguageModel: prefill the prompt (with images), then one decode step
// per token over the preallocated KV cache. Greedy decoding reads back only the argmax (4 bytes);
// sampling (temperature, top-k, top-p, seeded) reads the last logits row. Tokens stream as an async
// iterator; EOS ids, maxNewTokens and an AbortSignal stop it. One generation runs per model at a time:
// a call waits its turn for the model (model.acquire), and frees it however it ends.
import { createHash } from 'node:crypto';
import type { ChunkLimits, ImageBatch, StepProgress, VisionLanguageModel } from './models/vlm.ts';

export interface SamplingOptions {
  /** 0 or undefined: greedy. */
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
}

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens: number;
  /** Stop after emitting one of these ids (default: the config's eos_token_id). */
  eos?: number[];
  /** false: never stop on EOS (reference comparisons). */
  stopAtEos?: boolean;
  /** Also read back each step's logits row (slower; for tests and diff). */
  withLogits?: boolean;
  /**
   * Ends the generation with the signal's reason as the error: checked before each step (the step in flight
   * finishes), and while waiting for the model.
   */
  signal?: AbortSignal;
  /** Called once the model is this generation's, after any earlier generation on it has ended. */
  onStart?: () => void;
  /** Called once the prompt is processed, with the device time per section (vision, decoder) in ms. */
  onPrefill?: (sections: Map<string, number>) => void;
  /**
   * Keep what the KV cache already holds of this prompt (the same conversation a turn later: the same
   * earlier tokens and images) and prefill only the rest, without encoding those images again. The result
   * equals a full recompute; default false.
   */
  reusePrefix?: boolean;
  /** Called before the prefill with how many prompt tokens the KV cache already held (0 without reuse). */
  onReuse?: (tokens: number) => void;
  /** Progress of a prompt that runs in several submissions (image tiles encoded, tokens prefilled). */
  onProgress?: (p: StepProgress) => void;
  /** How large one submission of the prompt may be (default: the model's limits). */
  limits?: ChunkLimits;
}

export interface TokenStep {
  token: number;
  /** Logits the token was chosen from, when requested or when sampling. */
  logits?: Float32Array;
  /** Milliseconds from the call to this token being known. */
  ms: number;
}

/** Seeded generator (xorshift128+ folded to 53 bits) so that sampling is reproducible. */
export class SeededRandom {
  private a: bigint;
  private b: bigint;
  constructor(seed: number) {
    let s = BigInt.asUintN(64, BigInt(Math.floor(seed)) * 0x9e3779b97f4a7c15n + 0x632be59bd9b4e019n);
    const mix = () => {
      s = BigInt.asUintN(64, s + 0x9e3779b97f4a7c15n);
      let z = s;
      z = BigInt.asUintN(64, (z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n);
      z = BigInt.asUintN(64, (z ^ (z >> 27n)) * 0x94d049bb133111ebn);
      return z ^ (z >> 31n);
    };
    this.a = mix();
    this.b = mix();
  }
  /** Uniform in [0, 1). */
  next(): number {
    let x = this.a;
    const y = this.b;
    this.a = y;
    x = BigInt.asUintN(64, x ^ (x << 23n));
    this.b = x ^ y ^ (x >> 17n) ^ (y >> 26n);
    return Number(BigInt.asUintN(64, this.b + y) >> 11n) / 2 ** 53;
  }
}

/** Chooses a token from logits with temperature, then top-k, then top-p (nucleus), as HF's warpers do. */
export function sampleToken(logits: Float32Array, o: SamplingOptions, rng: SeededRandom): number {
  const t = o.temperature ?? 0;
  if (!(t > 0)) return argmaxHost(logits);
  let idx = Array.from(logits.keys()).sort((x, y) => logits[y] - logits[x] || x - y);
  if (o.topK && o.topK > 0) idx = idx.slice(0, o.topK);
  const m = logits[idx[0]];
  let p = idx.map((i) => Math.exp((logits[i] - m) / t));
  let sum = p.reduce((a, b) => a + b, 0);
  p = p.map((x) => x / sum);
  if (o.topP !== undefined && o.topP < 1) {
    let acc = 0;
    let keep = 0;
    while (keep < p.length && (keep === 0 || acc < o.topP)) acc += p[keep++];
    idx = idx.slice(0, keep);
    p = p.slice(0, keep);
    sum = p.reduce((a, b) => a + b, 0);
    p = p.map((x) => x / sum);
  }
  let r = rng.next();
  for (let i = 0; i < p.length; i++) {
    r -= p[i];
    if (r < 0) return idx[i];
  }
  return idx[idx.length - 1];
}

export function argmaxHost(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

/**
 * Streams generated tokens. `ids` is the full prompt with image placeholders expanded; `pixels` the
 * images (an ImageBatch, or bare tiles [tiles, C, H, W] flattened) or null. The model is taken when iteration starts (after any
 * generation already running or queued on it) and freed when the stream ends, fails, or the consumer
 * leaves it (return()).
 */
export async function* generateTokens(
  model: VisionLanguageModel,
  ids: ArrayLike<number>,
  pixels: Float32Array | ImageBatch | null,
  o: GenerateOptions,
): AsyncGenerator<TokenStep> {
  const start = performance.now();
  const max = model.textConfig.max_position_embeddings;
  if (ids.length + o.maxNewTokens > max) {
    throw new Error(`prompt (${ids.length} tokens) + maxNewTokens (${o.maxNewTokens}) exceeds max_position_embeddings (${max})`);
  }
  const release = await model.acquire(o.signal);
  try {
    o.onStart?.();
    const eos = new Set(o.stopAtEos === false ? [] : (o.eos ?? model.textConfig.eos_token_id));
    const sampling = (o.temperature ?? 0) > 0;
    const rng = new SeededRandom(o.seed ?? 0);
    // Images are keyed by their pixels, so that a later prompt with the same images can reuse the cache.
    const batch = model.imageBatch(pixels);
    const images = batch?.images ?? [];
    const tileElems = model.tileElems;
    const firstTile = images.reduce<number[]>((a, im) => [...a, a[a.length - 1] + im.tiles], [0]);
    const tilesOf = (i: number, j = i + 1) => batch!.pixels.subarray(firstTile[i] * tileElems, firstTile[j] * tileElems);
    const keys = o.reusePrefix ? images.map((_, i) => pixelKey(tilesOf(i))) : [];
    model.ensureCapacity(ids.length + o.maxNewTokens); // before the comparison: growing keeps what is held
    const reused = o.reusePrefix ? model.reusablePrefix(ids, images, keys) : { tokens: 0, images: 0 };
    o.onReuse?.(reused.tokens);
    let pos = reused.tokens;
    let input: ArrayLike<number> = Array.from(ids).slice(reused.tokens);
    let px: ImageBatch | null = reused.images < images.length ? { pixels: tilesOf(reused.images, images.length), images: images.slice(reused.images) } : null;
    for (let n = 0; n < o.maxNewTokens; n++) {
      o.signal?.throwIfAborted();
      const profile = n === 0 ? o.onPrefill : undefined;
      const step = await model.forward(input, px, {
        pos,
        reserve: n === 0 ? o.maxNewTokens : 0,
        profile,
        onProgress: n === 0 ? o.onProgress : undefined,
        limits: o.limits,
        imageKeys: n === 0 ? keys.slice(reused.images) : undefined,
        generated: n > 0,
      });
      let logits: Float32Array | undefined;
      let token: number;
      if (sampling || o.withLogits) logits = await step.logits();
      if (sampling) token = sampleToken(logits!, o, rng);
      else token = await step.token();
      yield { token, logits, ms: performance.now() - start };
      if (eos.has(token)) return;
      pos += input.length;
      input = [token];
      px = null;
    }
  } finally {
    release();
  }
}

/** Greedy decoding (the reference's setting). */
export function greedy(model: VisionLanguageModel, ids: ArrayLike<number>, pixels: Float32Array | ImageBatch | null, o: Omit<GenerateOptions, 'temperature'>) {
  return generateTokens(model, ids, pixels, { ...o, temperature: 0 });
}

/** A key for an image's pixels (SHA-256 of their bytes): equal keys, equal pixels. */
export function pixelKey(pixels: Float32Array): string {
  return createHash('sha256').update(new Uint8Array(pixels.buffer, pixels.byteOffset, pixels.byteLength)).digest('base64');
}
