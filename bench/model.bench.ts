// A checkpoint of real size: writes the random-weight SmolVLM-256M-shaped BF16 checkpoint
// (bench/make-checkpoint.ts: one ~513 MB file and a sharded copy), then for each layout loads it through
// the public API, answers a prompt about an image while streaming tokens, and records load time, peak
// RSS and GPU memory against the checkpoint size, the tiles and the time each took, and the generation
// timings. The image is a drawn 512×512 picture (one tile) unless --image names a photo; the processor
// splits it as configured unless --image-splitting says otherwise.
// Not part of CI: on lavapipe the 1024-patch ViT takes half a minute per tile.
//
//   npx tsx bench/model.bench.ts [--dir DIR (reuse a written checkpoint)] [--tokens N] [--dtype LIST of auto|f32|f16|bf16|q8|q4] [--json FILE]
//     [--layouts single,sharded] [--image FILE] [--image-splitting on|off]
import { parseArgs } from 'node:util';
import { existsSync, rmSync, statSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import sharp from 'sharp';
import { makeCheckpoint } from './make-checkpoint.ts';
import { loadModel } from '../src/pipeline.ts';
import { progressBar } from '../src/progress.ts';
import type { WeightDType } from '../src/models/storage.ts';
import type { StepProgress } from '../src/models/vlm.ts';

const { values: args } = parseArgs({
  options: {
    dir: { type: 'string' },
    tokens: { type: 'string' },
    dtype: { type: 'string' },
    json: { type: 'string' },
    layouts: { type: 'string' },
    keep: { type: 'boolean' },
    image: { type: 'string' },
    'image-splitting': { type: 'string' },
  },
  strict: true,
});

const mib = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;
const dir = args.dir ?? join(tmpdir(), 'smolvlm-256m-random');
const made = !args.dir || !existsSync(join(dir, 'single', 'model.safetensors'));
if (made) await makeCheckpoint(dir);
const layouts = (args.layouts ?? 'single,sharded').split(',');
const tokens = Number(args.tokens ?? 4);
// Each storage in the list is loaded in turn (e.g. --dtype auto,q8,q4): GPU bytes of the weights against the checkpoint's.
const dtypes = (args.dtype ?? 'auto').split(',') as WeightDType[];

const splitting = args['image-splitting'];
if (splitting !== undefined && splitting !== 'on' && splitting !== 'off') throw new Error(`--image-splitting expects on or off, got "${splitting}"`);
const imageSplitting = splitting === undefined ? undefined : splitting === 'on';
// A photo, or a drawn 512×512 picture (the tile size: one tile unless the processor upscales and splits it).
const image = args.image ?? await sharp({ create: { width: 512, height: 512, channels: 3, background: { r: 40, g: 120, b: 200 } } })
  .composite([{ input: Buffer.from('<svg width="512" height="512"><circle cx="256" cy="256" r="120" fill="yellow"/></svg>'), top: 0, left: 0 }])
  .png()
  .toBuffer();

const results = [];
for (const dtype of dtypes) for (const layout of layouts) {
  const modelDir = join(dir, layout);
  const ckptBytes = readdirSync(modelDir)
    .filter((f) => f.endsWith('.safetensors'))
    .reduce((a, f) => a + statSync(join(modelDir, f)).size, 0);
  global.gc?.();
  const rss0 = process.memoryUsage().rss;
  let peakRss = rss0;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 20);
  const t0 = performance.now();
  const pipe = await loadModel(modelDir, { dtype, imageSplitting, onProgress: progressBar(`loading ${layout}`) });
  const loadS = (performance.now() - t0) / 1000;
  const peakLoadRss = Math.max(peakRss, process.memoryUsage().rss);
  const gpuBytes = pipe.model.gpu.pool.liveBytes;
  const weightBytes = pipe.model.store.gpuBytes;
  console.log(`\n${layout}, dtype ${dtype}: ${pipe.model.gpu.describe().split('\n')[0]}`);
  console.log(
    `checkpoint ${mib(ckptBytes)} BF16 → weights ${mib(weightBytes)} on the GPU (${(weightBytes / ckptBytes).toFixed(3)}× the checkpoint), ` +
      `${mib(gpuBytes)} in all; load ${loadS.toFixed(1)} s, peak RSS +${mib(peakLoadRss - rss0)} over ${mib(rss0)}`,
  );
  process.stdout.write('streamed: ');
  // Each tile's time: the gap between successive image progress events.
  const tileMs: number[] = [];
  let lastImageMs = 0;
  const onProgress = (p: StepProgress) => {
    if (p.stage !== 'image') return;
    tileMs.push(p.elapsedMs - lastImageMs);
    lastImageMs = p.elapsedMs;
    process.stdout.write(`(tile ${p.done}/${p.total} ${(p.elapsedMs / 1000).toFixed(1)} s) `);
  };
  const gen = pipe.generate({ prompt: 'What is in the image?', images: [image], maxNewTokens: tokens, onProgress });
  for await (const c of gen) process.stdout.write(`[${c.token}]`);
  const r = await gen;
  clearInterval(sampler);
  const t = r.timings;
  const tiles = tileMs.length;
  console.log(
    `\n${tiles} tile(s), ${(tileMs.reduce((a, b) => a + b, 0) / tiles / 1000).toFixed(1)} s each; image encode ${t.imageEncodeMs.toFixed(0)} ms, TTFT ${t.ttftMs.toFixed(0)} ms, ` +
      `prefill ${t.prefillTokensPerSecond.toFixed(1)} tok/s (${t.promptTokens} tokens), ` +
      `decode ${t.decodeTokensPerSecond.toFixed(2)} tok/s (${t.newTokens} tokens); peak RSS overall +${mib(peakRss - rss0)}`,
  );
  results.push({
    layout,
    image: args.image ? basename(args.image) : 'drawn 512×512',
    imageSplitting: imageSplitting ?? 'as configured',
    checkpointBytes: ckptBytes,
    gpuBytes,
    weightBytes,
    weightToCheckpoint: weightBytes / ckptBytes,
    dtype,
    loadSeconds: loadS,
    rssBefore: rss0,
    peakRssLoad: peakLoadRss,
    peakRss,
    tiles,
    tileMs,
    timings: t,
    tokens: r.tokens,
  });
  pipe.dispose();
}
if (args.json) writeFileSync(args.json, JSON.stringify({ date: new Date().toISOString(), results }, null, 2));
if (made && !args.keep) rmSync(dir, { recursive: true, force: true });
