// Text generation over a VisionLanguageModel: prefill the prompt (with images), then one decode step
// per token over the preallocated KV cache. Greedy decoding reads back only the argmax (4 bytes);
// sampling (temperature, top-k, top-p, seeded) reads back the GPU's largest logits (ops/sample.ts topK,
// 256 of them) and reads the whole last row only where they cannot decide the draw: temperature alone,
// top-k beyond 256, or a nucleus that does not end within them. Tokens stream as an async
// iterator; EOS ids, maxNewTokens and an AbortSignal stop it. One generation runs per model at a time:
// a call waits its turn for the model (model.acquire), and frees it however it ends.
import { createHash } from 'node:crypto';
import type { ChunkLimits, ImageBatch, StepProgress, VisionLanguageModel } from './models/vlm.ts';
import { MAX_CANDIDATES, type Candidates } from './ops/sample.ts';
import { SeededRandom } from './random.ts';

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
  /** Logits the token was chosen from, when requested (withLogits). */
  logits?: Float32Array;
  /** Milliseconds from the call to this token being known. */
  ms: number;
}

/**
 * Chooses a token from logits with temperature, then top-k, then top-p (nucleus), as HF's warpers do.
 * Temperature 0 (or none) is greedy (argmaxHost). A NaN, +Infinity or no finite logit is an error, as
 * torch.multinomial refuses such a distribution.
 */
export function sampleToken(logits: Float32Array, o: SamplingOptions, rng: SeededRandom): number {
  if (!((o.temperature ?? 0) > 0)) return argmaxHost(logits);
  logits.forEach((v, i) => refuseLogit(v, i));
  const idx = Array.from(logits.keys()).sort((x, y) => logits[y] - logits[x] || x - y);
  return draw(idx, (i) => logits[i], o, rng)!;
}

/**
 * Relative error allowed for the GPU's softmax mass (f32 exp and sums over the row): top-p without top-k
 * decides on the candidates only when the nucleus ends at the same token for any mass within it. The
 * sample tests measure the error (under 1e-5 on rows of 49,281 logits).
 */
export const MASS_TOLERANCE = 1e-4;

/**
 * sampleToken over the largest logits only (topK's candidates), or null when they do not decide the
 * draw and the whole row is needed: temperature alone, top-k beyond the candidates, or a nucleus that
 * does not end within them (or ends within the mass's error of top-p). Top-k within the candidates draws
 * what sampleToken draws on the row (the same numbers in the same order); top-p alone does too unless the
 * uniform draw falls within rounding of a boundary between two tokens (the row's mass is the GPU's f32
 * sum instead of a float64 one). The generator is used only when a token is returned.
 */
export function sampleCandidates(c: Candidates, o: SamplingOptions, rng: SeededRandom): number | null {
  const k = o.topK && o.topK > 0 ? Math.min(o.topK, c.vocab) : c.vocab;
  const idx = Array.from(c.ids);
  const value = (j: number) => c.values[j];
  refuseLogit(c.values[0], c.ids[0], c.values[0] === -Infinity);
  const order = idx.map((_, j) => j); // positions in the candidates, in order
  const pick = (j: number | null) => (j === null ? null : idx[j]);
  if (k <= idx.length) return pick(draw(order.slice(0, k), value, o, rng));
  // Beyond the candidates only a nucleus of the whole row (no top-k) can still end within them.
  if (k < c.vocab || !(o.topP !== undefined && o.topP < 1)) return null;
  return pick(draw(order, value, o, rng, c.mass));
}

/** Whether sampleCandidates can decide draws with these options over a row of `vocab` logits (else the row is read). */
export function candidatesMayDecide(o: SamplingOptions, vocab: number): boolean {
  const k = o.topK && o.topK > 0 ? Math.min(o.topK, vocab) : vocab;
  return k <= MAX_CANDIDATES || (k === vocab && o.topP !== undefined && o.topP < 1);
}

/** A logit sampling refuses: NaN, +Infinity, or (`none` finite) −Infinity as the largest. */
function refuseLogit(v: number, i: number, none = false): void {
  if (Number.isNaN(v) || v === Infinity) throw new Error(`sampling: the logit of token ${i} is ${v}`);
  if (none) throw new Error('sampling: every logit is -Infinity');
}

/**
 * The draw over `idx` (the tokens in order, largest logit first): the first top-k, softmax at the
 * temperature, the nucleus, one uniform number. `rowMass`: `idx` holds the first candidates of a longer
 * row whose Σ exp((l − max)/T) this is; null when the nucleus is not decided within them.
 */
function draw(idx: number[], value: (i: number) => number, o: SamplingOptions, rng: SeededRandom, rowMass?: number): number | null {
  const t = o.temperature!;
  if (o.topK && o.topK > 0) idx = idx.slice(0, o.topK);
  const m = value(idx[0]);
  if (!Number.isFinite(m)) refuseLogit(m, idx[0], true);
  let p = idx.map((i) => Math.exp((value(i) - m) / t));
  let sum = rowMass ?? p.reduce((a, b) => a + b, 0);
  p = p.map((x) => x / sum);
  if (o.topP !== undefined && o.topP < 1) {
    const keep = nucleus(p, o.topP);
    if (rowMass !== undefined) {
      // Probabilities over a mass a little larger or smaller: the nucleus must end within the candidates,
      // at the same token.
      const lo = nucleus(p.map((x) => x / (1 + MASS_TOLERANCE)), o.topP);
      const hi = nucleus(p.map((x) => x / (1 - MASS_TOLERANCE)), o.topP);
      if (!lo.reached || lo.keep !== keep.keep || hi.keep !== keep.keep) return null;
    }
    idx = idx.slice(0, keep.keep);
    p = p.slice(0, keep.keep);
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

/** The nucleus: the fewest first tokens whose mass reaches topP (at least one), and whether it was reached. */
function nucleus(p: number[], topP: number): { keep: number; reached: boolean } {
  let acc = 0;
  let keep = 0;
  while (keep < p.length && (keep === 0 || acc < topP)) acc += p[keep++];
  return { keep, reached: acc >= topP };
}

/** The index of the largest value, the lowest on ties; a NaN counts above every number (torch.argmax: the first NaN). */
export function argmaxHost(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length && !Number.isNaN(x[best]); i++) if (x[i] > x[best] || Number.isNaN(x[i])) best = i;
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
    // Steps pick the GPU's sampling candidates when those can decide the draw.
    const candidates = sampling && !o.withLogits && candidatesMayDecide(o, model.textConfig.vocab_size);
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
        temperature: candidates ? o.temperature : undefined,
      });
      let logits: Float32Array | undefined;
      let token: number;
      if (o.withLogits) logits = await step.logits();
      if (!sampling) token = await step.token();
      // The GPU's candidates decide top-k and most top-p draws; the row is read when they do not.
      else if (candidates) token = sampleCandidates(await step.candidates(), o, rng) ?? sampleToken(await step.logits(), o, rng);
      else token = sampleToken(logits ?? (await step.logits()), o, rng);
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
