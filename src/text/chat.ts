// Chat templates: loading a model directory's Jinja chat template and rendering messages through
// @huggingface/jinja (the engine of transformers.js; its Template compiles with trim_blocks and
// lstrip_blocks on, as transformers' own Jinja environment does).
import { Template } from '@huggingface/jinja';
import { ModelDir } from '../io/model-dir.ts';

export type ChatContentPart = { type: 'text'; text: string } | { type: 'image' };

export interface ChatMessage {
  role: string;
  content: string | ChatContentPart[];
}

export interface RenderChatOptions {
  /** Append the assistant turn header (`add_generation_prompt` in transformers). Default false. */
  addGenerationPrompt?: boolean;
  /** Exposed to the template as `bos_token` (transformers passes the tokenizer's special tokens). */
  bosToken?: string;
  /** Exposed to the template as `eos_token`. */
  eosToken?: string;
}

/** Reads `file` as JSON; undefined when the file does not exist. */
/**
 * Picks the template out of a `chat_template` value: a string, or a list of `{name, template}`
 * (the entry named `default` is used). Returns undefined when absent; throws when malformed.
 */
function pickTemplate(value: unknown, file: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    const names: string[] = [];
    for (const entry of value) {
      if (entry === null || typeof entry !== 'object') continue;
      const { name, template } = entry as { name?: unknown; template?: unknown };
      if (typeof name === 'string') names.push(name);
      if (name === 'default') {
        if (typeof template !== 'string') throw new Error(`${file}: chat_template "default" entry has no string "template"`);
        return template;
      }
    }
    throw new Error(
      `${file}: chat_template is a list of named templates without a "default" one (names: ${names.join(', ') || 'none'})`,
    );
  }
  throw new Error(`${file}: chat_template must be a string or a list of {name, template}, got ${typeof value}`);
}

const TEMPLATE_SOURCES = ['chat_template.json', 'tokenizer_config.json'] as const;

/**
 * The chat template of a model directory: `chat_template.json` (key `chat_template`) when that
 * file exists and holds one, else `tokenizer_config.json`'s `chat_template`.
 */
export function chatTemplateOf(md: ModelDir): string {
  for (const name of TEMPLATE_SOURCES) {
    const json = md.json(name);
    if (json === undefined) continue;
    const template = pickTemplate(json['chat_template'], md.path(name));
    if (template !== undefined) return template;
  }
  throw new Error(`no chat template found in ${md.dir}: looked for "chat_template" in ${TEMPLATE_SOURCES.map((s) => md.path(s)).join(' and ')}`);
}

/** chatTemplateOf() for a directory not opened yet. */
export async function loadChatTemplate(dir: string): Promise<string> {
  return chatTemplateOf(await ModelDir.open(dir, TEMPLATE_SOURCES));
}

/** Content as a list of parts: a plain string becomes one text part. */
function normaliseContent(content: ChatMessage['content']): ChatContentPart[] {
  return typeof content === 'string' ? [{ type: 'text', text: content }] : content.map((p) => ({ ...p }));
}

/**
 * Renders `messages` through the Jinja `template`. String contents are turned into
 * `[{type: 'text', text}]` first, since SmolVLM's template reads `message['content'][0]['type']`.
 */
export function renderChat(template: string, messages: ChatMessage[], opts: RenderChatOptions = {}): string {
  const vars: Record<string, unknown> = {
    messages: messages.map((m) => ({ role: m.role, content: normaliseContent(m.content) })),
    add_generation_prompt: opts.addGenerationPrompt ?? false,
  };
  if (opts.bosToken !== undefined) vars['bos_token'] = opts.bosToken;
  if (opts.eosToken !== undefined) vars['eos_token'] = opts.eosToken;
  let compiled: Template;
  try {
    compiled = new Template(template);
  } catch (e) {
    throw new Error(`chat template does not parse: ${(e as Error).message}`);
  }
  return compiled.render(vars);
}
