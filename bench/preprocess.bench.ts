// Image preprocessing, JavaScript against the GPU kernels, beside the image encode it precedes. A real JPEG made
// into a 512×512 and a 1920×1080 photo with sharp (cover crop, quality 90), decoded once (sharp, timed apart:
// both paths start from the decoded pixels), then for each processor:
//   - the GPU output is read back and checked equal to the JavaScript one (max |Δ| ≤ 1e-6) before anything is timed;
//   - JS: preprocessImage() and the upload of its pixel values into the encoder's input buffer;
//   - GPU: upload of the decoded pixels, the resize kernels, the tiles written into that buffer;
//   each until the queue is idle, interleaved, median of --reps runs: wall time, and this process's CPU time (on
//   lavapipe the "device" is threads of this process, so CPU time counts its work too, and it is steadier than wall
//   time on a shared machine); the first GPU run of a config is reported apart (it allocates the planes' buffers,
//   pooled after).
// Processors at real size (SmolVLM-256M's Idefics3 config, LLaVA-1.5's CLIP, LLaVA-v1.6's anyres), and the tiny
// fixture models' own processors with their vision encoder timed on the same photos (GPU timestamps of the vision
// section): encoding real-size tiles on lavapipe takes 35-45 s each (bench/results/lavapipe-model-photo.json), too
// slow to repeat here, so the preprocessing/encode ratios are the tiny models'.
//
//   npm run bench:preprocess [-- --photo FILE.jpg] [--reps N] [--json FILE]
import { parseArgs } from 'node:util';
import { existsSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { Gpu } from '../src/gpu/device.ts';
import { decode, type Pixels } from '../src/image/decode.ts';
import { DeviceImage } from '../src/image/gpu-preprocess.ts';
import { loadAnyImageProcessorConfig, parseAnyImageProcessorConfig, preprocessImage, type AnyImageProcessorConfig } from '../src/image/preprocess.ts';
import { loadModel } from '../src/pipeline.ts';
import { IMAGE_PIPELINES } from '../src/ops/resample.ts';

const { values: args } = parseArgs({
  options: {
    photo: { type: 'string' },
    reps: { type: 'string' },
    json: { type: 'string' },
  },
  strict: true,
});
const DEFAULT_PHOTO = '/root/.rustup/toolchains/stable-x86_64-unknown-linux-gnu/share/doc/rust/html/embedded-book/assets/f3.jpg';
const photo = args.photo ?? DEFAULT_PHOTO;
if (!existsSync(photo)) throw new Error(`${photo}: no such photo (give one with --photo FILE.jpg)`);
const reps = Number(args.reps ?? 5);
if (!(Number.isInteger(reps) && reps >= 1)) throw new Error(`--reps expects a positive integer, got "${args.reps}"`);
const FIXTURES = fileURLToPath(new URL('../test/fixtures/', import.meta.url));

const REAL: [string, AnyImageProcessorConfig][] = [
  ['SmolVLM-256M (Idefics3, 2048 → 512² tiles)', await loadAnyImageProcessorConfig(join(FIXTURES, 'hf', 'SmolVLM-256M-Instruct'))],
  ['LLaVA-1.5 (CLIP 336, resize + crop)', parseAnyImageProcessorConfig({ image_processor_type: 'CLIPImageProcessor', size: { shortest_edge: 336 }, crop_size: { height: 336, width: 336 }, resample: 3 }, 'llava-1.5')],
  ['LLaVA-v1.6 (anyres, 336² crops)', parseAnyImageProcessorConfig({ image_processor_type: 'LlavaNextImageProcessor', size: { shortest_edge: 336 }, crop_size: { height: 336, width: 336 }, resample: 3 }, 'llava-v1.6')],
];
const TINY = ['smolvlm-tiny', 'llava-tiny', 'llava-next-tiny'];

const gpu = await Gpu.create();
console.log(`${gpu.describe().split('\n')[0]}; photo ${basename(photo)}, ${reps} runs each (median)`);
await gpu.pipelines.prepare(IMAGE_PIPELINES);

const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const cpuMs = () => {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1000;
};
const idle = () => gpu.device.queue.onSubmittedWorkDone();

/** JS and GPU preprocessing of `img` under `cfg`, checked equal first; times in ms. */
async function compare(img: Pixels, cfg: AnyImageProcessorConfig) {
  const js = await preprocessImage(img, cfg);
  const dst = gpu.pool.create(js.pixelValues.byteLength, undefined, 'encoder input');
  try {
    gpu.device.queue.writeBuffer(dst, 0, js.pixelValues);
    await idle();
    // Validation: the device's tiles read back against the JavaScript ones.
    const t0 = performance.now();
    const first = await DeviceImage.fromPixels(gpu, img, cfg);
    first.write(dst, 0, 0, first.tiles);
    await idle();
    const gpuFirstMs = performance.now() - t0;
    const got = await gpu.pool.readF32(dst, js.pixelValues.length);
    first.dispose();
    let maxDiff = 0;
    for (let i = 0; i < got.length; i++) maxDiff = Math.max(maxDiff, Math.abs(got[i] - js.pixelValues[i]));
    if (!(maxDiff <= 1e-6)) throw new Error(`GPU preprocessing differs from JavaScript: max |Δ| ${maxDiff}`);
    const jsMs: number[] = [];
    const gpuMs: number[] = [];
    const jsCpu: number[] = [];
    const gpuCpu: number[] = [];
    for (let r = 0; r < reps; r++) {
      let t = performance.now();
      let c = cpuMs();
      const out = await preprocessImage(img, cfg);
      gpu.device.queue.writeBuffer(dst, 0, out.pixelValues);
      await idle();
      jsMs.push(performance.now() - t);
      jsCpu.push(cpuMs() - c);
      t = performance.now();
      c = cpuMs();
      const dev = await DeviceImage.fromPixels(gpu, img, cfg);
      dev.write(dst, 0, 0, dev.tiles);
      await idle();
      gpuMs.push(performance.now() - t);
      gpuCpu.push(cpuMs() - c);
      dev.dispose();
    }
    return {
      tiles: js.tiles,
      tile: `${js.height}×${js.width}`,
      maxDiff,
      jsMs: median(jsMs),
      gpuMs: median(gpuMs),
      jsCpuMs: median(jsCpu),
      gpuCpuMs: median(gpuCpu),
      gpuFirstMs,
      jsRuns: jsMs,
      gpuRuns: gpuMs,
    };
  } finally {
    gpu.pool.destroy(dst);
  }
}

const results: Record<string, unknown>[] = [];
const row = (label: string, r: Awaited<ReturnType<typeof compare>>, extra = '') =>
  console.log(
    `  ${label.padEnd(44)} ${String(r.tiles).padStart(2)} × ${r.tile.padEnd(7)} JS ${r.jsMs.toFixed(1).padStart(7)} ms  GPU ${r.gpuMs.toFixed(1).padStart(7)} ms ` +
      `(first ${r.gpuFirstMs.toFixed(0)})  JS/GPU ${(r.jsMs / r.gpuMs).toFixed(2)}×, CPU time ${r.jsCpuMs.toFixed(0)}/${r.gpuCpuMs.toFixed(0)} ms = ${(r.jsCpuMs / r.gpuCpuMs).toFixed(2)}×${extra}`,
  );

const tiny = await Promise.all(TINY.map((m) => loadModel(join(FIXTURES, m), { gpu, preprocess: 'gpu' })));
try {
  for (const [w, h] of [[512, 512], [1920, 1080]]) {
    const jpeg = await sharp(photo).resize(w, h, { fit: 'cover' }).jpeg({ quality: 90 }).toBuffer();
    const t0 = performance.now();
    const img = await decode(jpeg, Infinity);
    const decodeMs = performance.now() - t0;
    console.log(`\n${w}×${h} photo (JPEG ${(jpeg.length / 1024).toFixed(0)} KiB; sharp decode ${decodeMs.toFixed(1)} ms, not in the figures below)`);
    console.log(' real-size processors:');
    for (const [label, cfg] of REAL) {
      const r = await compare(img, cfg);
      row(label, r);
      results.push({ photo: `${w}x${h}`, processor: label, decodeMs, ...r });
    }
    console.log(' tiny fixture models (their processors; image encode = vision section, GPU timestamps):');
    for (const [i, pipe] of tiny.entries()) {
      const r = await compare(img, pipe.imageConfig);
      // The encode: the model's vision section on these tiles (after a first run that compiles the plan).
      const p = await pipe.prepare({ prompt: 'What is in the image?', images: [jpeg] });
      let encodeMs = NaN;
      try {
        for (let k = 0; k < 2; k++) {
          const times: number[] = [];
          for (let q = 0; q < reps; q++) {
            await pipe.model.forward(p.ids, p.images, { profile: (s) => times.push(s.get('vision') ?? s.get('all') ?? NaN) });
          }
          encodeMs = median(times);
        }
      } finally {
        p.dispose();
      }
      row(TINY[i], r, `  encode ${encodeMs.toFixed(1)} ms: JS ${(r.jsMs / encodeMs).toFixed(2)}×, GPU ${(r.gpuMs / encodeMs).toFixed(2)}× of it`);
      results.push({ photo: `${w}x${h}`, processor: TINY[i], decodeMs, ...r, encodeMs });
    }
  }
} finally {
  for (const p of tiny) p.dispose();
  gpu.destroy();
}

if (args.json) {
  const command = ['npm run bench:preprocess --', ...process.argv.slice(2).map((a) => (a === photo ? basename(photo) : a))].join(' ');
  writeFileSync(args.json, JSON.stringify({ date: new Date().toISOString(), adapter: gpu.info.description || gpu.info.device, photo: basename(photo), reps, command, results }, null, 2) + '\n');
}
