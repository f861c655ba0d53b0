// The fuzzer's targets: the seed inputs (fixtures, a 2-shard split written to a temp dir) and the
// execution of a mutated input through each loader, classified as accepted, the loader's typed error,
// or a failure (any other exception, or an invariant the fuzzer checks).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Checkpoint } from '../../src/io/checkpoint.ts';
import { ITEM_SIZE, isStDType } from '../../src/io/dtype.ts';
import { LoadError, SafetensorsFile } from '../../src/io/safetensors.ts';
import { writeSafetensors } from '../../src/io/safetensors-write.ts';
import type { StDType } from '../../src/io/safetensors.ts';
import { ConfigError, parseIdefics3Config, parseLlavaConfig } from '../../src/models/config.ts';
import { packedLinearNames, packedToRows, quantConfigOf, readPackedLinear } from '../../src/io/quant.ts';
import type { Mutated } from './mutators.ts';

export type Target = 'safetensors' | 'index' | 'config' | 'quant';
export const ALL_TARGETS: readonly Target[] = ['safetensors', 'index', 'config', 'quant'];

// ---------------------------------------------------------------------------------------------------
// Seeds and the temp directory.

const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));
const ST_SEED_FILES = [
  'smolvlm-tiny/model.safetensors',
  'smolvlm-tiny-f16/model.safetensors',
  'smolvlm-tiny-bf16/model.safetensors',
  'llava-tiny/model.safetensors',
];
/** Quantized checkpoints (AWQ, GPTQ): their packed headers and quantization_config go through the quant loaders. */
const QUANT_SEED_DIRS = ['llava-awq-tiny', 'llava-gptq-tiny'];
const CONFIG_SEED_FILES = ['smolvlm-tiny/config.json', 'smolvlm-tiny-f16/config.json', 'smolvlm-tiny-bf16/config.json', 'llava-tiny/config.json'];
export const SHARDS = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
export const INDEX_FILE = 'model.safetensors.index.json';

interface StSeed {
  name: string;
  bytes: Uint8Array;
  headerLength: number;
  headerText: string;
  data: Uint8Array;
}

interface ConfigSeed {
  name: string;
  text: string;
  parser: 'idefics3' | 'llava';
}

export interface Ctx {
  tmp: string;
  stPath: string;
  idxDir: string;
  cfgDir: string;
  cap: number;
  stSeeds: StSeed[];
  indexText: string;
  indexTensors: string[];
  configSeeds: ConfigSeed[];
  quantDir: string;
  quantSeeds: { st: StSeed; config: string }[];
}

function stSeed(name: string, bytes: Uint8Array): StSeed {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  return {
    name,
    bytes,
    headerLength: n,
    headerText: new TextDecoder().decode(bytes.subarray(8, 8 + n)),
    data: bytes.subarray(8 + n),
  };
}

/** Temp dirs of runs in progress (removed by the CLI on SIGINT/SIGTERM). */
export const liveTmpDirs = new Set<string>();

export async function setup(cap: number): Promise<Ctx> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vlm-fuzz-'));
  liveTmpDirs.add(tmp);
  try {
    const stSeeds = ST_SEED_FILES.map((f) => stSeed(f, new Uint8Array(fs.readFileSync(path.join(FIXTURES, f)))));

    // The 2-shard split of the tiny SmolVLM, written once.
    const idxDir = path.join(tmp, 'sharded');
    fs.mkdirSync(path.join(idxDir, 'sub'), { recursive: true });
    fs.copyFileSync(path.join(FIXTURES, 'smolvlm-tiny/config.json'), path.join(idxDir, 'config.json'));
    const src = await SafetensorsFile.open(path.join(FIXTURES, ST_SEED_FILES[0]));
    const all: { name: string; dtype: StDType; shape: number[]; data: Uint8Array }[] = [];
    try {
      const infos = [...src.tensors.values()].sort((a, b) => a.begin - b.begin);
      for (const t of infos) all.push({ name: t.name, dtype: t.dtype, shape: t.shape, data: await src.read(t.name) });
    } finally {
      await src.close();
    }
    const half = Math.ceil(all.length / 2);
    const parts = [all.slice(0, half), all.slice(half)];
    const weightMap: Record<string, string> = {};
    let total = 0;
    parts.forEach((ts, i) => {
      writeSafetensors(path.join(idxDir, SHARDS[i]), ts, { format: 'pt' });
      for (const t of ts) {
        weightMap[t.name] = SHARDS[i];
        total += t.data.byteLength;
      }
    });
    const sorted = Object.fromEntries(Object.entries(weightMap).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    const indexText = JSON.stringify({ metadata: { total_size: total }, weight_map: sorted }, null, 2);
    fs.writeFileSync(path.join(idxDir, INDEX_FILE), indexText);
    // Sanity: the unmutated split must load.
    const ck = await Checkpoint.open(idxDir, { maxHeaderBytes: cap });
    await ck.close();
    for (const s of SHARDS) stSeeds.push(stSeed(`sharded/${s}`, new Uint8Array(fs.readFileSync(path.join(idxDir, s)))));

    // Directory for the config.json check through Checkpoint.open: one tiny single-file checkpoint.
    const cfgDir = path.join(tmp, 'config');
    fs.mkdirSync(cfgDir);
    writeSafetensors(path.join(cfgDir, 'model.safetensors'), [{ name: 'w', dtype: 'F32', shape: [2], data: new Uint8Array(8) }]);

    const configSeeds = CONFIG_SEED_FILES.map((f): ConfigSeed => {
      const text = fs.readFileSync(path.join(FIXTURES, f), 'utf8');
      const type = (JSON.parse(text) as { model_type?: unknown }).model_type;
      return { name: f, text, parser: type === 'llava' ? 'llava' : 'idefics3' };
    });
    const quantDir = path.join(tmp, 'quant');
    fs.mkdirSync(quantDir);
    const quantSeeds = QUANT_SEED_DIRS.map((d) => ({
      st: stSeed(`${d}/model.safetensors`, new Uint8Array(fs.readFileSync(path.join(FIXTURES, d, 'model.safetensors')))),
      config: fs.readFileSync(path.join(FIXTURES, d, 'config.json'), 'utf8'),
    }));
    return {
      tmp,
      quantDir,
      quantSeeds,
      stPath: path.join(tmp, 'fuzz.safetensors'),
      idxDir,
      cfgDir,
      cap,
      stSeeds,
      indexText,
      indexTensors: Object.keys(sorted),
      configSeeds,
    };
  } catch (e) {
    removeTmp(tmp);
    throw e;
  }
}

export function removeTmp(tmp: string): void {
  fs.rmSync(tmp, { recursive: true, force: true });
  liveTmpDirs.delete(tmp);
}

// ---------------------------------------------------------------------------------------------------
// Execution and classification.

export type Outcome =
  | { kind: 'accepted' }
  | { kind: 'rejected'; group: string; wrapped: boolean }
  | { kind: 'json-rejected'; group: string }
  | { kind: 'failure'; what: string; error?: unknown };

/** Violated expectation of the fuzzer itself (not a loader error). */
class InvariantError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvariantError';
  }
}

export function errorText(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return `non-Error thrown: ${String(e)}`;
}

/**
 * A fresh copy of a short string that may be a slice of a huge one (V8 keeps the whole parent alive
 * behind a slice; keys and reports kept for the whole run must not pin multi-MB inputs or messages).
 */
export function detach(s: string): string {
  return Buffer.from(s, 'utf8').toString('utf8');
}

/** First ~6 words of a typed error, without the file/tensor prefix and with numbers folded. */
export function groupKey(e: Error, file?: string): string {
  let m = e.message.slice(0, 4000);
  const f = e instanceof LoadError ? e.file : file;
  if (f && m.startsWith(f)) m = m.slice(f.length).replace(/^[^:]*:\s*/, '');
  if (e instanceof LoadError && e.tensor !== undefined) {
    const p = `tensor ${JSON.stringify(e.tensor)}: `;
    if (m.startsWith(p)) m = m.slice(p.length);
  }
  m = m
    .replace(/\/\S*vlm-fuzz-\S*/g, '<path>')
    .replace(/"(?:[^"\\]|\\.){25,}?"/g, '"..."')
    .replace(/(?<![A-Za-z0-9]-?)\d+/g, 'N')
    .replace(/(?:N,\s?){3,}N/g, 'N,...,N');
  const words = m.split(/\s+/).filter(Boolean).slice(0, 6).join(' ');
  return detach(words.length > 90 ? words.slice(0, 87) + '...' : words);
}

function typed(e: unknown, cls: typeof LoadError | typeof ConfigError, label: string, file?: string): Outcome {
  if (e instanceof InvariantError) return { kind: 'failure', what: e.message, error: e };
  if (e instanceof cls) return { kind: 'rejected', group: `${label}: ${groupKey(e, file)}`, wrapped: /unexpected error/.test(e.message) };
  return { kind: 'failure', what: `${label}: threw ${errorText(e)} (expected ${cls.name})`, error: e };
}

async function execSafetensors(ctx: Ctx, bytes: Uint8Array): Promise<Outcome> {
  fs.writeFileSync(ctx.stPath, bytes);
  let f: SafetensorsFile | undefined;
  try {
    f = await SafetensorsFile.open(ctx.stPath, { maxHeaderBytes: ctx.cap });
  } catch (e) {
    return typed(e, LoadError, 'safetensors');
  }
  try {
    const base = 8 + f.headerLength;
    const spans: [number, number][] = [];
    for (const [name, info] of f.tensors) {
      if (!isStDType(info.dtype)) throw new InvariantError(`accepted tensor ${JSON.stringify(name)} with dtype ${String(info.dtype)}`);
      let numel = 1;
      for (const d of info.shape) numel = d === 0 || numel === 0 ? 0 : numel * d;
      if (info.begin < base || info.end > f.fileSize || info.end - info.begin !== numel * ITEM_SIZE[info.dtype]) {
        throw new InvariantError(`accepted tensor ${JSON.stringify(name)} with span [${info.begin}, ${info.end}) / shape ${info.shape.length} dims`);
      }
      if (info.end > info.begin) spans.push([info.begin, info.end]);
      let bytesRead: Uint8Array;
      try {
        bytesRead = await f.read(name);
      } catch (e) {
        throw new InvariantError(`open() accepted the file but read(${JSON.stringify(name.slice(0, 40))}) threw ${errorText(e)}`);
      }
      if (bytesRead.byteLength !== info.end - info.begin) throw new InvariantError(`read(${JSON.stringify(name)}) returned ${bytesRead.byteLength} bytes`);
    }
    spans.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < spans.length; i++) {
      if (spans[i][0] < spans[i - 1][1]) throw new InvariantError(`accepted overlapping tensors at ${spans[i][0]}`);
    }
    return { kind: 'accepted' };
  } catch (e) {
    return { kind: 'failure', what: e instanceof InvariantError ? e.message : `after open: ${errorText(e)}`, error: e };
  } finally {
    await f.close();
  }
}

async function openCheckpoint(dir: string, cap: number, label: string, readAll: boolean): Promise<Outcome> {
  let ck: Checkpoint;
  try {
    ck = await Checkpoint.open(dir, { maxHeaderBytes: cap });
  } catch (e) {
    return typed(e, LoadError, label);
  }
  try {
    if (readAll) {
      for (const [name, info] of ck.tensors) {
        if (path.dirname(info.file) !== dir && !info.file.startsWith(dir + path.sep)) throw new InvariantError(`tensor ${name} maps to ${info.file} outside the model dir`);
        let b: Uint8Array;
        try {
          b = await ck.read(name);
        } catch (e) {
          throw new InvariantError(`Checkpoint.open accepted the index but read(${JSON.stringify(name.slice(0, 40))}) threw ${errorText(e)}`);
        }
        if (b.byteLength !== info.end - info.begin) throw new InvariantError(`read(${name}) returned ${b.byteLength} bytes`);
      }
    }
    return { kind: 'accepted' };
  } catch (e) {
    return { kind: 'failure', what: e instanceof InvariantError ? e.message : `after open: ${errorText(e)}`, error: e };
  } finally {
    await ck.close();
  }
}

async function execIndex(ctx: Ctx, bytes: Uint8Array): Promise<Outcome> {
  fs.writeFileSync(path.join(ctx.idxDir, INDEX_FILE), bytes);
  return openCheckpoint(ctx.idxDir, ctx.cap, 'index', true);
}

const CONFIG_NAME = 'config.json';

async function execConfig(ctx: Ctx, bytes: Uint8Array, parser: 'idefics3' | 'llava'): Promise<Outcome> {
  // Decode as Checkpoint.open does (fs.readFile(..., 'utf8')), so both see the same text.
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
  let json: unknown;
  let jsonError: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    jsonError = e;
  }
  let out: Outcome;
  if (jsonError !== undefined) {
    const name = jsonError instanceof Error ? jsonError.name : typeof jsonError;
    out = { kind: 'json-rejected', group: `JSON.parse: ${name}` };
  } else {
    try {
      const c = parser === 'llava' ? parseLlavaConfig(json, CONFIG_NAME) : parseIdefics3Config(json, CONFIG_NAME);
      if (c.model_type !== parser) throw new InvariantError(`parser ${parser} returned model_type ${String(c.model_type)}`);
      out = { kind: 'accepted' };
    } catch (e) {
      out = typed(e, ConfigError, `config(${parser})`, CONFIG_NAME);
    }
  }
  // The same text through Checkpoint.open: LoadError exactly when it is not a JSON object.
  fs.writeFileSync(path.join(ctx.cfgDir, CONFIG_NAME), bytes);
  const ck = await openCheckpoint(ctx.cfgDir, ctx.cap, 'config(Checkpoint)', false);
  const isObject = jsonError === undefined && typeof json === 'object' && json !== null && !Array.isArray(json);
  if (ck.kind === 'failure') return ck;
  if (ck.kind === 'accepted' && !isObject) return { kind: 'failure', what: 'Checkpoint.open accepted a config.json that is not a JSON object' };
  if (ck.kind === 'rejected' && isObject) return { kind: 'failure', what: `Checkpoint.open rejected a valid JSON object config: ${ck.group}` };
  return out;
}

/**
 * A quantized checkpoint (mutated header or quantization_config): opened, its quantization read, and every
 * packed linear converted to the kernels' layout. Each must end in a typed error or rows that are whole:
 * the codes, scales and zeros the layout needs for its rows and K, with a group that divides K.
 */
async function execQuant(ctx: Ctx, m: Mutated): Promise<Outcome> {
  fs.writeFileSync(path.join(ctx.quantDir, 'model.safetensors'), m.bytes);
  fs.writeFileSync(path.join(ctx.quantDir, CONFIG_NAME), m.config ?? '{}');
  let ck: Checkpoint;
  try {
    ck = await Checkpoint.open(ctx.quantDir, { maxHeaderBytes: ctx.cap });
  } catch (e) {
    return typed(e, LoadError, 'quant(open)');
  }
  try {
    let method;
    try {
      method = quantConfigOf(ck.config, undefined, ctx.quantDir);
    } catch (e) {
      return typed(e, ConfigError, 'quant(config)', CONFIG_NAME);
    }
    if (!method) return { kind: 'accepted' };
    for (const module of packedLinearNames(ck.tensors.keys())) {
      let q;
      try {
        q = packedToRows(await readPackedLinear(ck, module), method);
      } catch (e) {
        return typed(e, LoadError, 'quant(linear)');
      }
      const { bits, group, zeros } = q.spec;
      const groups = (q.rows * q.K) / group;
      if (q.K % group !== 0 || group % 8 !== 0) throw new InvariantError(`${module}: accepted group ${group} for K ${q.K}`);
      if (q.values.length !== (q.rows * q.K * bits) / 32 || q.scales.length !== groups || (zeros ? q.zeros?.length !== groups : q.zeros !== undefined)) {
        throw new InvariantError(`${module}: rows ${q.rows}, K ${q.K}: ${q.values.length} code words, ${q.scales.length} scales, ${q.zeros?.length} zeros`);
      }
    }
    return { kind: 'accepted' };
  } catch (e) {
    return { kind: 'failure', what: e instanceof InvariantError ? e.message : `after open: ${errorText(e)}`, error: e };
  } finally {
    await ck.close();
  }
}

export async function execCase(ctx: Ctx, target: Target, m: Mutated): Promise<Outcome> {
  try {
    if (target === 'safetensors') return await execSafetensors(ctx, m.bytes);
    if (target === 'index') return await execIndex(ctx, m.bytes);
    if (target === 'quant') return await execQuant(ctx, m);
    return await execConfig(ctx, m.bytes, m.parser ?? 'idefics3');
  } catch (e) {
    return { kind: 'failure', what: `fuzz harness: ${errorText(e)}`, error: e };
  }
}
