// LLaVA-NeXT at real size: a sparse checkpoint (the real header, zeros for data) at llava-hf's published
// llava-v1.6-mistral-7b-hf config (bench/configs/llava-v1.6-mistral-7b.json: CLIP ViT-L/14-336, the
// GELU projector, image_newline, Mistral-7B) with its published image processor settings, loaded
// through the real loader; one 672×672 picture through the real LLaVA-NeXT processor; then the token
// count (transformers' formula gives 576 base + 48·49 grid = 2,928 for a square 672² image), load, image
// encode (each crop timed), prefill, decode tok/s and GPU bytes.
// Not part of CI. On a CPU adapter the full 32-layer decoder does not fit in memory as f32: --layers N
// keeps the first N decoder layers (the vision tower is always whole).
//
//   npx tsx bench/llava-next.bench.ts [--layers N] [--tokens N] [--dtype auto|f16|f32] [--size WxH] [--json FILE]
import { parseArgs } from 'node:util';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { Gpu, fmtBytes } from '../src/gpu/device.ts';
import { parseLlavaNextConfig } from '../src/models/config.ts';
import { LlavaNext } from '../src/models/llava-next.ts';
import { generateTokens } from '../src/generate.ts';
import { imageLayout } from '../src/models/family.ts';
import { parseAnyImageProcessorConfig, preprocessImage } from '../src/image/preprocess.ts';
import type { WeightDType } from '../src/models/storage.ts';
import { llavaTensors, writeSparseCheckpoint } from './make-checkpoint.ts';
import { readJsonObject } from '../src/io/model-dir.ts';

const { values: args } = parseArgs({
  options: {
    layers: { type: 'string' },
    tokens: { type: 'string' },
    dtype: { type: 'string' },
    size: { type: 'string' },
    json: { type: 'string' },
  },
  strict: true,
});
const configFile = fileURLToPath(new URL('./configs/llava-v1.6-mistral-7b.json', import.meta.url));
const published = await readJsonObject(configFile);
const full = parseLlavaNextConfig(published, configFile);
const layers = Number(args.layers ?? full.text_config.num_hidden_layers);
if (!(Number.isInteger(layers) && layers >= 1 && layers <= full.text_config.num_hidden_layers)) throw new Error(`--layers must be 1..${full.text_config.num_hidden_layers}`);
const tokens = Number(args.tokens ?? 4);
const dtype = (args.dtype ?? 'auto') as WeightDType;
const [W, H] = (args.size ?? '672x672').split('x').map(Number);
const config = { ...published, text_config: { ...(published.text_config as Record<string, unknown>), num_hidden_layers: layers } };

// The published processor settings (LlavaNextImageProcessor: CLIP's, 336 crops, the same pinpoints).
const processorConfig = {
  image_processor_type: 'LlavaNextImageProcessor',
  crop_size: { height: 336, width: 336 },
  size: { shortest_edge: 336 },
  image_grid_pinpoints: full.image_grid_pinpoints,
  do_pad: true,
  resample: 3,
  image_mean: [0.48145466, 0.4578275, 0.40821073],
  image_std: [0.26862954, 0.26130258, 0.27577711],
};

const dir = mkdtempSync(join(tmpdir(), 'llava-next-bench-'));
const gpu = await Gpu.create();
try {
  console.log(gpu.describe().split('\n')[0]);
  const c = parseLlavaNextConfig(config, configFile);
  const fileBytes = await writeSparseCheckpoint(join(dir, 'model.safetensors'), llavaTensors(c), 'BF16');
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  const t0 = performance.now();
  const model = await LlavaNext.load(gpu, dir, { dtype });
  const loadMs = performance.now() - t0;
  const gpuBytes = gpu.pool.liveBytes;
  console.log(`checkpoint ${fmtBytes(fileBytes)} (BF16, ${layers} of ${full.text_config.num_hidden_layers} decoder layers) → GPU ${fmtBytes(gpuBytes)}; load ${(loadMs / 1000).toFixed(1)} s`);

  const picture = await sharp({ create: { width: W, height: H, channels: 3, background: { r: 90, g: 140, b: 200 } } }).png().toBuffer();
  const tp = performance.now();
  const pre = await preprocessImage(picture, parseAnyImageProcessorConfig(processorConfig, 'published preprocessor_config.json'));
  const preprocessMs = performance.now() - tp;
  const layout = imageLayout(pre);
  const imageTokens = model.placeholders(layout);
  console.log(`${W}×${H}: grid ${layout.rows}×${layout.cols} + base = ${layout.tiles} crops, ${imageTokens} image tokens; preprocessing ${preprocessMs.toFixed(0)} ms`);
  const ids = [1, 733, 16289, 28793, ...Array(imageTokens).fill(c.image_token_index), 13, 733, 28748, 16289, 28793]; // [INST] <image>\n … [/INST]
  const cropMs: number[] = [];
  let last = 0;
  let sections = new Map<string, number>();
  let prefillMs = 0;
  const times: number[] = [];
  const tg = performance.now();
  for await (const s of generateTokens(model, ids, { pixels: pre.pixelValues, images: [layout] }, {
    maxNewTokens: tokens,
    stopAtEos: false,
    limits: { visionTiles: 1 },
    onProgress: (p) => {
      if (p.stage === 'image') {
        cropMs.push(p.elapsedMs - last);
        last = p.elapsedMs;
        process.stdout.write(`crop ${p.done}/${p.total} ${(p.elapsedMs / 1000).toFixed(1)} s\n`);
      } else process.stdout.write(`prefill ${p.done}/${p.total} tokens ${(p.elapsedMs / 1000).toFixed(1)} s\n`);
    },
    onPrefill: (m) => (sections = m),
  })) {
    times.push(performance.now() - tg);
    if (times.length === 1) prefillMs = times[0];
  }
  const decodeTokS = times.length > 1 ? (times.length - 1) / ((times[times.length - 1] - times[0]) / 1000) : 0;
  const out = {
    date: new Date().toISOString(),
    adapter: gpu.info.description || gpu.info.device,
    config: 'bench/configs/llava-v1.6-mistral-7b.json',
    decoderLayers: layers,
    dtype,
    checkpointBytes: fileBytes,
    gpuBytes,
    loadMs,
    image: `${W}x${H}`,
    crops: layout.tiles,
    grid: [layout.rows, layout.cols],
    imageTokens,
    promptTokens: ids.length,
    preprocessMs,
    cropMs,
    imageEncodeMs: sections.get('vision') ?? NaN,
    decoderPrefillMs: sections.get('decoder') ?? NaN,
    ttftMs: prefillMs,
    decodeTokensPerSecond: decodeTokS,
  };
  console.log(
    `image encode ${(out.imageEncodeMs / 1000).toFixed(1)} s (${layout.tiles} crops), decoder prefill ${(out.decoderPrefillMs / 1000).toFixed(1)} s for ${ids.length} tokens, ` +
      `TTFT ${(prefillMs / 1000).toFixed(1)} s, decode ${decodeTokS.toFixed(2)} tok/s`,
  );
  if (args.json) writeFileSync(args.json, JSON.stringify(out, null, 2));
  model.dispose();
} finally {
  gpu.destroy();
  rmSync(dir, { recursive: true, force: true });
}
