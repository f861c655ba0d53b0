// The main job: runs a model directory holding a reference.safetensors end to end on whatever WebGPU
// adapter exists — image + prompt from its reference file, greedy generation with the KV cache — and
// prints the adapter, the generated ids and text, the max |Δlogit| against the third-party reference,
// and timings. `npm run demo` names the tiny SmolVLM (test/fixtures/smolvlm-tiny, random weights) in
// package.json; `npm run demo -- --model DIR` runs another directory.
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { Gpu } from './gpu/device.ts';
import { loadModelDir } from './models/registry.ts';
import { SafetensorsFile } from './io/safetensors.ts';
import { toFloat32, toInt32 } from './io/decode.ts';
import { TextTokenizer } from './text/tokenizer.ts';
import { greedy } from './generate.ts';
import { progressBar } from './progress.ts';

const { values } = parseArgs({
  options: { model: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  strict: true,
});
const USAGE = 'npm run demo [-- --model DIR]\n\nRuns DIR (npm run demo: test/fixtures/smolvlm-tiny) on the image and prompt of DIR/reference.safetensors.';
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
if (!values.model) {
  console.error(`demo: --model DIR is required\n${USAGE}`);
  process.exit(2);
}
const dir = values.model;

const t0 = performance.now();
const gpu = await Gpu.create();
try {
  console.log(gpu.describe());
  console.log(`model: ${dir}`);
  const model = await loadModelDir(gpu, dir, { onProgress: progressBar('loading') });
  const tLoad = performance.now();
  const tok = await TextTokenizer.load(dir);
  const ref = await SafetensorsFile.open(join(dir, 'reference.safetensors'));
  const read = async (n: string) => {
    const i = ref.tensors.get(n);
    if (!i) throw new Error(`${ref.path}: no tensor "${n}"`);
    return { info: i, bytes: await ref.read(n) };
  };
  const idsRef = await read('input_ids');
  const ids = toInt32(idsRef.info, idsRef.bytes);
  const pix = await read('pixel_values');
  const pixels = toFloat32(pix.info, pix.bytes);
  const refLogits = await read('logits');
  const wantLogits = toFloat32(refLogits.info, refLogits.bytes);
  const wantIds = ref.tensors.has('greedy_ids') ? toInt32(ref.tensors.get('greedy_ids')!, await ref.read('greedy_ids')) : null;
  await ref.close();

  console.log(`prompt: ${JSON.stringify(tok.decode([...ids]))}`);
  console.log(`image: pixel_values [${pix.info.shape.join(', ')}]`);

  // Full forward pass (logits at every position) against the reference logits.
  const tF = performance.now();
  const logits = await (await model.forward(ids, pixels, { logits: 'all' })).logits();
  const tFirst = performance.now() - tF;
  // A NaN counts as an infinite error, as in diff.ts: Math.max would carry it and `NaN > tolerance` is false.
  let maxDelta = logits.length === wantLogits.length ? 0 : Infinity;
  let nans = 0;
  for (let i = 0; i < Math.min(logits.length, wantLogits.length); i++) {
    const d = Math.abs(logits[i] - wantLogits[i]);
    if (Number.isNaN(d)) nans++;
    maxDelta = Math.max(maxDelta, Number.isNaN(d) ? Infinity : d);
  }
  const runs = 5;
  const tW = performance.now();
  for (let r = 0; r < runs; r++) {
    await (await model.forward(ids, pixels, { logits: 'all' })).token();
  }
  const forwardMs = (performance.now() - tW) / runs;

  // Greedy generation with the KV cache, streamed.
  const n = wantIds?.length ?? 16;
  const out: number[] = [];
  const tG = performance.now();
  let ttft = 0;
  process.stdout.write('generated: ');
  for await (const s of greedy(model, ids, pixels, { maxNewTokens: n, stopAtEos: false })) {
    if (out.length === 0) ttft = performance.now() - tG;
    out.push(s.token);
    process.stdout.write(`${s.token} `);
  }
  const genMs = performance.now() - tG;
  console.log();
  console.log(`text: ${JSON.stringify(tok.decode(out))}`);
  if (wantIds) console.log(`greedy ids vs reference: ${out.every((t, i) => t === wantIds[i]) ? 'identical' : `DIFFERENT (reference ${[...wantIds].join(' ')})`}`);
  const why = logits.length !== wantLogits.length ? ` (${logits.length} logits, reference has ${wantLogits.length})` : nans ? ` (${nans} NaN)` : '';
  console.log(`max |Δlogit| vs reference (all ${ids.length} positions): ${maxDelta.toExponential(2)}${why}`);
  console.log(
    `timings: load ${(tLoad - t0).toFixed(0)} ms, first forward ${tFirst.toFixed(1)} ms (compiles the plan), ` +
      `forward ${forwardMs.toFixed(1)} ms (${ids.length} tokens + image, warm), TTFT ${ttft.toFixed(1)} ms, ` +
      `decode ${((n - 1) / ((genMs - ttft) / 1000)).toFixed(1)} tok/s`,
  );
  model.dispose();
  if (!(maxDelta <= 1e-4) || (wantIds && !out.every((t, i) => t === wantIds[i]))) process.exitCode = 1;
} finally {
  gpu.destroy();
}
