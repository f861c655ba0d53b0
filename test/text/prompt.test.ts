// Tokenizer + Idefics3 image placeholder expansion (src/text/prompt.ts, src/text/tokenizer.ts).
// Expected strings are written out from transformers' processing_idefics3.py
// (_prompt_single_image / _prompt_split_image), and expected ids come from the fixture README and
// the third-party reference.safetensors, never from running our code.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TextTokenizer } from '../../src/text/tokenizer.ts';
import { loadChatTemplate, renderChat } from '../../src/text/chat.ts';
import {
  DEFAULT_IMAGE_TOKENS,
  expandImages,
  imagePromptString,
  loadImageSeqLen,
  loadImageTokens,
} from '../../src/text/prompt.ts';
import { SafetensorsFile } from '../../src/io/safetensors.ts';
import { toInt32 } from '../../src/io/decode.ts';
import { readJsonObject } from '../../src/io/model-dir.ts';

const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));
const TINY = join(FIXTURES, 'smolvlm-tiny');
const REAL = join(FIXTURES, 'hf', 'SmolVLM-256M-Instruct');

const count = (s: string, sub: string) => s.split(sub).length - 1;
const countId = (ids: ArrayLike<number>, id: number) => Array.from(ids).filter((x) => x === id).length;

// README §4 sample.
const SAMPLE = '<|im_start|>User: Hello world, 2025 is here!<end_of_utterance>\nAssistant:';
const SAMPLE_IDS = [
  257, 85, 115, 306, 58, 32, 72, 101, 108, 108, 111, 292, 286, 108, 100, 44, 32, 50, 48, 50, 53, 288, 32, 273, 279, 33, 259, 10,
  65, 115, 115, 105, 115, 116, 97, 110, 116, 58,
];
// README §5.
const CHAT_TEXT = '<|im_start|>User: Look at 7:<image> What is in it?<end_of_utterance>\nAssistant:';
const PROMPT_TEXT =
  '<|im_start|>User: Look at 7:' +
  '<fake_token_around_image><global-img>' +
  '<image><image><image><image><image><image><image><image><image><image><image><image><image><image><image><image>' +
  '<fake_token_around_image>' +
  ' What is in it?<end_of_utterance>\nAssistant:';
const PROMPT_IDS = [
  257, 85, 115, 306, 58, 32, 76, 111, 111, 107, 272, 116, 32, 55, 58, 260, 261, 262, 262, 262, 262, 262, 262, 262, 262, 262, 262,
  262, 262, 262, 262, 262, 262, 260, 32, 87, 280, 116, 288, 296, 275, 116, 63, 259, 10, 65, 115, 115, 105, 115, 116, 97, 110, 116,
  58,
];

describe('tiny fixture tokenizer', () => {
  let tok: TextTokenizer;
  before(async () => {
    tok = await TextTokenizer.load(TINY);
  });

  it('has the README vocabulary', () => {
    assert.equal(tok.vocabSize, 320);
    assert.equal(tok.tokenId('<image>'), 262);
    assert.equal(tok.tokenId('<fake_token_around_image>'), 260);
    assert.equal(tok.tokenId('<global-img>'), 261);
    assert.equal(tok.tokenId('<row_3_col_3>'), 271);
    assert.equal(tok.idToToken(259), '<end_of_utterance>');
  });

  it('encodes the README sample to its ids and decodes it back', () => {
    assert.deepEqual(tok.encode(SAMPLE), SAMPLE_IDS);
    assert.equal(tok.decode(SAMPLE_IDS), SAMPLE);
  });
});

describe('tiny fixture prompt (README §5, reference.safetensors)', () => {
  let tok: TextTokenizer;
  let ref: SafetensorsFile;
  before(async () => {
    tok = await TextTokenizer.load(TINY);
    ref = await SafetensorsFile.open(join(TINY, 'reference.safetensors'));
  });
  after(async () => {
    await ref.close();
  });

  it('reads image_seq_len 16 and the default image tokens', async () => {
    assert.equal(await loadImageSeqLen(TINY), 16);
    assert.deepEqual(await loadImageTokens(TINY), {
      image: '<image>',
      fakeAround: '<fake_token_around_image>',
      globalImg: '<global-img>',
    });
  });

  it('render → expand → encode matches chat_text, prompt_text and input_ids', async () => {
    const chat = renderChat(
      await loadChatTemplate(TINY),
      [
        {
          role: 'user',
          content: [{ type: 'text', text: 'Look at 7:' }, { type: 'image' }, { type: 'text', text: ' What is in it?' }],
        },
      ],
      { addGenerationPrompt: true },
    );
    assert.equal(chat, CHAT_TEXT);
    assert.equal(chat, ref.metadata['chat_text']);

    const prompt = expandImages(chat, [{ rows: 0, cols: 0 }], await loadImageSeqLen(TINY), await loadImageTokens(TINY));
    assert.equal(prompt, PROMPT_TEXT);
    assert.equal(typeof ref.metadata['prompt_text'], 'string');
    assert.equal(prompt, ref.metadata['prompt_text']);

    const info = ref.tensors.get('input_ids');
    assert.ok(info, 'reference has input_ids');
    assert.deepEqual(info.shape, [1, 55]);
    const refIds = Array.from(toInt32(info, await ref.read('input_ids')));
    assert.deepEqual(refIds, PROMPT_IDS);
    const ids = tok.encode(prompt);
    assert.deepEqual(ids, refIds);
    assert.equal(countId(ids, 262), 16);
    assert.equal(String(countId(ids, 262)), ref.metadata['n_image_tokens']);
    assert.equal(tok.decode(ids), prompt);
  });
});

describe('expandImages', () => {
  const I = '<image>';
  const F = '<fake_token_around_image>';
  const G = '<global-img>';

  it('expands an unsplit image to fake + global + image×n + fake', () => {
    assert.equal(
      expandImages('a<image>b', [{ rows: 0, cols: 0 }], 3),
      'a<fake_token_around_image><global-img><image><image><image><fake_token_around_image>b',
    );
  });

  it('expands a 2×3 grid: tiles row-major, "\\n" after each row, "\\n" before the global block', () => {
    const expected =
      '<fake_token_around_image><row_1_col_1><image><image>' +
      '<fake_token_around_image><row_1_col_2><image><image>' +
      '<fake_token_around_image><row_1_col_3><image><image>' +
      '\n' +
      '<fake_token_around_image><row_2_col_1><image><image>' +
      '<fake_token_around_image><row_2_col_2><image><image>' +
      '<fake_token_around_image><row_2_col_3><image><image>' +
      '\n' +
      '\n<fake_token_around_image><global-img><image><image><fake_token_around_image>';
    assert.equal(imagePromptString({ rows: 2, cols: 3 }, 2), expected);
    assert.equal(expandImages('<image>', [{ rows: 2, cols: 3 }], 2), expected);
  });

  it('expands a 1×1 grid', () => {
    assert.equal(
      expandImages('x<image>y', [{ rows: 1, cols: 1 }], 1),
      'x<fake_token_around_image><row_1_col_1><image>\n\n<fake_token_around_image><global-img><image><fake_token_around_image>y',
    );
  });

  it('replaces the i-th placeholder by the i-th image block', () => {
    const out = expandImages('A<image>B<image>C', [{ rows: 0, cols: 0 }, { rows: 1, cols: 2 }], 1);
    assert.equal(
      out,
      `A${F}${G}${I}${F}B` + `${F}<row_1_col_1>${I}${F}<row_1_col_2>${I}\n\n${F}${G}${I}${F}C`,
    );
  });

  it('leaves text without placeholders unchanged when there are no images', () => {
    assert.equal(expandImages('plain text', [], 64), 'plain text');
  });

  it('throws with both counts when placeholders and images differ', () => {
    assert.throws(
      () => expandImages('<image> and <image>', [{ rows: 0, cols: 0 }], 4),
      (e: Error) => /\b2\b/.test(e.message) && /\b1\b/.test(e.message),
    );
    assert.throws(() => expandImages('no image', [{ rows: 0, cols: 0 }], 4), /0 <image> placeholder.*1 image/);
    assert.throws(() => expandImages('<image>', [], 4), /1 <image> placeholder.*0 image/);
  });

  it('rejects bad sizes', () => {
    assert.throws(() => expandImages('<image>', [{ rows: 0, cols: 0 }], 0), /imageSeqLen/);
    assert.throws(() => expandImages('<image>', [{ rows: -1, cols: 2 }], 4), /rows/);
    assert.throws(() => expandImages('<image>', [{ rows: 1, cols: 1.5 }], 4), /cols/);
  });

  it('uses custom image tokens', () => {
    const tokens = { image: '<im>', fakeAround: '<f>', globalImg: '<g>' };
    assert.equal(expandImages('[<im>]', [{ rows: 0, cols: 0 }], 2, tokens), '[<f><g><im><im><f>]');
    assert.equal(expandImages('<image>', [], 2, tokens), '<image>');
  });

  it('has the transformers defaults', () => {
    assert.deepEqual({ ...DEFAULT_IMAGE_TOKENS }, { image: I, fakeAround: F, globalImg: G });
  });
});

describe('config loaders', () => {
  let tmp: string;
  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'prompt-test-'));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });
  const dir = async (name: string, files: Record<string, string>) => {
    const d = join(tmp, name);
    await mkdir(d);
    for (const [f, v] of Object.entries(files)) await writeFile(join(d, f), v);
    return d;
  };

  it('loadImageSeqLen names the file when it is missing or invalid', async () => {
    const none = await dir('none', {});
    await assert.rejects(loadImageSeqLen(none), /processor_config\.json/);
    const noKey = await dir('nokey', { 'processor_config.json': '{"processor_class":"Idefics3Processor"}' });
    await assert.rejects(loadImageSeqLen(noKey), /processor_config\.json.*image_seq_len/);
    const bad = await dir('bad', { 'processor_config.json': '{"image_seq_len":"64"}' });
    await assert.rejects(loadImageSeqLen(bad), /processor_config\.json.*positive integer/);
    const zero = await dir('zero', { 'processor_config.json': '{"image_seq_len":0}' });
    await assert.rejects(loadImageSeqLen(zero), /processor_config\.json/);
  });

  it('loadImageTokens reads overrides and falls back to defaults', async () => {
    const over = await dir('over', {
      'tokenizer_config.json': JSON.stringify({
        image_token: '<im>',
        fake_image_token: { content: '<f>' },
      }),
    });
    assert.deepEqual(await loadImageTokens(over), { image: '<im>', fakeAround: '<f>', globalImg: '<global-img>' });
    assert.deepEqual(await loadImageTokens(await dir('empty', {})), { ...DEFAULT_IMAGE_TOKENS });
  });
});

describe('real SmolVLM-256M-Instruct tokenizer and prompt', () => {
  let tok: TextTokenizer;
  let config: { image_token_id: number; vocab_size: number };
  let gen: { eos_token_id: number };
  before(async () => {
    tok = await TextTokenizer.load(REAL);
    config = (await readJsonObject(join(REAL, 'config.json'))) as typeof config;
    gen = (await readJsonObject(join(REAL, 'generation_config.json'))) as typeof gen;
  });

  it('loads with the model vocabulary and special tokens', () => {
    assert.equal(tok.vocabSize, 49280);
    assert.equal(config.vocab_size, 49280);
    assert.equal(config.image_token_id, 49190);
    assert.equal(tok.tokenId('<image>'), config.image_token_id);
    assert.equal(gen.eos_token_id, 49279);
    assert.equal(tok.tokenId('<end_of_utterance>'), gen.eos_token_id);
    assert.notEqual(tok.tokenId('<fake_token_around_image>'), undefined);
    assert.notEqual(tok.tokenId('<global-img>'), undefined);
    assert.notEqual(tok.tokenId('<row_2_col_3>'), undefined);
  });

  it('reads image_seq_len 64 and default image tokens', async () => {
    assert.equal(await loadImageSeqLen(REAL), 64);
    assert.deepEqual(await loadImageTokens(REAL), { ...DEFAULT_IMAGE_TOKENS });
  });

  it('renders, expands a 2×3 grid and encodes', async () => {
    const chat = renderChat(
      await loadChatTemplate(REAL),
      [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'What is in this image?' }] }],
      { addGenerationPrompt: true },
    );
    assert.equal(chat, '<|im_start|>User:<image>What is in this image?<end_of_utterance>\nAssistant:');

    const seq = await loadImageSeqLen(REAL);
    const prompt = expandImages(chat, [{ rows: 2, cols: 3 }], seq);
    const I64 = '<image>'.repeat(64);
    const F = '<fake_token_around_image>';
    const expected =
      '<|im_start|>User:' +
      `${F}<row_1_col_1>${I64}${F}<row_1_col_2>${I64}${F}<row_1_col_3>${I64}\n` +
      `${F}<row_2_col_1>${I64}${F}<row_2_col_2>${I64}${F}<row_2_col_3>${I64}\n` +
      `\n${F}<global-img>${I64}${F}` +
      'What is in this image?<end_of_utterance>\nAssistant:';
    assert.equal(prompt, expected);
    assert.equal(count(prompt, '<image>'), (2 * 3 + 1) * 64);
    assert.equal(count(prompt, F), 2 * 3 + 2);
    assert.equal(count(prompt, '<global-img>'), 1);

    const ids = tok.encode(prompt);
    const id = (t: string) => {
      const v = tok.tokenId(t);
      assert.notEqual(v, undefined, `token ${t} exists`);
      return v!;
    };
    assert.equal(countId(ids, 49190), 7 * 64);
    assert.equal(countId(ids, id(F)), 8);
    assert.equal(countId(ids, id('<global-img>')), 1);
    for (let r = 1; r <= 2; r++) for (let c = 1; c <= 3; c++) assert.equal(countId(ids, id(`<row_${r}_col_${c}>`)), 1);
    // Structure around the special tokens: each tile is its tag then 64 image ids.
    const at = ids.indexOf(id('<row_2_col_3>'));
    assert.ok(at > 0);
    assert.equal(ids[at - 1], id(F));
    assert.deepEqual(ids.slice(at + 1, at + 65), new Array(64).fill(49190));
    // Between the last tile and the global block the text is "\n\n" (one BPE token "ĊĊ"); after
    // the first row it is "\n" (the byte token "Ċ").
    assert.equal(ids[at + 65], id('ĊĊ'));
    assert.equal(ids[at + 66], id(F));
    assert.equal(ids[at + 67], id('<global-img>'));
    const row13 = ids.indexOf(id('<row_1_col_3>'));
    assert.equal(ids[row13 + 65], id('Ċ'));
    assert.equal(ids[row13 + 66], id(F));
    assert.equal(ids[row13 + 67], id('<row_2_col_1>'));
    assert.equal(ids[0], id('<|im_start|>'));
    assert.equal(ids[ids.length - 1], id(':'));
    assert.equal(tok.decode(ids), prompt);
  });

  it('round-trips plain text', () => {
    const text = 'The quick brown fox, born in 2019, jumps over 3 lazy dogs.\nÉtat: 100% sûr! 🦊';
    const ids = tok.encode(text);
    assert.ok(ids.length > 0);
    assert.ok(!ids.includes(49190));
    assert.equal(tok.decode(ids), text);
    assert.equal(tok.decode(ids, true), text);
  });
});
