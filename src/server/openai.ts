// OpenAI's chat-completions API (platform.openai.com/docs/api-reference/chat) as this server speaks it:
// a request body checked field by field and turned into a generate() request, and the completion, chunk
// and model objects shaped as OpenAI's. Fields that would change the reply and cannot be honoured (n > 1,
// tools, logprobs, penalties, JSON mode) are refused with a 400 naming them; the rest of OpenAI's optional
// fields (user, metadata, store, ...) are accepted and ignored.
import { randomBytes, randomInt } from 'node:crypto';
import type { ChatContentPart, ChatMessage } from '../text/chat.ts';
import type { GenerateRequest, GenerateResult } from '../pipeline.ts';
import { ApiError } from './errors.ts';
import { imageFromUrl } from './images.ts';

/** max_tokens when the request gives none (OpenAI's default is the rest of the context, which is rarely wanted). */
export const DEFAULT_MAX_TOKENS = 256;
/** OpenAI allows up to 4 stop sequences. */
const MAX_STOPS = 4;

/**
 * A chat request ready for generate(). Its `reusePrefix` (KV-prefix reuse) is generate()'s default, on, unless
 * the request says `reuse_prefix: false`, an extension of this server like `top_k`.
 */
export interface ChatRequest {
  model: string;
  generate: GenerateRequest;
  stream: boolean;
  includeUsage: boolean;
}

type Json = Record<string, unknown>;

function bad(param: string, message: string, code: string | null = null): ApiError {
  return new ApiError(400, `${param}: ${message}`, { param, code });
}

function kind(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : `${typeof v} ${JSON.stringify(v)}`;
}

/** An optional number within [lo, hi] (null counts as absent, as OpenAI's API takes it). */
function numberField(body: Json, name: string, lo: number, hi: number, integer = false): number | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || (integer && !Number.isSafeInteger(v)) || v < lo || v > hi) {
    const range = hi === Infinity ? `>= ${lo}` : `in [${lo}, ${hi}]`;
    throw bad(name, `expected ${integer ? 'an integer' : 'a number'} ${range}, got ${kind(v)}`, 'invalid_value');
  }
  return v;
}

function booleanField(body: Json, name: string): boolean | undefined {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw bad(name, `expected true or false, got ${kind(v)}`, 'invalid_type');
  return v;
}

/** Refuses fields whose meaning this server cannot honour, when they ask for something. */
function refuseUnsupported(body: Json): void {
  const asks: [string, (v: unknown) => boolean][] = [
    ['tools', (v) => Array.isArray(v) && v.length > 0],
    ['functions', (v) => Array.isArray(v) && v.length > 0],
    ['tool_choice', (v) => v !== 'none' && v !== 'auto'],
    ['function_call', (v) => v !== 'none' && v !== 'auto'],
    ['logprobs', (v) => v === true],
    ['top_logprobs', (v) => v !== 0],
    ['logit_bias', (v) => typeof v === 'object' && v !== null && Object.keys(v).length > 0],
    ['presence_penalty', (v) => v !== 0],
    ['frequency_penalty', (v) => v !== 0],
    ['response_format', (v) => (v as Json | null)?.type !== 'text'],
    ['audio', () => true],
    ['prediction', () => true],
  ];
  for (const [name, asked] of asks) {
    const v = body[name];
    if (v !== undefined && v !== null && asked(v)) throw bad(name, 'not supported by this server', 'unsupported_parameter');
  }
}

/**
 * Checks an OpenAI chat-completions body and turns it into a generate() request: messages with image parts,
 * and the images (data: URIs decoded, file:// URLs resolved) in the order they appear. Throws ApiError 400
 * naming the field, or 404 for another model than `modelId`.
 */
export async function parseChatRequest(raw: unknown, modelId: string, allowFiles: string | undefined): Promise<ChatRequest> {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new ApiError(400, `the request body must be a JSON object, got ${kind(raw)}`, { code: 'invalid_type' });
  const body = raw as Json;
  if (typeof body.model !== 'string') throw bad('model', `expected the model's id ("${modelId}"), got ${kind(body.model)}`, 'invalid_type');
  if (body.model !== modelId) {
    throw new ApiError(404, `The model \`${body.model}\` does not exist; this server serves "${modelId}"`, { param: 'model', code: 'model_not_found' });
  }
  refuseUnsupported(body);
  const n = numberField(body, 'n', 1, Infinity, true);
  if (n !== undefined && n !== 1) throw bad('n', `only n = 1 is supported, got ${n}`, 'unsupported_value');

  const maxCompletion = numberField(body, 'max_completion_tokens', 1, Infinity, true);
  const maxTokens = numberField(body, 'max_tokens', 1, Infinity, true);
  const temperature = numberField(body, 'temperature', 0, 2) ?? 1; // OpenAI's default: sampling at 1
  const topP = numberField(body, 'top_p', 0, 1);
  const greedy = temperature === 0 || topP === 0; // top_p 0 keeps only the most likely token
  const topK = numberField(body, 'top_k', 1, Infinity, true);
  // Without a seed OpenAI's sampling differs from call to call; generate() would use seed 0 every time.
  const seed = numberField(body, 'seed', Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, true) ?? randomInt(2 ** 31);
  const stream = booleanField(body, 'stream') ?? false;
  const reusePrefix = booleanField(body, 'reuse_prefix');

  let includeUsage = false;
  const so = body.stream_options;
  if (so !== undefined && so !== null) {
    if (typeof so !== 'object' || Array.isArray(so)) throw bad('stream_options', `expected an object, got ${kind(so)}`, 'invalid_type');
    const iu = (so as Json).include_usage;
    if (iu !== undefined && iu !== null && typeof iu !== 'boolean') throw bad('stream_options.include_usage', `expected true or false, got ${kind(iu)}`, 'invalid_type');
    includeUsage = iu === true;
  }

  let stop: string[] | undefined;
  const s = body.stop;
  if (s !== undefined && s !== null) {
    stop = typeof s === 'string' ? [s] : Array.isArray(s) && s.every((x) => typeof x === 'string') ? (s as string[]) : undefined;
    if (!stop) throw bad('stop', `expected a string or an array of strings, got ${kind(s)}`, 'invalid_type');
    if (stop.length > MAX_STOPS) throw bad('stop', `at most ${MAX_STOPS} stop sequences, got ${stop.length}`, 'invalid_value');
    if (stop.includes('')) throw bad('stop', 'a stop sequence must not be empty (it would end the reply before it starts)', 'invalid_value');
  }

  const { messages, images } = await parseMessages(body.messages, allowFiles);
  return {
    model: modelId,
    stream,
    includeUsage: stream && includeUsage,
    generate: {
      messages,
      images,
      maxNewTokens: maxCompletion ?? maxTokens ?? DEFAULT_MAX_TOKENS,
      temperature: greedy ? 0 : temperature,
      topP: greedy ? undefined : topP,
      topK,
      seed,
      stop,
      ...(reusePrefix !== undefined && { reusePrefix }),
    },
  };
}

const ROLES = new Set(['system', 'developer', 'user', 'assistant']);

async function parseMessages(raw: unknown, allowFiles: string | undefined): Promise<{ messages: ChatMessage[]; images: (Buffer | string)[] }> {
  if (!Array.isArray(raw) || raw.length === 0) throw bad('messages', `expected a non-empty array of messages, got ${kind(raw)}`, 'invalid_type');
  const messages: ChatMessage[] = [];
  const images: (Buffer | string)[] = [];
  for (let i = 0; i < raw.length; i++) {
    const at = `messages[${i}]`;
    const m = raw[i];
    if (m === null || typeof m !== 'object' || Array.isArray(m)) throw bad(at, `expected a message object, got ${kind(m)}`, 'invalid_type');
    const { role, content } = m as Json;
    if (typeof role !== 'string' || !ROLES.has(role)) {
      throw bad(`${at}.role`, `expected one of ${[...ROLES].join(', ')}, got ${kind(role)}${role === 'tool' ? ' (tools are not supported)' : ''}`, 'invalid_value');
    }
    // OpenAI's 'developer' messages are the newer name of 'system' ones, which chat templates know.
    const as = role === 'developer' ? 'system' : role;
    if (typeof content === 'string') {
      messages.push({ role: as, content });
      continue;
    }
    if (!Array.isArray(content) || content.length === 0) throw bad(`${at}.content`, `expected a string or a non-empty array of content parts, got ${kind(content)}`, 'invalid_type');
    const parts: ChatContentPart[] = [];
    for (let j = 0; j < content.length; j++) {
      const pat = `${at}.content[${j}]`;
      const p = content[j] as Json | null;
      if (p === null || typeof p !== 'object' || Array.isArray(p)) throw bad(pat, `expected a content part object, got ${kind(p)}`, 'invalid_type');
      if (p.type === 'text') {
        if (typeof p.text !== 'string') throw bad(`${pat}.text`, `expected a string, got ${kind(p.text)}`, 'invalid_type');
        parts.push({ type: 'text', text: p.text });
      } else if (p.type === 'image_url') {
        if (role !== 'user') throw bad(`${pat}.type`, `images are accepted in user messages only, this one is in a ${role} message`, 'invalid_value');
        // OpenAI's shape is {url, detail}; a bare string URL, as some clients send, is taken too.
        const iu = p.image_url;
        const url = typeof iu === 'string' ? iu : iu !== null && typeof iu === 'object' ? (iu as Json).url : undefined;
        const param = typeof iu === 'string' ? `${pat}.image_url` : `${pat}.image_url.url`;
        if (typeof url !== 'string') throw bad(param, `expected a URL string, got ${kind(url)}`, 'invalid_type');
        images.push(await imageFromUrl(url, param, allowFiles));
        parts.push({ type: 'image' });
      } else {
        throw bad(`${pat}.type`, `expected "text" or "image_url", got ${kind(p.type)}`, 'invalid_value');
      }
    }
    messages.push({ role: as, content: parts });
  }
  return { messages, images };
}

/** OpenAI's finish reasons: an end-of-sequence token and a stop sequence are both 'stop'. */
export function finishReason(r: GenerateResult['finishReason']): 'stop' | 'length' {
  return r === 'length' ? 'length' : 'stop';
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** cached_tokens: prompt tokens whose keys and values the KV cache already held (prefix reuse). */
  prompt_tokens_details: { cached_tokens: number };
}

export function usageOf(r: GenerateResult): Usage {
  const t = r.timings;
  return {
    prompt_tokens: t.promptTokens,
    completion_tokens: r.tokens.length,
    total_tokens: t.promptTokens + r.tokens.length,
    prompt_tokens_details: { cached_tokens: t.reusedTokens },
  };
}

export function completionId(): string {
  return `chatcmpl-${randomBytes(12).toString('hex')}`;
}

/** The non-streamed reply, a `chat.completion`. */
export function completion(id: string, created: number, model: string, r: GenerateResult) {
  return {
    id,
    object: 'chat.completion' as const,
    created,
    model,
    system_fingerprint: null,
    choices: [{ index: 0, message: { role: 'assistant' as const, content: r.text, refusal: null }, logprobs: null, finish_reason: finishReason(r.finishReason) }],
    usage: usageOf(r),
  };
}

/**
 * One `chat.completion.chunk` of a streamed reply: `delta` ({role} first, then {content}), a finish reason on
 * the last, or no choice and the usage (after the last, when stream_options.include_usage). With include_usage
 * every other chunk carries `usage: null`, as OpenAI's do.
 */
export function chunk(
  id: string,
  created: number,
  model: string,
  part: { delta?: { role?: 'assistant'; content?: string }; finish?: 'stop' | 'length'; usage?: Usage },
  includeUsage: boolean,
) {
  const choices = part.usage ? [] : [{ index: 0, delta: part.delta ?? {}, logprobs: null, finish_reason: part.finish ?? null }];
  return {
    id,
    object: 'chat.completion.chunk' as const,
    created,
    model,
    system_fingerprint: null,
    choices,
    ...(includeUsage && { usage: part.usage ?? null }),
  };
}

export function modelObject(id: string, created: number) {
  return { id, object: 'model' as const, created, owned_by: 'webgpu-vlm' };
}
