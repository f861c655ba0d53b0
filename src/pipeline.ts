// From an image and a question to streamed text: a loaded model with its tokenizer, chat template and
// image processor. generate() renders the chat, expands the image placeholders as the model's processor
// does, preprocesses the images, and streams decoded text while the GPU generates.
import { Gpu, type GpuOptions } from './gpu/device.ts';
import { ModelDir } from './io/model-dir.ts';
import { looksLikeHubId, resolveHubId } from './io/hub.ts';
import { familyOf, loadModelDir } from './models/registry.ts';
import { imageLayout, type ModelFamily } from './models/family.ts';
import { chunkLimits, DEFAULT_CHUNK_LIMITS, type ChunkLimits, type ImageBatch, type StepProgress, type VisionLanguageModel } from './models/vlm.ts';
import type { LoadProgress } from './models/weights.ts';
import type { WeightDType } from './models/storage.ts';
import type { Target } from './gpu/tuning.ts';
import { TextTokenizer } from './text/tokenizer.ts';
import { ReplyText } from './text/stream.ts';
import { chatTemplateOf, renderChat, type ChatMessage } from './text/chat.ts';
import { imageTokensOf } from './text/prompt.ts';
import {
  parseAnyImageProcessorConfig,
  preprocessImage,
  withOverrides,
  type AnyImageProcessorConfig,
  type ImageInput,
  type ImageGeometry,
  type ImageProcessorOverrides,
} from './image/preprocess.ts';
import { DeviceImage } from './image/gpu-preprocess.ts';
import { IMAGE_PIPELINES, PlaneSizeError } from './ops/resample.ts';
import { generateTokens } from './generate.ts';

/** Where images are resized, tiled and normalised: GPU kernels that write the vision encoder's input, or JavaScript. */
export type PreprocessTarget = 'gpu' | 'cpu';

/** `adapter`, `powerPreference` and `quiet` choose and open the GPU as in Gpu.create() (unless `gpu` is given). */
export interface LoadModelOptions extends ImageProcessorOverrides, Pick<GpuOptions, 'adapter' | 'powerPreference' | 'quiet' | 'nativeF16'> {
  /**
   * Storage of float weights: 'auto' (default: the checkpoint's own width, F16 and BF16 as 16 bits),
   * 'f32', 'f16', 'bf16', or quantized at load: 'q8', 'q4' (linear layers; embeddings and LM head q8).
   * AWQ and GPTQ checkpoints load as published whatever this says of their packed layers.
   */
  dtype?: WeightDType;
  onProgress?: (p: LoadProgress) => void;
  /** Hub revision to look up in the local cache (default "main"). */
  revision?: string;
  /** Use this GPU instead of opening one (it is then not destroyed by dispose()). */
  gpu?: Gpu;
  /** Kernel set: 'gpu' or 'cpu' (SIMD-on-CPU drivers such as lavapipe); default: the one the adapter suits. */
  kernels?: Target;
  /** How large one submission of a prompt may be (vision tiles, prefill tokens, activation bytes); see ChunkLimits. */
  limits?: ChunkLimits;
  /**
   * Image preprocessing: 'gpu' (default: the decoded image is uploaded once and kernels write the tiles straight
   * into the vision encoder's input, src/image/gpu-preprocess.ts) or 'cpu' (the JavaScript reference,
   * src/image/preprocess.ts). The pixels are the same bit for bit.
   */
  preprocess?: PreprocessTarget;
}

export interface GenerateRequest extends ImageProcessorOverrides {
  /** Chat messages; image parts ({ type: 'image' }) take the images in order. */
  messages?: ChatMessage[];
  /** Shorthand for one user message: the images first, then this text. */
  prompt?: string;
  images?: ImageInput[];
  maxNewTokens?: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
  /** Stop strings: generation ends when the text contains one (it is cut off before it). */
  stop?: string[];
  /**
   * Ends the generation early: the result then resolves with what was generated and finishReason 'abort'. An
   * abort while the call waits for the model (or before it started) resolves with no tokens.
   */
  signal?: AbortSignal;
  /**
   * Progress of the prompt: image tiles encoded and tokens prefilled, each with the elapsed time. With this
   * callback the vision encoder and the prefill are submitted apart (and split further where large, see
   * ChunkLimits); on a SIMD-on-CPU adapter (lavapipe), where a tile takes seconds, tiles go one per submission.
   */
  onProgress?: (p: StepProgress) => void;
  /**
   * Keep what the KV cache already holds of this prompt from the previous call on this model (a chat one
   * turn later: the same earlier messages and images) and prefill only the rest, without encoding those
   * images again (default true). The reply equals a full recompute up to f32 rounding: the kept positions
   * were computed by the same kernels; false recomputes everything.
   */
  reusePrefix?: boolean;
}

export interface Timings {
  loadMs: number;
  /** GPU bytes of the model's weights, as stored (see LoadModelOptions.dtype). */
  weightBytes: number;
  /**
   * Image preprocessing until the images are ready for the model: 'cpu', decode, resize, split and normalise on the
   * host; 'gpu', decode and upload on the host with the resizes queued (the device runs them, and writes the tiles,
   * before the vision encoder: within imageEncodeMs's submission order, outside its timing).
   */
  preprocessMs: number;
  /** Device time of the vision tower and projector (GPU timestamps; 0 without images). */
  imageEncodeMs: number;
  /** Waiting for earlier generate() calls on this model to end (they run one at a time, in order). */
  queueMs: number;
  /** From the generate() call to the first token (0 without one); includes queueMs. */
  ttftMs: number;
  promptTokens: number;
  /** Prompt tokens the KV cache already held from the previous call (see GenerateRequest.reusePrefix). */
  reusedTokens: number;
  /** Prompt tokens prefilled per second: the tokens actually run (promptTokens − reusedTokens), images included. */
  prefillTokensPerSecond: number;
  newTokens: number;
  decodeTokensPerSecond: number;
}

export interface GenerateResult {
  text: string;
  tokens: number[];
  /** 'abort': the signal aborted or the consumer left the stream; text and tokens hold what came before. */
  finishReason: 'eos' | 'length' | 'stop' | 'abort';
  timings: Timings;
}

export interface TextChunk {
  token: number;
  /** Text this token completes (empty while a multi-byte character is incomplete). */
  text: string;
}

/**
 * The result of generate(): await it for the whole text, or iterate it for streamed chunks. Leaving the
 * iteration before the stream ends (break, return(), a throw in the loop) aborts the generation.
 */
export class Generation implements AsyncIterable<TextChunk>, PromiseLike<GenerateResult> {
  private readonly chunks: TextChunk[] = [];
  private waiters: (() => void)[] = [];
  private done = false;
  /** Aborted when a consumer leaves the stream before its end. */
  private readonly left = new AbortController();
  private readonly result: Promise<GenerateResult>;

  /** `run` gets the signal that ends it: the caller's `signal`, or a consumer leaving the stream. */
  constructor(run: (emit: (c: TextChunk) => void, signal: AbortSignal) => Promise<GenerateResult>, signal?: AbortSignal) {
    const stop = signal ? AbortSignal.any([signal, this.left.signal]) : this.left.signal;
    this.result = run((c) => {
      this.chunks.push(c);
      this.wake();
    }, stop).finally(() => {
      this.done = true;
      this.wake();
    });
    this.result.catch(() => {}); // surfaced through then() or the iterator
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  then<A = GenerateResult, B = never>(
    ok?: ((v: GenerateResult) => A | PromiseLike<A>) | null,
    err?: ((e: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B> {
    return this.result.then(ok, err);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<TextChunk> {
    let i = 0;
    try {
      for (;;) {
        if (i < this.chunks.length) {
          yield this.chunks[i++];
          continue;
        }
        if (this.done) {
          await this.result; // rethrows a failure
          return;
        }
        await new Promise<void>((r) => this.waiters.push(r));
      }
    } finally {
      // Reached before the end only when the consumer left: nobody reads on, so the generation stops after
      // the step in flight and frees the model for the next call.
      if (!this.done) this.left.abort();
    }
  }
}

export class VisionLanguagePipeline {
  private constructor(
    readonly model: VisionLanguageModel,
    readonly family: ModelFamily,
    readonly tokenizer: TextTokenizer,
    readonly chatTemplate: string,
    readonly imageConfig: AnyImageProcessorConfig,
    /** Where images are preprocessed (LoadModelOptions.preprocess). */
    readonly preprocess: PreprocessTarget,
    /** The rendered chat with each image placeholder expanded as the family's processor does. */
    private readonly expandPrompt: (chat: string, images: readonly ImageGeometry[]) => string,
    /** The image placeholder the chat template writes (`<image>`). */
    readonly imageToken: string,
    readonly dir: string,
    readonly loadMs: number,
    /** Token ids that end a reply: generation_config.json's eos_token_id, plus the config's. */
    readonly eos: number[],
    private readonly ownsGpu: boolean,
  ) {}

  static async load(pathOrId: string, opts: LoadModelOptions = {}): Promise<VisionLanguagePipeline> {
    const t0 = performance.now();
    let dir = pathOrId;
    let root: string | undefined;
    if (looksLikeHubId(pathOrId)) {
      const snap = resolveHubId(pathOrId, opts.revision);
      dir = snap.dir;
      root = snap.repo;
    }
    const limits = chunkLimits(DEFAULT_CHUNK_LIMITS, opts.limits); // checked before anything loads
    const preprocess = opts.preprocess ?? 'gpu';
    if (preprocess !== 'gpu' && preprocess !== 'cpu') throw new RangeError(`preprocess must be "gpu" or "cpu", got ${JSON.stringify(preprocess)}`);
    // Every JSON file of the directory is read once, here; what follows takes what it needs from md.
    const md = await ModelDir.open(dir);
    const family = familyOf(md);
    const tokenizer = TextTokenizer.of(md);
    const chatTemplate = chatTemplateOf(md);
    const imageConfig = withOverrides(parseAnyImageProcessorConfig(md.required('preprocessor_config.json'), md.path('preprocessor_config.json')), opts);
    const generationEos = eosOf(md);
    const gpu = opts.gpu ?? (await Gpu.create({ adapter: opts.adapter, powerPreference: opts.powerPreference, quiet: opts.quiet, nativeF16: opts.nativeF16 }));
    try {
      const model = await loadModelDir(gpu, md, { dtype: opts.dtype, nativeF16: opts.nativeF16, onProgress: opts.onProgress, root, kernels: opts.kernels });
      try {
        model.limits = limits;
        const expandPrompt = family.prompt(md, model);
        const eos = [...new Set([...generationEos, ...model.textConfig.eos_token_id])];
        const imageToken = imageTokensOf(md).image;
        // The image kernels compiled at load, as the model's own pipelines are.
        if (preprocess === 'gpu') await gpu.pipelines.prepare(IMAGE_PIPELINES);
        return new VisionLanguagePipeline(model, family, tokenizer, chatTemplate, imageConfig, preprocess, expandPrompt, imageToken, dir, performance.now() - t0, eos, !opts.gpu);
      } catch (e) {
        model.dispose();
        throw e;
      }
    } catch (e) {
      if (!opts.gpu) gpu.destroy();
      throw e;
    }
  }

  /**
   * The chat as the model sees it: template rendered, placeholders expanded; and the preprocessed images (with
   * preprocess 'gpu', tiles on the device: `dispose()` frees them once the caller is done with the batch).
   */
  async prepare(req: GenerateRequest): Promise<{ text: string; ids: number[]; images: ImageBatch | null; preprocessMs: number; dispose(): void }> {
    const images = req.images ?? [];
    let messages = req.messages;
    if (!messages) {
      if (req.prompt === undefined) throw new Error('generate: give `messages` or `prompt`');
      messages = [{ role: 'user', content: [...images.map(() => ({ type: 'image' as const })), { type: 'text' as const, text: req.prompt }] }];
    } else if (req.prompt !== undefined) {
      throw new Error('generate: give either `messages` or `prompt`, not both');
    }
    const t0 = performance.now();
    const config = withOverrides(this.imageConfig, req);
    if (this.preprocess === 'gpu') {
      const gpu = this.model.gpu;
      let pre: DeviceImage[] | undefined;
      try {
        pre = await settleAll(images.map((img) => DeviceImage.create(gpu, img, config)), (d) => d.dispose());
      } catch (e) {
        // An image whose resize would not fit one storage binding: this request is preprocessed on the host.
        if (!(e instanceof PlaneSizeError)) throw e;
      }
      if (pre) {
        const dispose = () => pre.forEach((d) => d.dispose());
        try {
          const batch: ImageBatch | null = pre.length ? { pixels: new Float32Array(0), images: pre.map((p) => ({ ...imageLayout(p), device: p })) } : null;
          return { ...this.prompt(messages, pre), images: batch, preprocessMs: performance.now() - t0, dispose };
        } catch (e) {
          dispose();
          throw e;
        }
      }
    }
    const pre = await Promise.all(images.map((img) => preprocessImage(img, config)));
    const preprocessMs = performance.now() - t0;
    let batch: ImageBatch | null = null;
    if (pre.length) {
      const pixels = new Float32Array(pre.reduce((a, p) => a + p.pixelValues.length, 0));
      let o = 0;
      for (const p of pre) {
        pixels.set(p.pixelValues, o);
        o += p.pixelValues.length;
      }
      batch = { pixels, images: pre.map(imageLayout) };
    }
    return { ...this.prompt(messages, pre), images: batch, preprocessMs, dispose: () => {} };
  }

  /** The rendered chat with the images' placeholders expanded, and its token ids. */
  private prompt(messages: ChatMessage[], images: readonly ImageGeometry[]): { text: string; ids: number[] } {
    const chat = renderChat(this.chatTemplate, messages, {
      addGenerationPrompt: true,
      bosToken: this.tokenizer.specialToken('bos_token'),
      eosToken: this.tokenizer.specialToken('eos_token'),
    });
    const text = this.expandPrompt(chat, images);
    return { text, ids: this.tokenizer.encode(text) };
  }

  /**
   * Streams a reply. Calls on one model run one at a time (one KV cache), each waiting for the ones before
   * it. An abort (req.signal, or the consumer leaving the stream) resolves with what was generated so far;
   * a signal already aborted resolves at once with no tokens, without reading the images.
   */
  generate(req: GenerateRequest): Generation {
    return new Generation(async (emit, signal) => {
      const t0 = performance.now();
      const maxNewTokens = req.maxNewTokens ?? 128;
      if (!(Number.isInteger(maxNewTokens) && maxNewTokens > 0)) throw new Error(`generate: maxNewTokens must be a positive integer, got ${maxNewTokens}`);
      let ids: number[] = [];
      let preprocessMs = 0;
      const tokens: number[] = [];
      // The reply's text a token at a time, holding back an incomplete UTF-8 sequence, cut at a stop string.
      const reply = new ReplyText(this.tokenizer, req.stop ?? []);
      let imageEncodeMs = 0;
      let tAsk = 0;
      let tGen = 0;
      let queueMs = 0;
      let reusedTokens = 0;
      let prefillMs = 0;
      let ttft = 0;
      let finishReason: GenerateResult['finishReason'] = 'length';
      let release = () => {};
      try {
        signal.throwIfAborted();
        let pixels: ImageBatch | null;
        ({ ids, images: pixels, preprocessMs, dispose: release } = await this.prepare(req));
        tAsk = performance.now();
        for await (const step of generateTokens(this.model, ids, pixels, {
          maxNewTokens,
          temperature: req.temperature,
          topK: req.topK,
          topP: req.topP,
          seed: req.seed,
          signal,
          eos: this.eos,
          onProgress: req.onProgress,
          reusePrefix: req.reusePrefix ?? true,
          onReuse: (n) => (reusedTokens = n),
          // Tiles take seconds each on a SIMD-on-CPU adapter: one per submission, so that progress comes per tile.
          limits: req.onProgress && this.model.tuning.target === 'cpu' ? { visionTiles: 1 } : undefined,
          onStart: () => {
            tGen = performance.now();
            queueMs = tGen - tAsk;
          },
          onPrefill: (s) => {
            imageEncodeMs = s.get('vision') ?? 0;
          },
        })) {
          if (tokens.length === 0) {
            ttft = performance.now() - t0;
            prefillMs = performance.now() - tGen;
          }
          if (this.eos.includes(step.token)) {
            finishReason = 'eos';
            tokens.push(step.token);
            break;
          }
          tokens.push(step.token);
          // An EOS token ends the loop above before it is pushed here, so the reply holds reply tokens only.
          const added = reply.push(step.token);
          if (added.stop) {
            if (added.text) emit({ token: step.token, text: added.text });
            finishReason = 'stop';
            break;
          }
          emit({ token: step.token, text: added.text });
        }
      } catch (e) {
        // An abort ends the reply where it is (generateTokens and acquire throw the signal's reason, after
        // the step in flight); any other failure rejects.
        if (!(signal.aborted && e === signal.reason)) throw e;
        finishReason = 'abort';
      } finally {
        release(); // the images' tiles on the device (their keys stay with the KV cache)
      }
      const tEnd = performance.now();
      if (tAsk > 0 && tGen === 0) queueMs = tEnd - tAsk; // aborted while waiting for the model
      const decodeMs = tEnd - tGen - prefillMs;
      const text = finishReason === 'stop' ? reply.text : this.tokenizer.decode(finishReason === 'eos' ? tokens.slice(0, -1) : tokens, true);
      return {
        text,
        tokens,
        finishReason,
        timings: {
          loadMs: this.loadMs,
          weightBytes: this.model.store.gpuBytes,
          preprocessMs,
          imageEncodeMs,
          queueMs,
          ttftMs: ttft,
          promptTokens: ids.length,
          reusedTokens,
          prefillTokensPerSecond: tokens.length > 0 ? (ids.length - reusedTokens) / (prefillMs / 1000) : 0,
          newTokens: tokens.length,
          decodeTokensPerSecond: tokens.length > 1 ? (tokens.length - 1) / (decodeMs / 1000) : 0,
        },
      };
    }, req.signal);
  }

  dispose(): void {
    this.model.dispose();
    if (this.ownsGpu) this.model.gpu.destroy();
  }
}

/**
 * Awaits every promise; if any rejects, frees what the others made (`free`) and rethrows the first rejection, so
 * that a failed image leaves no device buffers behind.
 */
async function settleAll<T>(promises: Promise<T>[], free: (v: T) => void): Promise<T[]> {
  const settled = await Promise.allSettled(promises);
  const failed = settled.find((r) => r.status === 'rejected');
  if (!failed) return settled.map((r) => (r as PromiseFulfilledResult<T>).value);
  for (const r of settled) if (r.status === 'fulfilled') free(r.value);
  throw failed.reason;
}

/** eos_token_id of generation_config.json (a number or a list), or none when the file is absent. */
function eosOf(md: ModelDir): number[] {
  const v = md.json('generation_config.json')?.eos_token_id;
  const list = v === undefined || v === null ? [] : Array.isArray(v) ? v : [v];
  if (!list.every((x) => Number.isInteger(x) && x >= 0)) {
    throw new Error(`${md.path('generation_config.json')}: eos_token_id must be a token id or a list of them, got ${JSON.stringify(v)}`);
  }
  return list as number[];
}

/** Loads a model from a directory or an offline Hugging Face cache id, with its tokenizer and processors. */
export function loadModel(pathOrId: string, opts: LoadModelOptions = {}): Promise<VisionLanguagePipeline> {
  return VisionLanguagePipeline.load(pathOrId, opts);
}
