// Streaming detokenization (src/text/stream.ts) against what it replaced: decoding the whole reply at
// every token and emitting what is new, held back while the text ends in U+FFFD, cut at a stop string.
// Token by token the chunks, the stop and the final text must be the same, on the fixtures' tokenizers
// and on small Llama-style ones (Metaspace, Strip) built here, over random token sequences that split
// multi-byte characters and hold special tokens; and each token must decode a bounded number of tokens.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '../data.ts';
import { FIXTURES } from '../reference.ts';
import { TextTokenizer } from '../../src/text/tokenizer.ts';
import { ReplyText, SpaceCleanup, cleanUpSpaces, type Detokenizer } from '../../src/text/stream.ts';

interface Emitted {
  chunks: string[];
  stop: boolean;
  text: string;
}

/** The replaced code, as it stood in src/pipeline.ts: the whole reply decoded at every token. */
function wholeReply(tok: Detokenizer, tokens: number[], stops: string[]): Emitted {
  let emitted = '';
  const chunks: string[] = [];
  for (let n = 1; n <= tokens.length; n++) {
    const full = tok.decode(tokens.slice(0, n), true);
    const stopAt = stops.map((s) => full.indexOf(s)).filter((i) => i >= 0);
    if (stopAt.length) {
      const cut = full.slice(0, Math.min(...stopAt));
      if (cut.length > emitted.length) chunks.push(cut.slice(emitted.length));
      return { chunks, stop: true, text: cut };
    }
    if (!full.endsWith('\uFFFD') && full.length >= emitted.length && full.startsWith(emitted)) {
      chunks.push(full.slice(emitted.length));
      emitted = full;
    } else {
      chunks.push('');
    }
  }
  return { chunks, stop: false, text: emitted };
}

function streamed(tok: Detokenizer, tokens: number[], stops: string[]): Emitted {
  const reply = new ReplyText(tok, stops);
  const chunks: string[] = [];
  for (const t of tokens) {
    const r = reply.push(t);
    if (r.stop) {
      if (r.text) chunks.push(r.text);
      return { chunks, stop: true, text: reply.text };
    }
    chunks.push(r.text);
  }
  return { chunks, stop: false, text: reply.text };
}

/** A tokenizer that records how many ids each decode was given. */
function counting(tok: TextTokenizer, cleansUpSpaces = tok.cleansUpSpaces) {
  const lengths: number[] = [];
  const d: Detokenizer = {
    decode: (ids, skip, clean) => {
      lengths.push(ids.length);
      return tok.decode(ids, skip, clean ?? cleansUpSpaces);
    },
    cleansUpSpaces,
    decodesByWindow: tok.decodesByWindow,
  };
  return { d, lengths };
}

/**
 * Replies to stream: random ids over the whole vocabulary (byte tokens that split and break UTF-8, special
 * tokens), and the ids of multilingual text with special tokens spliced in.
 */
function replies(tok: TextTokenizer, rng: Rng, n: number): number[][] {
  const V = tok.vocabSize;
  const texts = ['Grüße, 世界! Ça va? 🙂👍🏽 naïve café — ok.', 'A dog isn\'t here . It \'s 3 ,4 ! Really ? yes', 'ελληνικά и русский 日本語のテキスト 🇫🇷🇩🇪'];
  const specials = [...Array(V).keys()].filter((id) => tok.decode([id], true) === '' && tok.decode([id]) !== '');
  const out: number[][] = [];
  for (let i = 0; i < n; i++) {
    const len = 1 + Math.floor(rng.next() * 80);
    if (i % 2 === 0) {
      out.push(Array.from({ length: len }, () => Math.floor(rng.next() * V)));
    } else {
      const ids = tok.encode(texts[i % texts.length].repeat(3));
      for (let k = 0; k < 4 && specials.length; k++) ids.splice(Math.floor(rng.next() * ids.length), 0, specials[Math.floor(rng.next() * specials.length)]);
      out.push(ids.slice(0, len + 40));
    }
  }
  return out;
}

const tmp = mkdtempSync(join(tmpdir(), 'stream-test-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** A small Llama-style tokenizer: byte fallback, "▁" for spaces, and the given decoder. */
async function llamaStyle(name: string, decoder: unknown, cleanUp: boolean): Promise<TextTokenizer> {
  const pieces = ['▁', '▁Hello', 'Hello', '▁world', 'world', '.', ',', '▁the', 'the', "'", 's', '▁n', "n't", '!', '▁▁', 'é', '▁café'];
  const vocab: Record<string, number> = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`] = 3 + b;
  for (const p of pieces) vocab[p] = Object.keys(vocab).length;
  const json = {
    version: '1.0',
    added_tokens: [
      { id: 0, content: '<unk>', special: true, single_word: false, lstrip: false, rstrip: false, normalized: false },
      { id: 1, content: '<s>', special: true, single_word: false, lstrip: false, rstrip: false, normalized: false },
      { id: 2, content: '</s>', special: true, single_word: false, lstrip: false, rstrip: false, normalized: false },
    ],
    normalizer: null,
    pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false },
    post_processor: null,
    decoder,
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, vocab, merges: [] },
  };
  const dir = join(tmp, name);
  mkdirSync(dir);
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(json));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ clean_up_tokenization_spaces: cleanUp }));
  return TextTokenizer.load(dir);
}

const LLAMA_DECODER = {
  type: 'Sequence',
  decoders: [
    { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
    { type: 'ByteFallback' },
    { type: 'Fuse' },
    { type: 'Strip', content: ' ', start: 1, stop: 0 },
  ],
};
const METASPACE_DECODER = { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true };

async function tokenizers(): Promise<[string, TextTokenizer][]> {
  return [
    ['smolvlm-tiny', await TextTokenizer.load(join(FIXTURES, 'smolvlm-tiny'))],
    ['llava-tiny', await TextTokenizer.load(join(FIXTURES, 'llava-tiny'))],
    ['llava-next-tiny', await TextTokenizer.load(join(FIXTURES, 'llava-next-tiny'))],
    ['SmolVLM-256M-Instruct', await TextTokenizer.load(join(FIXTURES, 'hf/SmolVLM-256M-Instruct'))],
    ['llama-style (Replace, ByteFallback, Fuse, Strip)', await llamaStyle('llama', LLAMA_DECODER, false)],
    ['metaspace', await llamaStyle('metaspace', METASPACE_DECODER, false)],
  ];
}

describe('ReplyText', () => {
  it('emits what decoding the whole reply at every token emitted, token by token, with and without stop strings', async () => {
    for (const [name, tok] of await tokenizers()) {
      assert.equal(tok.cleansUpSpaces, false, `${name}: these tokenizers do not clean up spaces`);
      assert.equal(tok.decodesByWindow, true);
      const rng = new Rng(name.length);
      let maxIds = 0;
      let steps = 0;
      for (const tokens of replies(tok, rng, 60)) {
        const plain = wholeReply(tok, tokens, []);
        const { d, lengths } = counting(tok);
        assert.deepEqual(streamed(d, tokens, []), plain, `${name}: ${JSON.stringify(tokens)}`);
        // Two decodes per token, of a window; bounded, where the whole reply grew to 120 tokens.
        assert.equal(lengths.length, 2 * tokens.length, `${name}: decodes per token`);
        maxIds = Math.max(maxIds, ...lengths);
        steps += tokens.length;
        // Stop strings: pieces of the reply's own text, so that they are found; some across the edge of two
        // tokens' text (the end of one and the start of the next), one longer that never appears.
        const full = tok.decode(tokens, true);
        const edges = plain.chunks.map((_, k) => plain.chunks.slice(0, k).join('').length).filter((e, k) => plain.chunks[k] && e >= 3);
        const stopSets: string[][] = [];
        if (full.length > 4) {
          const at = Math.floor(rng.next() * (full.length - 3));
          stopSets.push([full.slice(at, at + 1 + Math.floor(rng.next() * 3)), 'never in the text \u0000']);
        }
        if (edges.length) {
          const e = edges[Math.floor(rng.next() * edges.length)];
          stopSets.push([plain.text.slice(e - 3, e + 1)], [plain.text.slice(e - 1, e + 1), 'never in the text either']);
        }
        for (const stops of stopSets) {
          assert.deepEqual(streamed(tok, tokens, stops), wholeReply(tok, tokens, stops), `${name} stops ${JSON.stringify(stops)}: ${JSON.stringify(tokens)}`);
        }
      }
      assert.ok(steps > 1000, `${name}: ${steps} tokens streamed`);
      assert.ok(maxIds <= 16, `${name}: a decode of ${maxIds} ids`);
    }
  });

  it('a multi-byte character split over byte tokens is held back until it is whole', async () => {
    const tok = await TextTokenizer.load(join(FIXTURES, 'smolvlm-tiny'));
    const ids = tok.encode('a🙂b');
    const reply = new ReplyText(tok);
    const chunks = ids.map((t) => reply.push(t).text);
    assert.equal(chunks.join(''), 'a🙂b');
    assert.ok(chunks.includes(''), `the emoji spans several tokens, held back until whole: ${JSON.stringify(chunks)}`);
    assert.ok(chunks.every((c) => !c.includes('\uFFFD')), JSON.stringify(chunks));
  });

  it('a long reply decodes a bounded window per token (a 2,000-token reply, at most 8 ids a decode)', async () => {
    const tok = await TextTokenizer.load(join(FIXTURES, 'hf/SmolVLM-256M-Instruct'));
    const ids = tok.encode('Grüße aus 世界 🙂, a long reply. '.repeat(200)).slice(0, 2000);
    assert.equal(ids.length, 2000);
    const { d, lengths } = counting(tok);
    const reply = new ReplyText(d);
    for (const t of ids) reply.push(t);
    assert.equal(reply.text, tok.decode(ids, true));
    assert.equal(lengths.length, 4000);
    assert.ok(Math.max(...lengths) <= 8, `a decode of ${Math.max(...lengths)} ids`);
  });
});

describe('clean_up_tokenization_spaces', () => {
  it('cleanUpSpaces is the library\'s cleanup', async () => {
    const tok = await llamaStyle('cleanup-check', LLAMA_DECODER, true);
    const rng = new Rng(3);
    for (let i = 0; i < 200; i++) {
      const ids = Array.from({ length: 1 + Math.floor(rng.next() * 40) }, () => Math.floor(rng.next() * tok.vocabSize));
      assert.equal(cleanUpSpaces(tok.decode(ids, true, false)), tok.decode(ids, true), JSON.stringify(ids));
    }
  });

  it('SpaceCleanup of a text in pieces joins to the cleanup of the whole text', () => {
    const rng = new Rng(4);
    const alphabet = [' ', ' ', ' ', '.', '?', '!', ',', "'", 'n', "n't", 't', 's', 'm', 've', 're', 'v', 'r', 'e', 'a', 'b'];
    for (let i = 0; i < 3000; i++) {
      const parts = Array.from({ length: Math.floor(rng.next() * 12) }, () =>
        Array.from({ length: Math.floor(rng.next() * 4) }, () => alphabet[Math.floor(rng.next() * alphabet.length)]).join(''),
      );
      const c = new SpaceCleanup();
      const out = parts.map((p) => c.push(p)).join('') + c.peek('');
      assert.equal(out, cleanUpSpaces(parts.join('')), JSON.stringify(parts));
    }
  });

  it('a reply streams with the cleanup: what is emitted is a prefix of the whole text, the rest a short held tail', async () => {
    const tok = await llamaStyle('cleanup', LLAMA_DECODER, true);
    assert.equal(tok.cleansUpSpaces, true);
    const rng = new Rng(5);
    for (let i = 0; i < 200; i++) {
      const ids = Array.from({ length: 1 + Math.floor(rng.next() * 60) }, () => Math.floor(rng.next() * tok.vocabSize));
      const { d, lengths } = counting(tok);
      const reply = new ReplyText(d);
      for (let n = 1; n <= ids.length; n++) {
        reply.push(ids[n - 1]);
        const full = tok.decode(ids.slice(0, n), true);
        assert.ok(full.startsWith(reply.text), `${JSON.stringify(reply.text)} is not a prefix of ${JSON.stringify(full)}`);
      }
      const full = tok.decode(ids, true);
      // Held: spaces and the beginning of a contraction after them, or an unfinished byte sequence.
      const held = full.slice(reply.text.length);
      assert.ok(held.replaceAll(' ', '').length <= 3 || held.endsWith('\uFFFD'), `${JSON.stringify(full)}: held ${JSON.stringify(held)}`);
      assert.ok(Math.max(...lengths) <= 24, `a decode of ${Math.max(...lengths)} ids`);
    }
  });
});
