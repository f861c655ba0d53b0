// Leak check over long runs, on the tiny SmolVLM: RSS and live GPU buffers across 2,000 decode steps,
// and across 20 rounds of load → generate → dispose. RSS is sampled after a forced GC (run with
// --expose-gc; npm run bench:leak does). Fails (exit 1) if RSS grows by 5% or more, or buffers leak.
//
//   npm run bench:leak [-- --steps N] [--rounds N] [--json FILE]
import { parseArgs } from 'node:util';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Gpu } from '../src/gpu/device.ts';
import { SmolVLM } from '../src/models/smolvlm.ts';
import { greedy } from '../src/generate.ts';
import { loadModel } from '../src/pipeline.ts';

const { values: args } = parseArgs({ options: { steps: { type: 'string' }, rounds: { type: 'string' }, json: { type: 'string' } } });
const steps = Number(args.steps ?? 2000);
const rounds = Number(args.rounds ?? 20);
const DIR = fileURLToPath(new URL('../test/fixtures/smolvlm-tiny', import.meta.url));
const gc = (globalThis as { gc?: () => void }).gc ?? (() => console.warn('run with --expose-gc for exact RSS figures'));
const rss = () => {
  gc();
  return process.memoryUsage().rss;
};
const mib = (n: number) => (n / 2 ** 20).toFixed(1);

const gpu = await Gpu.create();
let failed = false;
const result: Record<string, unknown> = { adapter: gpu.info.description };
try {
  // 1. Long generation.
  const model = await SmolVLM.load(gpu, DIR);
  let rss1 = 0;
  let buffers1 = 0;
  let n = 0;
  const t0 = performance.now();
  const samples: number[] = [];
  for await (const _ of greedy(model, [257, 85, 115, 306, 58, 32], null, { maxNewTokens: steps, stopAtEos: false })) {
    n++;
    if (n === 2) {
      rss1 = rss();
      buffers1 = gpu.pool.liveCount;
    }
    if (n % 250 === 0) samples.push(rss());
  }
  const rssEnd = rss();
  const growth = (rssEnd - rss1) / rss1;
  const buffersEnd = gpu.pool.liveCount;
  console.log(
    `${steps} decode steps in ${((performance.now() - t0) / 1000).toFixed(1)} s: RSS ${mib(rss1)} → ${mib(rssEnd)} MiB (${(100 * growth).toFixed(2)}%), ` +
      `live GPU buffers ${buffers1} → ${buffersEnd}; RSS every 250 steps: ${samples.map(mib).join(' ')}`,
  );
  if (growth >= 0.05 || buffersEnd !== buffers1) failed = true;
  model.dispose();
  result.decode = { steps, rssAfterFirstStep: rss1, rssEnd, growth, buffersAfterFirstStep: buffers1, buffersEnd, samples };

  // 2. Load → generate → dispose.
  const base = gpu.pool.liveCount;
  const roundRss: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const pipe = await loadModel(DIR, { gpu });
    await pipe.generate({ prompt: 'Hi', images: [`${DIR}/image.png`], maxNewTokens: 8 });
    pipe.dispose();
    roundRss.push(rss());
  }
  const g2 = (roundRss[roundRss.length - 1] - roundRss[1]) / roundRss[1];
  console.log(
    `${rounds} rounds of load → generate → dispose: live GPU buffers ${base} → ${gpu.pool.liveCount}; RSS ${roundRss.map(mib).join(' ')} MiB ` +
      `(round 2 → ${rounds}: ${(100 * g2).toFixed(2)}%)`,
  );
  if (gpu.pool.liveCount !== base || g2 >= 0.05) failed = true;
  result.rounds = { rounds, buffersBefore: base, buffersAfter: gpu.pool.liveCount, rss: roundRss, growth: g2 };
} finally {
  gpu.destroy();
}
if (args.json) writeFileSync(args.json, JSON.stringify(result, null, 2));
if (failed) {
  console.error('leak check FAILED');
  process.exitCode = 1;
}
