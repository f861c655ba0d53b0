// Leak check over long runs, on the tiny SmolVLM: RSS, JS heap and live GPU buffers across 2,000 decode
// steps, and across 20 rounds of load → generate → dispose. Memory is sampled after a forced GC (run
// with --expose-gc; npm run bench:leak does). Fails (exit 1) if GPU buffers leak, the JS heap grows by
// more than 1 MiB, or RSS grows by 5% or more after warm-up.
//
// Warm-up: on lavapipe RSS rises by ~50 MiB over the first few hundred steps and then stays flat
// (measured to 4,000 steps, ±6 MiB) while the JS heap stays at ~7 MiB: native memory of the driver
// (its compiled kernels and command pools) reaching steady state, not a per-step leak. So RSS growth is
// judged from step 250 on, and the growth from step 2 is printed beside it.
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
const WARM = 250;
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
  let rssWarm = 0;
  let heap1 = 0;
  let buffers1 = 0;
  let n = 0;
  const t0 = performance.now();
  const samples: number[] = [];
  for await (const _ of greedy(model, [257, 85, 115, 306, 58, 32], null, { maxNewTokens: steps, stopAtEos: false })) {
    n++;
    if (n === 2) {
      rss1 = rss();
      heap1 = process.memoryUsage().heapUsed;
      buffers1 = gpu.pool.liveCount;
    }
    if (n === Math.min(WARM, steps)) rssWarm = rss();
    if (n % 250 === 0) samples.push(rss());
  }
  const rssEnd = rss();
  const heapEnd = process.memoryUsage().heapUsed;
  const growthFromStep2 = (rssEnd - rss1) / rss1;
  const growth = (rssEnd - rssWarm) / rssWarm;
  const buffersEnd = gpu.pool.liveCount;
  console.log(
    `${steps} decode steps in ${((performance.now() - t0) / 1000).toFixed(1)} s: RSS step 2 ${mib(rss1)}, step ${WARM} ${mib(rssWarm)}, end ${mib(rssEnd)} MiB ` +
      `(${(100 * growth).toFixed(2)}% after warm-up, ${(100 * growthFromStep2).toFixed(2)}% from step 2); JS heap ${mib(heap1)} → ${mib(heapEnd)} MiB; ` +
      `live GPU buffers ${buffers1} → ${buffersEnd}; RSS every 250 steps: ${samples.map(mib).join(' ')}`,
  );
  if (Math.abs(growth) >= 0.05 || heapEnd - heap1 > 2 ** 20 || buffersEnd !== buffers1) failed = true;
  model.dispose();
  result.decode = { steps, rssStep2: rss1, rssWarm, rssEnd, growth, growthFromStep2, heapStep2: heap1, heapEnd, buffersAfterFirstStep: buffers1, buffersEnd, samples };

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
