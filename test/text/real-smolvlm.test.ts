// The real SmolVLM-256M-Instruct processor files, end to end on the host side: a 1000×700 photo with
// image splitting becomes 3×4 tiles + the global image, and the chat prompt expands to exactly the
// token sequence the Idefics3 processor builds.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { loadImageProcessorConfig, preprocessImage } from '../../src/image/preprocess.ts';
import { loadChatTemplate, renderChat } from '../../src/text/chat.ts';
import { expandImages, loadImageSeqLen, loadImageTokens } from '../../src/text/prompt.ts';
import { TextTokenizer } from '../../src/text/tokenizer.ts';

const DIR = fileURLToPath(new URL('../fixtures/hf/SmolVLM-256M-Instruct/', import.meta.url));

it('a 1000×700 photo with splitting expands to 3×4 tiles + global, token by token', async () => {
  const photo = await sharp({ create: { width: 1000, height: 700, channels: 3, background: { r: 90, g: 140, b: 60 } } }).jpeg().toBuffer();
  const cfg = await loadImageProcessorConfig(DIR);
  const img = await preprocessImage(photo, cfg);
  // Resize: longest edge 2048 → 2048 × trunc(2048·700/1000) = 1433, made even → 1434. Vision-encoder
  // resize: 2048 stays (a multiple of 512); height ceil(1434/512)·512 = 1536 → rows 3, cols 4.
  assert.deepEqual({ rows: img.rows, cols: img.cols, tiles: img.tiles }, { rows: 3, cols: 4, tiles: 13 });
  assert.equal(img.pixelValues.length, 13 * 3 * 512 * 512);

  const chat = renderChat(await loadChatTemplate(DIR), [
    { role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'What is in this photo?' }] },
  ], { addGenerationPrompt: true });
  assert.equal(chat, '<|im_start|>User:<image>What is in this photo?<end_of_utterance>\nAssistant:');
  const seq = await loadImageSeqLen(DIR);
  assert.equal(seq, 64);
  const text = expandImages(chat, [img], seq, await loadImageTokens(DIR));
  const tok = await TextTokenizer.load(DIR);
  const ids = tok.encode(text);

  const id = (t: string) => tok.tokenId(t)!;
  const [IMG, FAKE, GLOBAL] = [id('<image>'), id('<fake_token_around_image>'), id('<global-img>')];
  assert.equal(IMG, 49190);
  // Expected sequence of special tokens, as Idefics3Processor._prompt_split_image lays them out:
  // per tile <fake><row_r_col_c><image>×64, a newline after each row, then \n<fake><global-img><image>×64<fake>.
  const specials = new Set([IMG, FAKE, GLOBAL, ...Array.from({ length: 36 }, (_, i) => id(`<row_${Math.floor(i / 6) + 1}_col_${(i % 6) + 1}>`))]);
  const got = ids.filter((t) => specials.has(t));
  const want: number[] = [];
  for (let r = 1; r <= 3; r++)
    for (let c = 1; c <= 4; c++) want.push(FAKE, id(`<row_${r}_col_${c}>`), ...Array(64).fill(IMG));
  want.push(FAKE, GLOBAL, ...Array(64).fill(IMG), FAKE);
  assert.deepEqual(got, want);
  assert.equal(ids.filter((t) => t === IMG).length, 13 * 64);
  // The text between blocks: one newline token after each row's last tile, a double newline before the global block.
  const rowEnds = [];
  for (let i = 1; i < ids.length; i++) if (ids[i - 1] === IMG && ids[i] !== IMG) rowEnds.push(tok.decode([ids[i]]));
  assert.deepEqual(rowEnds.slice(0, 13), ['<fake_token_around_image>', '<fake_token_around_image>', '<fake_token_around_image>', '\n', '<fake_token_around_image>', '<fake_token_around_image>', '<fake_token_around_image>', '\n', '<fake_token_around_image>', '<fake_token_around_image>', '<fake_token_around_image>', '\n\n', '<fake_token_around_image>']);
});
