// Shared by the serve tests: the tiny SmolVLM fixture's image as a data: URI, an openai client pointed at a
// server, and a check that a call failed with OpenAI's error shape and the expected status.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import OpenAI, { APIError } from 'openai';
import { FIXTURES } from '../reference.ts';

export const DIR = join(FIXTURES, 'smolvlm-tiny');
export const MODEL = 'smolvlm-tiny';
export const IMAGE = join(DIR, 'image.png');
export const IMAGE_URI = `data:image/png;base64,${readFileSync(IMAGE).toString('base64')}`;

/** No retries: the tests want to see each 429 and 5xx, not the client's second try. */
export function client(baseURL: string, apiKey = 'unused'): OpenAI {
  return new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 120_000 });
}

/** A user message with the fixture image and a question, as OpenAI content parts. */
export function imageMessage(text = 'What is in it?'): OpenAI.ChatCompletionMessageParam {
  return { role: 'user', content: [{ type: 'image_url', image_url: { url: IMAGE_URI } }, { type: 'text', text }] };
}

/** Awaits `p`, which must fail with an APIError of `status` whose body is OpenAI's {error: {message, type, param, code}}. */
export async function rejectsWith(p: Promise<unknown>, status: number, fields: { param?: string | null; code?: string | null } = {}): Promise<APIError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof APIError, `expected an APIError, got ${e}`);
    assert.equal(e.status, status, e.message);
    const body = e.error as Record<string, unknown>;
    assert.deepEqual(Object.keys(body).sort(), ['code', 'message', 'param', 'type']);
    assert.equal(typeof body.message, 'string');
    if ('param' in fields) assert.equal(e.param, fields.param);
    if ('code' in fields) assert.equal(e.code, fields.code);
    return e;
  }
  assert.fail(`expected status ${status}, the call succeeded`);
}

/** A raw request (for what the openai client will not send: malformed JSON, odd routes), with the JSON answer. */
export async function raw(url: string, init: RequestInit = {}): Promise<{ status: number; headers: Headers; body: any }> {
  const r = await fetch(url, init);
  const text = await r.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON (metrics)
  }
  return { status: r.status, headers: r.headers, body };
}
