#!/usr/bin/env node
// The webgpu-vlm command line: `run` answers a prompt about an image with streamed text; `serve` answers
// OpenAI-style chat requests over HTTP (src/server/); `diff` checks a model against a reference file; `info`
// lists the adapters. Dawn, sharp and the tokenizer are imported by
// the command that needs them, after its options are checked: --help, --version and a usage error answer at once.
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { GpuOptions } from './gpu/device.ts';
import { WEIGHT_DTYPE_NAMES, type WeightDType } from './models/weight-dtype.ts';
import type { StepProgress } from './models/vlm.ts';

const USAGE = `webgpu-vlm — vision-language models on WebGPU

Usage:
  webgpu-vlm run --model DIR|ORG/NAME [--image FILE ...] --prompt "..." [options]
  webgpu-vlm serve --model DIR|ORG/NAME [--host 127.0.0.1] [--port 8080] [options]
  webgpu-vlm diff --model DIR --reference FILE.safetensors [--atol X] [--tol NAME=X ...] [--json]
  webgpu-vlm info [--adapter N|NAME | --power high|low]
  webgpu-vlm COMMAND --help
  webgpu-vlm --version

Commands:
  run    Generate a reply to a prompt about zero or more images, streamed to stdout.
  serve  Answer OpenAI-compatible chat requests (POST /v1/chat/completions) over HTTP.
  diff   Run the model in DIR on the inputs of a reference file (pixel_values, input_ids) and compare
         every tensor of that file it knows (intermediates, logits, greedy_ids, greedy_logits).
  info   List the WebGPU adapters Dawn offers: features, limits and the kernel set each would get.

Every command takes --adapter N|NAME or --power high|low (which adapter) and --verbose (Dawn's warnings too).`;

/** The adapter options' help lines, their descriptions starting at column `width` + 2 as in each command's help. */
const gpuHelp = (width: number) =>
  [
    ['--adapter N|NAME', 'the adapter: its number in `webgpu-vlm info`, or part of its name'],
    ['--power high|low', 'the adapter Dawn prefers for high performance (default) or low power'],
    ['--verbose', "also show Dawn's warnings (two lines about dynamic buffer limits on lavapipe)"],
  ]
    .map(([option, what]) => `  ${option.padEnd(width)}${what}`)
    .join('\n');

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
  --dtype auto|f32|f16|bf16|q8|q4
                         weight storage: auto (default) keeps the checkpoint's width; q8 / q4 quantize the
                         linear layers at load (embeddings and LM head q8); AWQ / GPTQ models load as published
  --native-f16           read 16-bit weights with shader-f16 where the adapter has it (on NVIDIA: Dawn's
                         vulkan_enable_f16_on_nvidia toggle) instead of as u32 pairs
  --image-splitting on|off  Idefics3/SmolVLM: split large images into tiles (default: the processor's, on);
                         off encodes each image as one tile, much faster on a CPU adapter
  --image-size N         Idefics3/SmolVLM: resize the longest edge to N before splitting (size.longest_edge)
  --kernels gpu|cpu      kernel set (default: the one the adapter suits; cpu = for lavapipe-like drivers)
  --preprocess gpu|cpu   where images are resized and tiled (default gpu; cpu = the JavaScript reference, same pixels)
  --json                 print one JSON line (text, tokens, timings) instead of streaming
${gpuHelp(23)}
  -h, --help             this help`;

const SERVE_USAGE = `webgpu-vlm serve --model DIR|ORG/NAME [options]

Loads the model once and answers OpenAI-compatible chat requests over HTTP: POST /v1/chat/completions
(streamed or not, images as data: URIs), GET /v1/models, GET /health, GET /metrics (Prometheus). Requests
run one at a time in arrival order; a client that disconnects has its generation stopped. SIGINT or
SIGTERM stops the server: no new connections, requests in flight aborted, the GPU device freed, exit 0.

Options:
  --model DIR|ID         model directory or Hugging Face id (HF_HUB_CACHE / HF_HOME / ~/.cache/huggingface/hub)
  --host ADDR            address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for all)
  --port N               default 8080; 0 picks a free port (printed at start)
  --api-key KEY          require "Authorization: Bearer KEY" on /v1 routes (also WEBGPU_VLM_API_KEY)
  --max-queue N          requests that may wait behind the running one (default 32); more get 429
  --timeout S            limit per request in seconds, queue wait included (default 600; 0: none); 504 past it
  --allow-files DIR      let requests name images inside DIR by file:// URL (default: refused)
  --max-body BYTES       largest request body (default 20971520 = 20 MiB); larger ones get 413
  --dtype auto|f32|f16|bf16|q8|q4, --native-f16   weight storage, as for run
  --kernels gpu|cpu      kernel set (default: the one the adapter suits; cpu = for lavapipe-like drivers)
  --image-splitting on|off, --image-size N, --preprocess gpu|cpu   as for run
${gpuHelp(23)}
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
  --json               print the result as one JSON line
  --dtype auto|f32|f16|bf16|q8|q4, --native-f16   weight storage, as for run (narrowing an F32
                       checkpoint, to 16 bits or to q8/q4, moves it off its f32 reference by more than the
                       default tolerance: rounding, not a bug)
${gpuHelp(21)}
  -h, --help           this help`;

const INFO_USAGE = `webgpu-vlm info [options]

Lists every adapter Dawn offers (one request per power preference and the fallback adapter), numbered
for --adapter, with its features, limits and the kernel set this runtime would choose for it. With
--adapter or --power, only that adapter.

Options:
${gpuHelp(23)}
  -h, --help             this help`;

export const DEFAULT_ATOL: Record<string, number> = { F32: 1e-4, F16: 1e-4, BF16: 1e-4 };

/** A usage error: reported on one line that points to the command's --help, exit status 2. */
class UsageError extends Error {}

function fail(msg: string): never {
  throw new UsageError(msg);
}

/** The options every command takes to choose the adapter, and --verbose. */
const GPU_OPTIONS = {
  adapter: { type: 'string' },
  power: { type: 'string' },
  verbose: { type: 'boolean' },
} as const;

function gpuOptions(cmd: string, values: { adapter?: string; power?: string; verbose?: boolean }): GpuOptions {
  const { adapter, power } = values;
  if (adapter !== undefined && power !== undefined) fail(`${cmd}: give --adapter or --power, not both`);
  if (adapter === '') fail(`${cmd}: --adapter expects a number or part of a name`);
  if (power !== undefined && power !== 'high' && power !== 'low') fail(`${cmd}: --power expects high or low, got "${power}"`);
  return {
    adapter: adapter === undefined ? undefined : /^\d+$/.test(adapter) ? Number(adapter) : adapter,
    powerPreference: power === undefined ? undefined : power === 'high' ? 'high-performance' : 'low-power',
    quiet: !values.verbose,
  };
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
      dtype: { type: 'string' },
      'native-f16': { type: 'boolean' },
      ...GPU_OPTIONS,
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    console.log(DIFF_USAGE);
    return 0;
  }
  if (!values.model) fail('diff: --model DIR is required');
  if (!values.reference) fail('diff: --reference FILE is required');
  const perTensor = new Map<string, number>();
  for (const t of values.tol ?? []) {
    const m = /^([\w.]+)=([0-9.eE+-]+)$/.exec(t);
    if (!m || !(Number(m[2]) >= 0)) fail(`diff: --tol expects NAME=NUMBER, got "${t}"`);
    perTensor.set(m[1], Number(m[2]));
  }
  let atol: number | undefined;
  if (values.atol !== undefined) {
    atol = Number(values.atol);
    if (!(atol >= 0)) fail(`diff: --atol expects a non-negative number, got "${values.atol}"`);
  }
  const positive = (name: string, v: string | undefined) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!(Number.isInteger(n) && n >= 1)) fail(`diff: ${name} expects a positive integer, got "${v}"`);
    return n;
  };
  const limits = { prefillTokens: positive('--prefill-tokens', values['prefill-tokens']), visionTiles: positive('--vision-tiles', values['vision-tiles']) };
  // The weight storage and the adapter, checked as run checks them (diff has no image options).
  const load = modelOptions('diff', values);
  const { Gpu } = await import('./gpu/device.ts');
  const { loadModelDir } = await import('./models/registry.ts');
  const { diffReference, formatDiff } = await import('./diff.ts');
  const { progressBar } = await import('./progress.ts');
  const gpu = await Gpu.create(load);
  try {
    const log = (s: string) => process.stderr.write(`${s}\n`);
    log(gpu.describe().split('\n')[0]);
    const model = await loadModelDir(gpu, values.model, { onProgress: progressBar('loading'), dtype: load.dtype, nativeF16: load.nativeF16 });
    try {
      const dtype = [...model.store.ckpt.tensors.values()][0]?.dtype ?? 'F32';
      const base = atol ?? DEFAULT_ATOL[dtype] ?? 1e-4;
      const result = await diffReference(model, values.reference, (n) => perTensor.get(n) ?? base, log, limits);
      if (values.json) console.log(JSON.stringify(result, (_, v) => (v === Infinity ? 'Infinity' : v)));
      else console.log(formatDiff(result));
      return result.ok ? 0 : 1;
    } finally {
      model.dispose();
    }
  } finally {
    gpu.destroy();
  }
}

/** The options `run` and `serve` load a model with (weight storage, kernel set, image splitting and preprocessing), and the adapter's. */
const MODEL_OPTIONS = {
  dtype: { type: 'string' },
  'native-f16': { type: 'boolean' },
  kernels: { type: 'string' },
  'image-splitting': { type: 'string' },
  'image-size': { type: 'string' },
  preprocess: { type: 'string' },
  ...GPU_OPTIONS,
} as const;

/** MODEL_OPTIONS' values checked, as loadModel takes them (`--image-size`: each command parses its integers). */
function modelOptions(
  cmd: string,
  values: { dtype?: string; 'native-f16'?: boolean; kernels?: string; 'image-splitting'?: string; preprocess?: string; adapter?: string; power?: string; verbose?: boolean },
): GpuOptions & { dtype: WeightDType; kernels?: 'gpu' | 'cpu'; imageSplitting?: boolean; preprocess?: 'gpu' | 'cpu' } {
  const dtype = (values.dtype ?? 'auto') as WeightDType;
  if (!(WEIGHT_DTYPE_NAMES as readonly string[]).includes(dtype)) fail(`${cmd}: --dtype expects ${WEIGHT_DTYPE_NAMES.join(', ')}, got "${values.dtype}"`);
  const kernels = values.kernels;
  if (kernels !== undefined && kernels !== 'gpu' && kernels !== 'cpu') fail(`${cmd}: --kernels expects gpu or cpu, got "${kernels}"`);
  const splitting = values['image-splitting'];
  if (splitting !== undefined && splitting !== 'on' && splitting !== 'off') fail(`${cmd}: --image-splitting expects on or off, got "${splitting}"`);
  const preprocess = values.preprocess;
  if (preprocess !== undefined && preprocess !== 'gpu' && preprocess !== 'cpu') fail(`${cmd}: --preprocess expects gpu or cpu, got "${preprocess}"`);
  return {
    ...gpuOptions(cmd, values),
    dtype,
    nativeF16: values['native-f16'],
    kernels,
    preprocess,
    imageSplitting: splitting === undefined ? undefined : splitting === 'on',
  };
}

function numberOpt(name: string, v: string | undefined, check: (n: number) => boolean, what: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!check(n)) fail(`run: ${name} expects ${what}, got "${v}"`);
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
      ...MODEL_OPTIONS,
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    console.log(RUN_USAGE);
    return 0;
  }
  if (!values.model) fail('run: --model DIR|ID is required');
  if (values.prompt === undefined) fail('run: --prompt TEXT is required');
  const load = modelOptions('run', values);
  const maxNewTokens = numberOpt('--max-new-tokens', values['max-new-tokens'], (n) => Number.isInteger(n) && n > 0, 'a positive integer') ?? 128;
  const temperature = numberOpt('--temperature', values.temperature, (n) => n >= 0, 'a number >= 0');
  const topK = numberOpt('--top-k', values['top-k'], (n) => Number.isInteger(n) && n > 0, 'a positive integer');
  const topP = numberOpt('--top-p', values['top-p'], (n) => n > 0 && n <= 1, 'a number in (0, 1]');
  const seed = numberOpt('--seed', values.seed, (n) => Number.isInteger(n), 'an integer');
  const imageSize = numberOpt('--image-size', values['image-size'], (n) => Number.isInteger(n) && n >= 1 && n <= 4096, 'an integer in [1, 4096]');
  if (values.stop?.includes('')) fail('run: --stop expects non-empty text (an empty one would end the reply before it starts)');
  // Images are checked (exist, are files, have a readable header within the pixel limit) before the model
  // loads, which can take minutes: a mistyped path should not cost that.
  const images = values.image ?? [];
  if (images.length) {
    const { checkImage } = await import('./image/preprocess.ts');
    for (const file of images) await checkImage(file);
  }
  const { loadModel } = await import('./pipeline.ts');
  const { progressBar, stepProgress } = await import('./progress.ts');
  const pipe = await loadModel(values.model, { ...load, imageSize, onProgress: progressBar('loading') });
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
        const avoid = 'doImageSplitting' in cfg && cfg.doImageSplitting ? '; --image-splitting off encodes each image as one tile' : '';
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
      console.log(JSON.stringify({ text: r.text, tokens: r.tokens, finishReason: r.finishReason, timings: t, adapter: pipe.model.gpu.info.description }));
    } else {
      process.stdout.write('\n');
      process.stderr.write(
        `load ${(t.loadMs / 1000).toFixed(2)} s (weights ${(t.weightBytes / 2 ** 20).toFixed(1)} MiB on the GPU), image encode ${t.imageEncodeMs.toFixed(1)} ms, TTFT ${t.ttftMs.toFixed(1)} ms, ` +
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

async function serve(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      'api-key': { type: 'string' },
      'max-queue': { type: 'string' },
      timeout: { type: 'string' },
      'allow-files': { type: 'string' },
      'max-body': { type: 'string' },
      ...MODEL_OPTIONS,
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    console.log(SERVE_USAGE);
    return 0;
  }
  const int = (name: string, v: string | undefined, lo: number, hi: number): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!(/^\d+$/.test(v) && n >= lo && n <= hi)) fail(`serve: ${name} expects an integer in [${lo}, ${hi}], got "${v}"`);
    return n;
  };
  if (!values.model) fail('serve: --model DIR|ID is required');
  const load = modelOptions('serve', values);
  const apiKey = values['api-key'] ?? (process.env.WEBGPU_VLM_API_KEY || undefined);
  if (apiKey === '') fail('serve: --api-key must not be empty');
  const timeout = int('--timeout', values.timeout, 0, 86_400);
  const { serve } = await import('./server/serve.ts');
  return serve({
    model: values.model,
    host: values.host,
    port: int('--port', values.port, 0, 65_535),
    apiKey,
    maxQueue: int('--max-queue', values['max-queue'], 0, 1_000_000),
    timeoutMs: timeout === undefined ? undefined : timeout * 1000,
    allowFiles: values['allow-files'],
    maxBody: int('--max-body', values['max-body'], 1, 2 ** 31),
    load: { ...load, imageSize: int('--image-size', values['image-size'], 1, 4096) },
  });
}

async function info(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { ...GPU_OPTIONS, help: { type: 'boolean', short: 'h' } }, strict: true });
  if (values.help) {
    console.log(INFO_USAGE);
    return 0;
  }
  const gpuOpts = gpuOptions('info', values);
  const { findAdapters, describeAdapter } = await import('./gpu/device.ts');
  const { tuningFor } = await import('./gpu/tuning.ts');
  const { instance, adapters } = await findAdapters(gpuOpts);
  const all = gpuOpts.adapter === undefined && gpuOpts.powerPreference === undefined;
  const text = adapters.map(({ adapter, requestedAs }, i) => {
    const lines = describeAdapter(adapter.info, adapter.features as unknown as ReadonlySet<string>, adapter.limits, tuningFor(adapter.info), true).split('\n');
    const head = all ? lines[0].replace(/^adapter:/, `adapter ${i}:`) : lines[0];
    return [head, ...lines.slice(1), `requested as: ${requestedAs.join(', ')}`].join('\n  ');
  });
  console.log(text.join('\n\n'));
  void instance; // held until the adapters have been read
  return 0;
}

async function version(): Promise<string> {
  // ../package.json from src/ and from dist/ alike, through the one JSON reader (a small module).
  const { readJsonObject } = await import('./io/model-dir.ts');
  return String((await readJsonObject(fileURLToPath(new URL('../package.json', import.meta.url)))).version);
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'run':
        return await run(rest);
      case 'serve':
        return await serve(rest);
      case 'diff':
        return await diff(rest);
      case 'info':
        return await info(rest);
      case '-h':
      case '--help':
      case 'help':
        console.log(USAGE);
        return 0;
      case '--version':
        console.log(await version());
        return 0;
      case undefined:
        fail('a command is required: run, serve, diff or info');
      default:
        fail(`unknown command "${cmd}"`);
    }
  } catch (e) {
    const err = e as Error & { code?: string };
    if (e instanceof UsageError || err.code?.startsWith('ERR_PARSE_ARGS')) {
      const known = cmd === 'run' || cmd === 'serve' || cmd === 'diff' || cmd === 'info';
      // parseArgs' advice on positional arguments starting with '-' does not apply: no command takes any.
      const msg = e instanceof UsageError ? err.message : `${known ? `${cmd}: ` : ''}${err.message.replace(/\. To specify a positional argument.*$/s, '')}`;
      console.error(`webgpu-vlm: ${msg} (see webgpu-vlm${known ? ` ${cmd}` : ''} --help)`);
      return 2;
    }
    console.error(`webgpu-vlm: ${err.message}`);
    return 1;
  }
}

// A reader that leaves early (`| head`) closes the pipe: the output is no longer wanted, so stop, quietly.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') throw e;
    process.exit(0);
  });
}

process.exitCode = await main(process.argv.slice(2));
