// Chat template loading and rendering (src/text/chat.ts) against the tiny fixture, its third-party
// reference metadata and the real SmolVLM-256M-Instruct files. Expected strings are written out by
// hand from the SmolVLM template's semantics, not produced by our code.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadChatTemplate, renderChat } from '../../src/text/chat.ts';
import type { ChatMessage } from '../../src/text/chat.ts';
import { SafetensorsFile } from '../../src/io/safetensors.ts';
import { readJsonObject } from '../../src/io/model-dir.ts';

const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));
const TINY = join(FIXTURES, 'smolvlm-tiny');
const REAL = join(FIXTURES, 'hf', 'SmolVLM-256M-Instruct');

// The SmolVLM chat template as printed in /work/shared/fixtures/README.md §4 (also the real model's).
const SMOLVLM_TEMPLATE =
  "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}";

// README §5.
const FIXTURE_MESSAGES: ChatMessage[] = [
  {
    role: 'user',
    content: [
      { type: 'text', text: 'Look at 7:' },
      { type: 'image' },
      { type: 'text', text: ' What is in it?' },
    ],
  },
];
const FIXTURE_CHAT_TEXT = '<|im_start|>User: Look at 7:<image> What is in it?<end_of_utterance>\nAssistant:';

describe('loadChatTemplate', () => {
  let tmp: string;
  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'chat-test-'));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });
  const dir = async (name: string, files: Record<string, unknown>) => {
    const d = join(tmp, name);
    await mkdir(d);
    for (const [f, v] of Object.entries(files)) await writeFile(join(d, f), typeof v === 'string' ? v : JSON.stringify(v));
    return d;
  };

  it('reads the tiny fixture template from tokenizer_config.json', async () => {
    assert.equal(await loadChatTemplate(TINY), SMOLVLM_TEMPLATE);
  });

  it('reads the real SmolVLM template from chat_template.json', async () => {
    assert.equal(await loadChatTemplate(REAL), SMOLVLM_TEMPLATE);
    const fromJson = (await readJsonObject(join(REAL, 'chat_template.json'))) as { chat_template: string };
    assert.equal(await loadChatTemplate(REAL), fromJson.chat_template);
  });

  it('prefers chat_template.json over tokenizer_config.json', async () => {
    const d = await dir('both', {
      'chat_template.json': { chat_template: 'A' },
      'tokenizer_config.json': { chat_template: 'B' },
    });
    assert.equal(await loadChatTemplate(d), 'A');
  });

  it('falls back to tokenizer_config.json when chat_template.json lacks the key', async () => {
    const d = await dir('fallback', {
      'chat_template.json': { other: 1 },
      'tokenizer_config.json': { chat_template: 'B' },
    });
    assert.equal(await loadChatTemplate(d), 'B');
  });

  it('takes the "default" entry of a named template list', async () => {
    const d = await dir('named', {
      'tokenizer_config.json': {
        chat_template: [
          { name: 'tool_use', template: 'T' },
          { name: 'default', template: 'D' },
        ],
      },
    });
    assert.equal(await loadChatTemplate(d), 'D');
  });

  it('rejects a named list without "default"', async () => {
    const d = await dir('named-nodefault', {
      'tokenizer_config.json': { chat_template: [{ name: 'tool_use', template: 'T' }] },
    });
    await assert.rejects(loadChatTemplate(d), /default.*tool_use/);
  });

  it('names the files looked at when there is no template', async () => {
    const d = await dir('none', { 'tokenizer_config.json': { bos_token: '<s>' } });
    await assert.rejects(loadChatTemplate(d), (e: Error) => {
      assert.match(e.message, /chat_template\.json/);
      assert.match(e.message, /tokenizer_config\.json/);
      return true;
    });
    const empty = await dir('empty', {});
    await assert.rejects(loadChatTemplate(empty), /chat_template\.json.*tokenizer_config\.json/);
  });

  it('reports invalid JSON with the file name', async () => {
    const d = await dir('bad-json', { 'chat_template.json': '{not json' });
    await assert.rejects(loadChatTemplate(d), /chat_template\.json is not valid JSON/);
  });
});

describe('renderChat', () => {
  it('renders README §5 messages to the fixture chat_text', async () => {
    const template = await loadChatTemplate(TINY);
    const text = renderChat(template, FIXTURE_MESSAGES, { addGenerationPrompt: true });
    assert.equal(text, FIXTURE_CHAT_TEXT);
    const f = await SafetensorsFile.open(join(TINY, 'reference.safetensors'));
    try {
      assert.equal(typeof f.metadata['chat_text'], 'string');
      assert.equal(text, f.metadata['chat_text']);
      // The reference's own chat_messages, fed through our renderer, give the same text.
      const messages = JSON.parse(f.metadata['chat_messages']!) as ChatMessage[];
      assert.equal(renderChat(template, messages, { addGenerationPrompt: true }), f.metadata['chat_text']);
    } finally {
      await f.close();
    }
  });

  it('omits the assistant header without addGenerationPrompt', () => {
    assert.equal(
      renderChat(SMOLVLM_TEMPLATE, FIXTURE_MESSAGES),
      '<|im_start|>User: Look at 7:<image> What is in it?<end_of_utterance>\n',
    );
  });

  it('normalises string content to one text part', () => {
    assert.equal(
      renderChat(SMOLVLM_TEMPLATE, [{ role: 'user', content: 'Hi there' }], { addGenerationPrompt: true }),
      '<|im_start|>User: Hi there<end_of_utterance>\nAssistant:',
    );
  });

  it('renders a multi-turn chat; an image-first turn takes ":" without a space', () => {
    const messages: ChatMessage[] = [
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: [{ type: 'text', text: 'Hello.' }] },
      { role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'Describe.' }] },
    ];
    assert.equal(
      renderChat(SMOLVLM_TEMPLATE, messages, { addGenerationPrompt: true }),
      '<|im_start|>User: Hi<end_of_utterance>\nAssistant: Hello.<end_of_utterance>\nUser:<image>Describe.<end_of_utterance>\nAssistant:',
    );
  });

  it('renders the real SmolVLM template: image + text with the generation prompt', async () => {
    const template = await loadChatTemplate(REAL);
    const messages: ChatMessage[] = [
      { role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'Can you describe this image?' }] },
    ];
    assert.equal(
      renderChat(template, messages, { addGenerationPrompt: true }),
      '<|im_start|>User:<image>Can you describe this image?<end_of_utterance>\nAssistant:',
    );
  });

  it('exposes bos_token / eos_token and does not mutate the messages', () => {
    const messages: ChatMessage[] = [{ role: 'user', content: 'x' }];
    const template = "{{ bos_token }}{% for m in messages %}{{ m['content'][0]['text'] }}{% endfor %}{{ eos_token }}";
    assert.equal(renderChat(template, messages, { bosToken: '<s>', eosToken: '</s>' }), '<s>x</s>');
    assert.equal(messages[0]!.content, 'x');
  });

  it('reports a template that does not parse', () => {
    assert.throws(() => renderChat('{% for %}', []), /chat template does not parse/);
  });
});
