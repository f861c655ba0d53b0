#!/usr/bin/env node
// The webgpu-vlm command line: `run` answers a prompt about an image with streamed text; `diff` checks a
// model against a reference file; `info` shows the adapter.
import { parseArgs } from 'node:util';
import { Gpu } from './gpu/device.ts';
import { loadModelDir } from './models/registry.ts';
import { diffReference, formatDiff } from './diff.ts';
import { progressBar, stepProgress } from './progress.ts';
import type { StepProgress } from './models/vlm.ts';

const USAGE = `webgpu-vlm — vision-language models on WebGPU

Usage:
  webgpu-vlm run --model DIR|ORG/NAME [--image FILE ...] --prompt "..." [options]
  webgpu-vlm diff --model DIR --reference FILE.safetensors [--atol X] [--tol NAME=X ...] [--json]
  webgpu-vlm info
  webgpu-vlm COMMAND --help

Commands:
  run    Generate a reply to a prompt about zero or more images, streamed to stdout.
  diff   Run the model in DIR on the inputs of a reference file (pixel_values, input_ids) and compare
         every tensor of that file it knows (intermediates, logits, greedy_ids, greedy_logits).
  info   Print the WebGPU adapter, its features and limits.`;

const RUN_USAGE = `webgpu-vlm run --model DIR|ORG/NAME [--image FILE ...] --prompt "..." [options]

Loads the model (a directory, or a Hub id found offline in the Hugging Face cache), renders the chat
template with the images and the prompt, and streams the reply to stdout. Load progress and a final
timings line go to stderr. Ctrl-C stops the reply: the line is ended, the timings so far are printed
(finish reason "abort") and the exit code is 130; a second Ctrl-C quits at once.

Options:
  --model DIR|ID         model directory or Hugging Face id (HF_HUB_CACHE / HF_HOME / ~/.cache/huggingface/hub)
  --image FILE           an image (PNG, JPEG, WebP, GIF, TIFF, ...); repeat for several
  --prompt TEXT          the question
  --max-new-tokens N     default 128
  --temperature T        0 = greedy (default); > 0 samples
  --top-k K              sample among the K most likely tokens
  --top-p P              nucleus sampling
  --seed N               sampling seed (default 0)
  --stop TEXT            stop when the reply contains TEXT; repeatable
  --dtype auto|f32|f16   weight storage (default auto)
  --image-splitting on|off  Idefics3/SmolVLM: split large images into tiles (default: the processor's, on);
                         off encodes each image as one tile, much faster on a CPU adapter
  --image-size N         Idefics3/SmolVLM: resize the longest edge to N before splitting (size.longest_edge)
  --kernels gpu|cpu      kernel set (default: the one the adapter suits; cpu = for lavapipe-like drivers)
  --json                 print one JSON object (text, tokens, timings) instead of streaming
  -h, --help             this help`;

const DIFF_USAGE = `webgpu-vlm diff --model DIR --reference FILE.safetensors [options]

Runs the model on the reference file's pixel_values and input_ids, compares every tensor of the file
whose name the model knows, prints max |Δ| and max relative error per tensor, and exits 1 if any tensor
is beyond its tolerance (greedy_ids must match exactly).

Options:
  --model DIR          model directory (config.json + model.safetensors or a sharded index)
  --reference FILE     reference .safetensors (pixel_values, input_ids, and tensors to compare)
  --atol X             max |Δ| allowed for every float tensor. Default by weight dtype: 1e-4 for
                       F32, F16 and BF16 alike, since this runtime computes in f32 with weights
                       upcast exactly (about 50× the f32 noise floor of the tiny fixtures)
  --tol NAME=X         per-tensor tolerance, repeatable (e.g. --tol logits=1e-3)
  --prefill-tokens N   run the prompt in chunks of at most N tokens (checks chunked prefill)
  --vision-tiles N     run the vision encoder on at most N tiles per submission
  --json               print the result as JSON
  -h, --help           this help`;

export const DEFAULT_ATOL: Record<string, number> = { F32: 1e-4, F16: 1e-4, BF16: 1e-4 };

class UsageError extends Error {}

function fail(msg: string, usage: string): never {
  throw new UsageError(`${msg}\n\n${usage}`);
}

async function diff(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' },
      reference: { type: 'string' },
      atol: { type: 'string' },
      tol: { type: 'string', multiple: true },
      'prefill-tokens': { type: 'string' },
      'vision-tiles': { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    console.log(DIFF_USAGE);
    return 0;
  }
  if (!values.model) fail('diff: --model DIR is required', DIFF_USAGE);
  if (!values.reference) fail('diff: --reference FILE is required', DIFF_USAGE);
  const perTensor = new Map<string, number>();
  for (const t of values.tol ?? []) {
    const m = /^([\w.]+)=([0-9.eE+-]+)$/.exec(t);
    if (!m || !(Number(m[2]) >= 0)) fail(`diff: --tol expects NAME=NUMBER, got "${t}"`, DIFF_USAGE);
    perTensor.set(m[1], Number(m[2]));
  }
  let atol: number | undefined;
  if (values.atol !== undefined) {
    atol = Number(values.atol);
    if (!(atol >= 0)) fail(`diff: --atol expects a non-negative number, got "${values.atol}"`, DIFF_USAGE);
  }
  const positive = (name: string, v: string | undefined) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!(Number.isInteger(n) && n >= 1)) fail(`diff: ${name} expects a positive integer, got "${v}"`, DIFF_USAGE);
    return n;
  };
  const limits = { prefillTokens: positive('--prefill-tokens', values['prefill-tokens']), visionTiles: positive('--vision-tiles', values['vision-tiles']) };
  const gpu = await Gpu.create();
  try {
    const log = (s: string) => process.stderr.write(`${s}\n`);
    log(gpu.describe().split('\n')[0]);
    const model = await loadModelDir(gpu, values.model, { onProgress: progressBar('loading') });
    try {
      const dtype = [...model.store.ckpt.tensors.values()][0]?.dtype ?? 'F32';
      const base = atol ?? DEFAULT_ATOL[dtype] ?? 1e-4;
      const result = await diffReference(model, values.reference, (n) => perTensor.get(n) ?? base, log, limits);
      if (values.json) console.log(JSON.stringify(result, (_, v) => (v === Infinity ? 'Infinity' : v), 2));
      else console.log(formatDiff(result));
      return result.ok ? 0 : 1;
    } finally {
      model.dispose();
    }
  } finally {
    gpu.destroy();
  }
}

function numberOpt(name: string, v: string | undefined, check: (n: number) => boolean, what: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!check(n)) fail(`run: ${name} expects ${what}, got "${v}"`, RUN_USAGE);
  return n;
}

async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' },
      image: { type: 'string', multiple: true },
      prompt: { type: 'string' },
      'max-new-tokens': { type: 'string' },
      temperature: { type: 'string' },
      'top-k': { type: 'string' },
      'top-p': { type: 'string' },
      seed: { type: 'string' },
      stop: { type: 'string', multiple: true },
      dtype: { type: 'string' },
      kernels: { type: 'string' },
      'image-splitting': { type: 'string' },
      'image-size': { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    console.log(RUN_USAGE);
    return 0;
  }
  if (!values.model) fail('run: --model DIR|ID is required', RUN_USAGE);
  if (values.prompt === undefined) fail('run: --prompt TEXT is required', RUN_USAGE);
  const dtype = values.dtype ?? 'auto';
  if (dtype !== 'auto' && dtype !== 'f32' && dtype !== 'f16') fail(`run: --dtype expects auto, f32 or f16, got "${dtype}"`, RUN_USAGE);
  const kernels = values.kernels;
  if (kernels !== undefined && kernels !== 'gpu' && kernels !== 'cpu') fail(`run: --kernels expects gpu or cpu, got "${kernels}"`, RUN_USAGE);
  const maxNewTokens = numberOpt('--max-new-tokens', values['max-new-tokens'], (n) => Number.isInteger(n) && n > 0, 'a positive integer') ?? 128;
  const temperature = numberOpt('--temperature', values.temperature, (n) => n >= 0, 'a number >= 0');
  const topK = numberOpt('--top-k', values['top-k'], (n) => Number.isInteger(n) && n > 0, 'a positive integer');
  const topP = numberOpt('--top-p', values['top-p'], (n) => n > 0 && n <= 1, 'a number in (0, 1]');
  const seed = numberOpt('--seed', values.seed, (n) => Number.isInteger(n), 'an integer');
  const splitting = values['image-splitting'];
  if (splitting !== undefined && splitting !== 'on' && splitting !== 'off') fail(`run: --image-splitting expects on or off, got "${splitting}"`, RUN_USAGE);
  const imageSplitting = splitting === undefined ? undefined : splitting === 'on';
  const imageSize = numberOpt('--image-size', values['image-size'], (n) => Number.isInteger(n) && n >= 1 && n <= 4096, 'an integer in [1, 4096]');
  if (values.stop?.includes('')) fail('run: --stop expects non-empty text (an empty one would end the reply before it starts)', RUN_USAGE);
  // Images are checked (exist, are files, have a readable header within the pixel limit) before the model
  // loads, which can take minutes: a mistyped path should not cost that.
  const images = values.image ?? [];
  if (images.length) {
    const { checkImage } = await import('./image/preprocess.ts');
    for (const file of images) await checkImage(file);
  }
  const { loadModel } = await import('./pipeline.ts');
  const pipe = await loadModel(values.model, { dtype, kernels, imageSplitting, imageSize, onProgress: progressBar('loading') });
  // Ctrl-C stops the generation and the reply so far is reported as usual; a second Ctrl-C quits at once.
  const ctl = new AbortController();
  const onSigint = () => {
    if (ctl.signal.aborted) process.exit(130);
    ctl.abort();
  };
  process.on('SIGINT', onSigint);
  try {
    if (!values.json) process.stderr.write(`${pipe.model.gpu.describe().split('\n')[0]}\n`);
    const progress = values.json ? undefined : stepProgress();
    let noted = false;
    const onProgress = (p: StepProgress) => {
      progress?.(p);
      // Said once, when the first tile's time shows that the image encoding will take minutes.
      if (p.stage === 'image' && p.done < p.total && !noted && (p.elapsedMs / p.done) * p.total >= 60_000) {
        noted = true;
        const cfg = pipe.imageConfig;
        const avoid = cfg.kind !== 'clip' && cfg.doImageSplitting ? '; --image-splitting off encodes each image as one tile' : '';
        const perTile = p.elapsedMs / p.done;
        process.stderr.write(
          `note: ${p.total} image tiles at ${(perTile / 1000).toFixed(0)} s each take about ${Math.ceil((perTile * p.total) / 60_000)} min ` +
            `on this adapter (${pipe.model.gpu.info.description || pipe.model.gpu.info.device})${avoid}\n`,
        );
      }
    };
    const gen = pipe.generate({
      prompt: values.prompt,
      images,
      maxNewTokens,
      temperature,
      topK,
      topP,
      seed,
      stop: values.stop,
      signal: ctl.signal,
      onProgress,
    });
    if (!values.json) for await (const chunk of gen) process.stdout.write(chunk.text);
    const r = await gen;
    const t = r.timings;
    if (values.json) {
      console.log(JSON.stringify({ text: r.text, tokens: r.tokens, finishReason: r.finishReason, timings: t, adapter: pipe.model.gpu.info.description }, null, 2));
    } else {
      process.stdout.write('\n');
      process.stderr.write(
        `load ${(t.loadMs / 1000).toFixed(2)} s, image encode ${t.imageEncodeMs.toFixed(1)} ms, TTFT ${t.ttftMs.toFixed(1)} ms, ` +
          `prefill ${t.prefillTokensPerSecond.toFixed(1)} tok/s (${t.promptTokens} tokens), decode ${t.decodeTokensPerSecond.toFixed(1)} tok/s ` +
          `(${t.newTokens} tokens, ${r.finishReason})\n`,
      );
    }
    return r.finishReason === 'abort' ? 130 : 0; // 128 + SIGINT, as a shell reports a process Ctrl-C ended
  } finally {
    process.off('SIGINT', onSigint);
    pipe.dispose();
  }
}

async function info(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log('webgpu-vlm info\n\nPrints the WebGPU adapter, the features this runtime uses and its limits.');
    return 0;
  }
  if (argv.length) fail(`info: unexpected argument "${argv[0]}"`, 'webgpu-vlm info');
  const gpu = await Gpu.create();
  console.log(gpu.describe());
  gpu.destroy();
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'run':
        return await run(rest);
      case 'diff':
        return await diff(rest);
      case 'info':
        return await info(rest);
      case undefined:
      case '-h':
      case '--help':
      case 'help':
        console.log(USAGE);
        return cmd === undefined ? 1 : 0;
      default:
        fail(`unknown command "${cmd}"`, USAGE);
    }
  } catch (e) {
    const err = e as Error & { code?: string };
    if (e instanceof UsageError || err.code?.startsWith('ERR_PARSE_ARGS')) {
      console.error(`webgpu-vlm: ${err.message}`);
      return 2;
    }
    console.error(`webgpu-vlm: ${err.message}`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
