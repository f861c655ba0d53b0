// `webgpu-vlm serve`: an OpenAI-compatible chat server over one loaded model, on node's http module.
// Requests wait in the model's own FIFO queue (one KV cache), bounded by maxQueue (429 beyond it). Each
// generation stops through its AbortSignal when its client leaves, its time is up, or the server stops. A
// generation that fails for a reason other than its request retires the model: the requests already
// admitted finish on it, new ones get 503 while a fresh copy loads, and /health says so.
import http from 'node:http';
import { createHash, timingSafeEqual } from 'node:crypto';
import { realpath, stat } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import { loadModel, type GenerateResult, type LoadModelOptions, type VisionLanguagePipeline } from '../pipeline.ts';
import { looksLikeHubId } from '../io/hub.ts';
import { ImageError } from '../image/preprocess.ts';
import { renderChat } from '../text/chat.ts';
import { ApiError } from './errors.ts';
import { Registry } from './metrics.ts';
import { chunk, completion, completionId, finishReason, modelObject, parseChatRequest, usageOf, type ChatRequest } from './openai.ts';

export interface ServeOptions {
  /** A model directory, or a Hub id found in the local Hugging Face cache. */
  model: string;
  /** How the model loads (dtype, kernels, image options, chunk limits, load progress). */
  load?: Omit<LoadModelOptions, 'gpu'>;
  /** Default 127.0.0.1: only this machine can connect. */
  host?: string;
  /** Default 8080; 0 picks a free port (see ChatServer.port). */
  port?: number;
  /** When set, /v1 routes need `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** Requests that may wait behind the running one (default 32); more get 429. */
  maxQueue?: number;
  /** Limit on a request from its arrival to its last byte, in ms (default 600 s; 0: none). */
  timeoutMs?: number;
  /** A directory whose images requests may name by file:// URL (default: none may be named). */
  allowFiles?: string;
  /** Largest request body in bytes (default 20 MiB); larger ones get 413. */
  maxBody?: number;
  /** Called when a request ends, answered or not (the CLI prints it as an access log line). */
  onRequest?: (r: RequestLog) => void;
}

export interface RequestLog {
  method: string;
  path: string;
  /** The HTTP status answered; 499 when the client left before the answer ended (nginx's convention). */
  status: number;
  stream?: boolean;
  promptTokens?: number;
  completionTokens?: number;
  /** Prompt tokens taken from the KV cache instead of prefilled (generate()'s timings.reusedTokens). */
  cachedTokens?: number;
  finishReason?: GenerateResult['finishReason'];
  /** Waiting for the model behind earlier requests. */
  queueMs?: number;
  /** From the request's arrival to its first generated token. */
  ttftMs?: number;
  /** From the request's arrival to its end. */
  totalMs: number;
  error?: string;
}

export const DEFAULTS = { host: '127.0.0.1', port: 8080, maxQueue: 32, timeoutMs: 600_000, maxBody: 20 * 2 ** 20 };

/** How long an aborted generation may take to stop before the model counts as stuck and is reloaded. */
const STUCK_MS = 60_000;
/** How long a retiring model waits for its admitted requests before it is disposed anyway. */
const DRAIN_MS = 60_000;
/** How long close() waits for aborted generations and open responses to end. */
const CLOSE_MS = 10_000;

/** Why a request's generation was stopped: its signal's reason. */
class Stop extends Error {
  constructor(readonly why: 'client' | 'timeout' | 'shutdown') {
    super(`request stopped: ${why}`);
  }
}

/** A loaded model and the generations running or queued on it. */
class Slot {
  active = 0;
  retiring = false;
  private disposed = false;
  private idle: (() => void)[] = [];
  constructor(readonly pipe: VisionLanguagePipeline) {}

  /** Frees the model and its device, once. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.pipe.dispose();
  }

  leave(): void {
    if (--this.active === 0) for (const f of this.idle.splice(0)) f();
  }

  /** Resolves once no generation runs on it, or after `ms`. */
  drained(ms: number): Promise<void> {
    if (this.active === 0) return Promise.resolve();
    return new Promise((r) => {
      const t = setTimeout(r, ms);
      this.idle.push(() => {
        clearTimeout(t);
        r();
      });
    });
  }
}

type Status = 'ok' | 'loading' | 'unhealthy' | 'stopping';

const SSE_HEADERS = {
  'Content-Type': 'text/event-stream; charset=utf-8',
  'Cache-Control': 'no-cache',
  // Tells nginx-like proxies to pass each event on as it comes.
  'X-Accel-Buffering': 'no',
};

export class ChatServer {
  readonly http: http.Server;
  /** The id clients name in `model`: the Hub id, or the model directory's name. */
  readonly modelId: string;
  /** The model's creation time for /v1/models: when it was loaded, in seconds. */
  private created = Math.floor(Date.now() / 1000);
  private slot: Slot | undefined;
  private status: Status = 'loading';
  /** Why the server is not 'ok' (the fault that retired the model, or the failed reload). */
  private problem = '';
  private loading: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  /** Generations admitted and not yet settled, on every slot: one runs, the others wait. */
  private pending = 0;
  /** Each admitted request's generation (settled, never rejecting) and the controller that stops it. */
  private readonly generations = new Map<Promise<unknown>, AbortController>();
  private readonly opts: Required<Omit<ServeOptions, 'apiKey' | 'allowFiles' | 'onRequest' | 'load'>> & ServeOptions;
  private readonly keyDigest?: Buffer;
  private allowFiles?: string;

  readonly metrics = new Registry();
  private readonly requests = this.metrics.counter('webgpu_vlm_requests_total', 'HTTP requests by route and status (499: the client left before the answer ended).');
  private readonly promptTokens = this.metrics.counter('webgpu_vlm_prompt_tokens_total', 'Prompt tokens of the generations run (tokens in).');
  private readonly cachedTokens = this.metrics.counter('webgpu_vlm_cached_prompt_tokens_total', 'Prompt tokens reused from the KV cache instead of prefilled.');
  private readonly completionTokens = this.metrics.counter('webgpu_vlm_completion_tokens_total', 'Tokens generated (tokens out).');
  private readonly reloads = this.metrics.counter('webgpu_vlm_model_reloads_total', 'Times the model was loaded again after a failed generation.');
  private readonly ttft = this.metrics.histogram('webgpu_vlm_time_to_first_token_seconds', 'From a request\'s arrival to its first token.', [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120,
  ]);
  private readonly queueWait = this.metrics.histogram('webgpu_vlm_queue_wait_seconds', 'Time a generation waited for the model behind earlier ones.', [
    0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120,
  ]);
  private readonly decodeRate = this.metrics.histogram('webgpu_vlm_decode_tokens_per_second', 'Decode rate of each generation of two tokens or more.', [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000,
  ]);

  private constructor(opts: ServeOptions) {
    const given = Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) as ServeOptions;
    this.opts = { ...DEFAULTS, ...given };
    for (const [k, v] of Object.entries({ maxQueue: this.opts.maxQueue, timeoutMs: this.opts.timeoutMs, maxBody: this.opts.maxBody })) {
      if (!(Number.isSafeInteger(v) && v >= 0)) throw new RangeError(`serve: ${k} must be a non-negative integer, got ${v}`);
    }
    this.modelId = looksLikeHubId(opts.model) ? opts.model : basename(resolve(opts.model));
    if (opts.apiKey !== undefined) {
      if (!opts.apiKey) throw new RangeError('serve: apiKey must not be empty');
      this.keyDigest = digest(opts.apiKey);
    }
    this.metrics.gauge('webgpu_vlm_queue_depth', 'Requests admitted and waiting for the model (not counting the one running).', () => Math.max(0, this.pending - 1));
    this.metrics.gauge('webgpu_vlm_requests_running', 'Generations running (0 or 1: one KV cache).', () => Math.min(1, this.pending));
    this.metrics.gauge('webgpu_vlm_up', '1 when the model is loaded and requests are taken.', () => (this.status === 'ok' ? 1 : 0));
    this.metrics.gauge('webgpu_vlm_gpu_buffers', 'GPU buffers alive on the model\'s device.', () => this.slot?.pipe.model.gpu.pool.liveCount ?? 0);
    this.http = http.createServer((req, res) => {
      this.handle(req, res).catch((e) => {
        console.error(e); // a fault in answering a fault: the connection is all that can go
        res.destroy();
      });
    });
  }

  /** Loads the model, then listens. Rejects when either fails. */
  static async start(opts: ServeOptions): Promise<ChatServer> {
    const s = new ChatServer(opts);
    if (opts.allowFiles !== undefined) s.allowFiles = await directory(opts.allowFiles);
    s.slot = new Slot(await loadModel(opts.model, opts.load));
    s.status = 'ok';
    try {
      await new Promise<void>((ok, fail) => {
        s.http.once('error', fail);
        s.http.listen(s.opts.port, s.opts.host, () => {
          s.http.off('error', fail);
          ok();
        });
      });
    } catch (e) {
      s.slot.dispose();
      throw e;
    }
    return s;
  }

  get port(): number {
    return (this.http.address() as { port: number }).port;
  }

  /** The API's base URL, as clients take it (`baseURL` of the openai package). */
  get url(): string {
    const h = this.opts.host.includes(':') ? `[${this.opts.host}]` : this.opts.host;
    return `http://${h}:${this.port}/v1`;
  }

  /** The model serving now (replaced after a fault); undefined while none is loaded. */
  get pipe(): VisionLanguagePipeline | undefined {
    return this.slot && !this.slot.retiring ? this.slot.pipe : undefined;
  }

  /**
   * Stops: no new connections, every generation aborted (their requests answered 503), idle connections
   * closed, then the model and its device freed. Safe to call more than once.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.status = 'stopping';
      const closed = new Promise<void>((r) => this.http.close(() => r()));
      this.http.closeIdleConnections();
      for (const ctl of this.generations.values()) ctl.abort(new Stop('shutdown'));
      await withTimeout(Promise.all(this.generations.keys()), CLOSE_MS);
      await this.loading;
      await withTimeout(closed, CLOSE_MS);
      this.http.closeAllConnections();
      this.slot?.dispose();
      this.slot = undefined;
    })();
    return this.closing;
  }

  // -----------------------------------------------------------------------------------------------------------
  // Routing

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const t0 = performance.now();
    const path = (req.url ?? '/').split('?')[0];
    const log: RequestLog = { method: req.method ?? '?', path, status: 0, totalMs: 0 };
    // Logged once the answer has ended and the handler too, which waits for the generation it started (a client
    // that leaves is answered by nothing, but its generation's tokens still count).
    let handled!: () => void;
    const done = new Promise<void>((r) => (handled = r));
    res.on('close', () => {
      log.status = res.writableFinished ? log.status || res.statusCode : 499;
      log.totalMs = performance.now() - t0;
      void done.then(() => {
        const known = ['/v1/chat/completions', '/v1/models', '/health', '/metrics'];
        const route = known.includes(path) ? path : path.startsWith('/v1/models/') ? '/v1/models/{id}' : 'other';
        this.requests.inc({ route, status: String(log.status) });
        this.opts.onRequest?.(log);
      });
    });
    try {
      const get = req.method === 'GET' || req.method === 'HEAD';
      if (path === '/health') {
        this.allow(req, get, 'GET');
        return this.health(res);
      }
      if (path === '/metrics') {
        this.allow(req, get, 'GET');
        return send(res, 200, this.metrics.render(), 'text/plain; version=0.0.4; charset=utf-8');
      }
      if (path === '/v1/models' || path.startsWith('/v1/models/')) {
        this.allow(req, get, 'GET');
        this.authorize(req);
        if (path === '/v1/models') return sendJson(res, 200, { object: 'list', data: [modelObject(this.modelId, this.created)] });
        const id = safeDecode(path.slice('/v1/models/'.length));
        if (id !== this.modelId) throw new ApiError(404, `The model \`${id}\` does not exist; this server serves "${this.modelId}"`, { param: 'model', code: 'model_not_found' });
        return sendJson(res, 200, modelObject(this.modelId, this.created));
      }
      if (path === '/v1/chat/completions') {
        this.allow(req, req.method === 'POST', 'POST');
        this.authorize(req);
        return await this.chat(req, res, t0, log);
      }
      throw new ApiError(404, `Invalid URL (${req.method} ${path})`, { code: 'not_found' });
    } catch (e) {
      if (e instanceof Stop || res.headersSent || res.destroyed) return void res.end(); // nobody to answer, or answered
      const err = e instanceof ApiError ? e : new ApiError(500, `internal error: ${(e as Error)?.message ?? e}`);
      if (!(e instanceof ApiError)) console.error(e);
      log.error = err.message;
      if (!unread(req)) return sendJson(res, err.status, err.body(), err.headers);
      // The body was not read (auth, route, size): answer, then close rather than read on.
      sendJson(res, err.status, err.body(), { ...err.headers, Connection: 'close' }, () => req.socket.destroy());
    } finally {
      handled();
    }
  }

  private allow(req: http.IncomingMessage, ok: boolean, method: string): void {
    if (!ok) throw new ApiError(405, `${req.method} is not allowed on ${req.url}; use ${method}`, { code: 'method_not_allowed', headers: { Allow: method } });
  }

  private authorize(req: http.IncomingMessage): void {
    if (!this.keyDigest) return;
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    if (!m) throw new ApiError(401, 'Missing API key: send it as "Authorization: Bearer KEY"', { code: 'missing_api_key' });
    // Digests of equal length, so that the comparison's time says nothing about the key.
    if (!timingSafeEqual(digest(m[1]), this.keyDigest)) throw new ApiError(401, 'Incorrect API key provided', { code: 'invalid_api_key' });
  }

  private health(res: http.ServerResponse): void {
    const pipe = this.slot?.pipe;
    const body = {
      status: this.status,
      model: this.modelId,
      adapter: pipe ? pipe.model.gpu.info.description || pipe.model.gpu.info.device : null,
      running: Math.min(1, this.pending),
      queue_depth: Math.max(0, this.pending - 1),
      max_queue: this.opts.maxQueue,
      reloads: this.reloads.get(),
      ...(this.problem && { error: this.problem }),
    };
    sendJson(res, this.status === 'ok' ? 200 : 503, body);
  }

  // -----------------------------------------------------------------------------------------------------------
  // Chat completions

  private async chat(req: http.IncomingMessage, res: http.ServerResponse, t0: number, log: RequestLog): Promise<void> {
    const raw = await readBody(req, this.opts.maxBody);
    let json: unknown;
    try {
      json = JSON.parse(raw.toString('utf8'));
    } catch (e) {
      throw new ApiError(400, `the request body is not valid JSON: ${(e as Error).message}`, { code: 'invalid_json' });
    }
    // Refused before the images are read, when the queue is full or no model serves: that should cost little.
    this.admit();
    this.serving();
    const chat = await parseChatRequest(json, this.modelId, this.allowFiles);
    log.stream = chat.stream;
    // Taken again after the awaits above: the server may have begun to stop, or loaded a fresh model.
    const slot = this.serving();
    checkPrompt(slot.pipe, chat);
    this.admit();
    if (res.destroyed) throw new Stop('client'); // left while its images were read

    // The request's generation stops when its client leaves, its time is up, or the server stops. A timeout
    // or a shutdown is answered at once, without waiting for the step in flight.
    const ctl = new AbortController();
    const signal = ctl.signal; // close() aborts each request's own controller: no signal outlives its request
    res.on('close', () => {
      if (!res.writableFinished) ctl.abort(new Stop('client'));
    });
    const left = this.opts.timeoutMs - (performance.now() - t0);
    const timer = this.opts.timeoutMs > 0 ? setTimeout(() => ctl.abort(new Stop('timeout')), Math.max(0, left)) : undefined;
    let started = false; // SSE headers and the role chunk sent
    let streamed = '';
    const id = completionId();
    const created = Math.floor(Date.now() / 1000);
    const gone = () => res.writableEnded || res.destroyed;
    const sse = (obj: unknown) => res.write(`data: ${JSON.stringify(obj)}\n\n`);
    const start = () => {
      // Headers wait for the first token, so that a failure before it gets its own status.
      started = true;
      res.writeHead(200, SSE_HEADERS);
      sse(chunk(id, created, chat.model, { delta: { role: 'assistant', content: '' } }, chat.includeUsage));
    };
    const fail = (err: ApiError) => {
      log.error = err.message;
      if (gone()) return;
      if (!started) return sendJson(res, err.status, err.body(), err.headers);
      // Headers are out: the error goes as an event, which OpenAI's clients raise as an APIError.
      log.status = err.status;
      sse(err.body());
      res.end();
    };

    this.pending++;
    slot.active++;
    const tCall = performance.now();
    const gen = slot.pipe.generate({ ...chat.generate, signal });
    const settled = gen.then(
      () => {},
      () => {},
    );
    this.generations.set(settled, ctl);
    void settled.then(() => {
      this.pending--;
      slot.leave();
      clearTimeout(timer);
      this.generations.delete(settled);
    });
    const onAbort = () => {
      const why = (signal.reason as Stop).why;
      if (why === 'timeout') fail(new ApiError(504, `the request took longer than the server's limit of ${this.opts.timeoutMs / 1000} s`, { code: 'timeout', headers: { 'x-should-retry': 'false' } }));
      if (why === 'shutdown') fail(new ApiError(503, 'the server is shutting down', { code: 'shutting_down', headers: { Connection: 'close' } }));
      // A generation that does not stop within STUCK_MS of its abort holds the model for good.
      const t = setTimeout(() => this.retire(slot, `a generation did not stop within ${STUCK_MS / 1000} s of its abort`, true), STUCK_MS);
      void settled.then(() => clearTimeout(t));
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });

    let r: GenerateResult;
    try {
      if (chat.stream) {
        for await (const c of gen) {
          if (gone()) continue;
          if (!started) start();
          if (c.text) sse(chunk(id, created, chat.model, { delta: { content: c.text } }, chat.includeUsage));
          streamed += c.text;
        }
      }
      r = await gen;
    } catch (e) {
      const err = classify(e, slot.pipe);
      if (err.status >= 500) {
        console.error(e);
        void this.retire(slot, `a generation failed: ${(e as Error)?.message ?? e}`, false);
      }
      return fail(err);
    }

    const t = r.timings;
    const usage = usageOf(r);
    Object.assign(log, {
      promptTokens: t.promptTokens,
      completionTokens: r.tokens.length,
      cachedTokens: t.reusedTokens,
      finishReason: r.finishReason,
      queueMs: t.queueMs,
    });
    this.promptTokens.inc({}, t.promptTokens);
    this.completionTokens.inc({}, r.tokens.length);
    this.cachedTokens.inc({}, t.reusedTokens);
    if (t.promptTokens > 0) this.queueWait.observe(t.queueMs / 1000);
    if (r.tokens.length) {
      log.ttftMs = tCall - t0 + t.ttftMs;
      this.ttft.observe(log.ttftMs / 1000);
    }
    if (r.tokens.length > 1) this.decodeRate.observe(t.decodeTokensPerSecond);
    if (r.finishReason === 'abort' || gone()) return; // answered by the abort, or nobody to answer

    if (!chat.stream) return sendJson(res, 200, completion(id, created, chat.model, r));
    if (!started) start();
    // The stream holds back a character whose bytes are incomplete; a reply cut there ends with U+FFFD in the
    // result's text, which the deltas should spell too.
    if (r.text.length > streamed.length && r.text.startsWith(streamed)) sse(chunk(id, created, chat.model, { delta: { content: r.text.slice(streamed.length) } }, chat.includeUsage));
    sse(chunk(id, created, chat.model, { finish: finishReason(r.finishReason) }, chat.includeUsage));
    if (chat.includeUsage) sse(chunk(id, created, chat.model, { usage }, true));
    res.end('data: [DONE]\n\n');
  }

  /** The slot new requests go to; 503 while the model reloads, after a failed reload, or when stopping. */
  private serving(): Slot {
    if (this.status === 'ok' && this.slot && !this.slot.retiring) return this.slot;
    const what = this.status === 'stopping' ? 'the server is shutting down' : this.status === 'loading' ? `the model is loading again (${this.problem})` : `the model is unavailable (${this.problem})`;
    throw new ApiError(503, what, { code: this.status === 'stopping' ? 'shutting_down' : 'model_unavailable', headers: { 'Retry-After': '5' } });
  }

  /** 429 when maxQueue requests already wait behind the running one. */
  private admit(): void {
    if (this.pending > this.opts.maxQueue) {
      throw new ApiError(429, `the server is busy: ${this.pending - 1} requests are waiting for the model (the limit is ${this.opts.maxQueue}); retry later`, {
        code: 'queue_full',
        headers: { 'Retry-After': '1' },
      });
    }
  }

  /**
   * Takes a model out of service after a fault: new requests get 503, the ones admitted finish on it (or fail
   * fast if its device is gone), then it is disposed and a fresh copy loads. `now`: dispose without waiting.
   */
  private retire(slot: Slot, why: string, now: boolean): Promise<void> {
    if (slot.retiring || this.closing) return this.loading ?? Promise.resolve();
    slot.retiring = true;
    this.status = 'loading';
    this.problem = why;
    this.loading = (async () => {
      if (!now) await slot.drained(DRAIN_MS);
      slot.dispose();
      if (this.slot === slot) this.slot = undefined;
      if (this.closing) return;
      try {
        const pipe = await loadModel(this.opts.model, this.opts.load);
        if (this.closing) return pipe.dispose();
        this.slot = new Slot(pipe);
        this.created = Math.floor(Date.now() / 1000);
        this.reloads.inc();
        this.status = 'ok';
        this.problem = '';
      } catch (e) {
        this.slot = undefined;
        this.status = 'unhealthy';
        this.problem = `${why}; loading the model again failed: ${(e as Error)?.message ?? e}`;
      }
    })();
    return this.loading;
  }
}


/**
 * Checks the request's messages against the model's chat template before it waits, so that a template that
 * refuses them (roles out of order) is a 400, and text that spells an image placeholder cannot pose as one.
 */
function checkPrompt(pipe: VisionLanguagePipeline, chat: ChatRequest): void {
  const placeholder = pipe.imageToken;
  for (const [i, m] of (chat.generate.messages ?? []).entries()) {
    const texts = typeof m.content === 'string' ? [m.content] : m.content.flatMap((p) => (p.type === 'text' ? [p.text] : []));
    if (texts.some((t) => t.includes(placeholder))) {
      throw new ApiError(400, `messages[${i}]: text must not contain the image placeholder ${placeholder}; send images as image_url parts`, { param: `messages[${i}].content`, code: 'invalid_value' });
    }
  }
  try {
    renderChat(pipe.chatTemplate, chat.generate.messages ?? [], { addGenerationPrompt: true, bosToken: '', eosToken: '' });
  } catch (e) {
    throw new ApiError(400, `the model's chat template refuses these messages: ${(e as Error).message}`, { param: 'messages', code: 'invalid_messages' });
  }
}

/** The answer to a generation that rejected: the request's fault (400) or the server's (500). */
function classify(e: unknown, pipe: VisionLanguagePipeline): ApiError {
  if (e instanceof ApiError) return e;
  if (e instanceof ImageError) return new ApiError(400, `an image cannot be used: ${e.message}`, { param: 'messages', code: 'invalid_image' });
  const msg = (e as Error)?.message ?? String(e);
  // generateTokens() checks the length before the request waits; its error is a plain Error, known by its words.
  if (/exceeds max_position_embeddings/.test(msg)) {
    const max = pipe.model.textConfig.max_position_embeddings;
    return new ApiError(400, `This model's maximum context length is ${max} tokens: ${msg}`, { param: 'messages', code: 'context_length_exceeded' });
  }
  return new ApiError(500, `the generation failed: ${msg}`);
}

/** The body, or ApiError 413 once it passes `max` bytes (at once when Content-Length says so). */
function readBody(req: http.IncomingMessage, max: number): Promise<Buffer> {
  const tooLarge = () => new ApiError(413, `the request body is larger than this server's limit of ${max} bytes`, { code: 'request_too_large' });
  if (Number(req.headers['content-length']) > max) return Promise.reject(tooLarge());
  return new Promise((ok, fail) => {
    const parts: Buffer[] = [];
    let n = 0;
    const onData = (b: Buffer) => {
      n += b.length;
      if (n <= max) return void parts.push(b);
      req.off('data', onData);
      req.pause();
      fail(tooLarge());
    };
    req.on('data', onData);
    req.on('end', () => ok(Buffer.concat(parts)));
    req.on('error', fail);
    req.on('close', () => fail(new Stop('client'))); // a no-op once settled
  });
}

/** The real path of the --allow-files directory (symlinks resolved, as the paths checked against it are). */
async function directory(dir: string): Promise<string> {
  try {
    const real = await realpath(dir);
    if ((await stat(real)).isDirectory()) return real;
  } catch {
    // said below
  }
  throw new Error(`serve: allowFiles ${dir} is not a directory`);
}

/** Whether the request still has body bytes to come (an error answered before reading them closes the connection). */
function unread(req: http.IncomingMessage): boolean {
  return !req.complete && (Number(req.headers['content-length']) > 0 || req.headers['transfer-encoding'] !== undefined);
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

function send(res: http.ServerResponse, status: number, body: string, type: string, headers: Record<string, string> = {}, then?: () => void): void {
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), ...headers });
  res.end(res.req.method === 'HEAD' ? undefined : body, then);
}

function sendJson(res: http.ServerResponse, status: number, obj: unknown, headers: Record<string, string> = {}, then?: () => void): void {
  send(res, status, JSON.stringify(obj), 'application/json', headers, then);
}

function withTimeout(p: Promise<unknown>, ms: number): Promise<unknown> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise((r) => (t = setTimeout(r, ms)))]).finally(() => clearTimeout(t));
}
