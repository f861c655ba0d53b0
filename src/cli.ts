// The webgpu-vlm command line: `diff` checks a model against a reference file; `info` shows the adapter.
import { parseArgs } from 'node:util';
import { Gpu } from './gpu/device.ts';
import { loadModelDir } from './models/registry.ts';
import { diffReference, formatDiff } from './diff.ts';
import { progressBar } from './progress.ts';

const USAGE = `webgpu-vlm — vision-language models on WebGPU

Usage:
  webgpu-vlm diff --model DIR --reference FILE.safetensors [--atol X] [--tol NAME=X ...] [--json]
  webgpu-vlm info
  webgpu-vlm COMMAND --help

Commands:
  diff   Run the model in DIR on the inputs of a reference file (pixel_values, input_ids) and compare
         every tensor of that file it knows (intermediates, logits, greedy_ids, greedy_logits).
  info   Print the WebGPU adapter, its features and limits.`;

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
  const gpu = await Gpu.create();
  try {
    const log = (s: string) => process.stderr.write(`${s}\n`);
    log(gpu.describe().split('\n')[0]);
    const model = await loadModelDir(gpu, values.model, { onProgress: progressBar('loading') });
    try {
      const dtype = [...model.store.ckpt.tensors.values()][0]?.dtype ?? 'F32';
      const base = atol ?? DEFAULT_ATOL[dtype] ?? 1e-4;
      const result = await diffReference(model, values.reference, (n) => perTensor.get(n) ?? base, log);
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
