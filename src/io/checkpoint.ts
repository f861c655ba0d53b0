/**
 * A model directory: `config.json` plus either a single `model.safetensors` or a
 * sharded checkpoint described by `model.safetensors.index.json`.
 *
 * Each shard is opened once and its FileHandle kept until `close()`. The index is
 * validated strictly: shard paths must stay inside the directory (also after
 * resolving symlinks), every shard must exist, and the weight_map must agree
 * exactly with the tensors actually present in the shards.
 */
import * as fsp from 'node:fs/promises';
import * as nodePath from 'node:path';
import { LoadError, SafetensorsFile } from './safetensors.ts';
import type { OpenOptions, TensorInfo } from './safetensors.ts';
import { readJsonObject } from './model-dir.ts';

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';
export const CONFIG_FILE = 'config.json';

function errMsg(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === undefined) return 'undefined';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  const s = JSON.stringify(v) ?? String(v);
  return `${typeof v} ${s.length > 60 ? s.slice(0, 57) + '...' : s}`;
}

/** True when `child` is `parent` or lies below it (both absolute, normalized). */
function isInside(parent: string, child: string): boolean {
  const rel = nodePath.relative(parent, child);
  return rel === '' || (!rel.startsWith('..' + nodePath.sep) && rel !== '..' && !nodePath.isAbsolute(rel));
}

async function exists(p: string): Promise<boolean> {
  try {
    await fsp.lstat(p);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException)?.code === 'ENOENT') return false;
    throw new LoadError(p, `cannot stat (${errMsg(e)})`, { cause: e });
  }
}

export class Checkpoint {
  readonly dir: string;
  readonly config: Record<string, unknown>;
  readonly tensors: Map<string, TensorInfo>;
  /** Absolute paths of the safetensors files, one per shard (in index order of first appearance). */
  readonly files: string[];
  private readonly shards: Map<string, SafetensorsFile>;

  private constructor(
    dir: string,
    config: Record<string, unknown>,
    shards: Map<string, SafetensorsFile>,
    tensors: Map<string, TensorInfo>,
  ) {
    this.dir = dir;
    this.config = config;
    this.shards = shards;
    this.tensors = tensors;
    this.files = [...shards.keys()];
  }

  static async open(dir: string, opts?: OpenOptions): Promise<Checkpoint> {
    const absDir = nodePath.resolve(dir);
    let realDir: string;
    try {
      realDir = await fsp.realpath(absDir);
    } catch (e) {
      throw new LoadError(absDir, `model directory does not exist or cannot be resolved (${errMsg(e)})`, { cause: e });
    }
    if (opts?.root !== undefined) {
      const realRoot = await fsp.realpath(nodePath.resolve(opts.root)).catch((e) => {
        throw new LoadError(absDir, `checkpoint root ${opts.root} cannot be resolved (${errMsg(e)})`, { cause: e });
      });
      if (!isInside(realRoot, realDir) && realRoot !== realDir) {
        throw new LoadError(absDir, `model directory is not inside the given root ${realRoot}`);
      }
      realDir = realRoot;
    }
    const config = opts?.config ?? (await readJsonObject(nodePath.join(absDir, CONFIG_FILE)));

    const single = nodePath.join(absDir, SINGLE_FILE);
    const index = nodePath.join(absDir, INDEX_FILE);
    const shards = new Map<string, SafetensorsFile>();
    try {
      if (await exists(single)) {
        const real = await fsp.realpath(single);
        if (!isInside(realDir, real)) {
          throw new LoadError(single, `resolves (via symlink) to ${real}, outside the model directory ${realDir}`);
        }
        const f = await SafetensorsFile.open(single, opts);
        shards.set(f.path, f);
        return new Checkpoint(absDir, config, shards, new Map(f.tensors));
      }
      if (!(await exists(index))) {
        throw new LoadError(
          absDir,
          `no checkpoint found: looked for ${SINGLE_FILE} and ${INDEX_FILE} in ${absDir}, found neither`,
        );
      }
      const tensors = await Checkpoint.openSharded(absDir, realDir, index, shards, opts);
      return new Checkpoint(absDir, config, shards, tensors);
    } catch (e) {
      await Promise.allSettled([...shards.values()].map((s) => s.close()));
      if (e instanceof LoadError) throw e;
      throw new LoadError(absDir, `unexpected error while opening checkpoint: ${errMsg(e)}`, { cause: e });
    }
  }

  /** Validates the index, opens every shard once into `shards`, returns the merged tensor map. */
  private static async openSharded(
    absDir: string,
    realDir: string,
    index: string,
    shards: Map<string, SafetensorsFile>,
    opts?: OpenOptions,
  ): Promise<Map<string, TensorInfo>> {
    const idx = await readJsonObject(index);
    if (idx.metadata !== undefined && !isPlainObject(idx.metadata)) {
      throw new LoadError(index, `"metadata" must be an object if present, got ${describe(idx.metadata)}`);
    }
    const wm = idx.weight_map;
    if (wm === undefined) throw new LoadError(index, '"weight_map" is missing; expected an object mapping tensor names to shard files');
    if (!isPlainObject(wm)) throw new LoadError(index, `"weight_map" must be an object of tensor name -> shard file, got ${describe(wm)}`);

    // Resolve each distinct shard name once; key shards by absolute path (deduplicating aliases by realpath).
    const shardPathByName = new Map<string, string>(); // shard name as written -> absolute path
    const absByReal = new Map<string, string>();
    const wantedShard = new Map<string, string>(); // tensor -> absolute shard path
    for (const [tensor, shardName] of Object.entries(wm)) {
      if (typeof shardName !== 'string' || shardName === '') {
        throw new LoadError(index, `weight_map value must be a non-empty shard file name, got ${describe(shardName)}`, { tensor });
      }
      let abs = shardPathByName.get(shardName);
      if (abs === undefined) {
        abs = await Checkpoint.resolveShard(absDir, realDir, index, tensor, shardName, absByReal);
        shardPathByName.set(shardName, abs);
      }
      wantedShard.set(tensor, abs);
    }

    // Open each shard once.
    for (const abs of new Set(shardPathByName.values())) {
      const f = await SafetensorsFile.open(abs, opts);
      shards.set(abs, f);
    }

    // Tensors actually present: each must appear in exactly one shard, and that shard must be the mapped one.
    const tensors = new Map<string, TensorInfo>();
    const rel = (p: string) => nodePath.relative(absDir, p);
    for (const [abs, f] of shards) {
      for (const [name, info] of f.tensors) {
        const prev = tensors.get(name);
        if (prev) {
          throw new LoadError(
            index,
            `tensor appears in two shards: ${rel(prev.file)} and ${rel(abs)} (expected exactly one)`,
            { tensor: name },
          );
        }
        tensors.set(name, info);
      }
    }
    for (const [name, info] of tensors) {
      const want = wantedShard.get(name);
      if (want === undefined) {
        throw new LoadError(index, `tensor is present in shard ${rel(info.file)} but not listed in weight_map`, { tensor: name });
      }
      if (want !== info.file) {
        throw new LoadError(
          index,
          `weight_map maps the tensor to ${rel(want)}, but it is actually in shard ${rel(info.file)}`,
          { tensor: name },
        );
      }
    }
    for (const [name, want] of wantedShard) {
      if (!tensors.has(name)) {
        throw new LoadError(
          index,
          `tensor is listed in weight_map under shard ${rel(want)} but is not present in that shard (it has ${shards.get(want)?.tensors.size ?? 0} tensors)`,
          { tensor: name },
        );
      }
    }
    return tensors;
  }

  private static async resolveShard(
    absDir: string,
    realDir: string,
    index: string,
    tensor: string,
    shardName: string,
    absByReal: Map<string, string>,
  ): Promise<string> {
    const quoted = JSON.stringify(shardName);
    if (nodePath.isAbsolute(shardName) || nodePath.win32.isAbsolute(shardName)) {
      throw new LoadError(index, `shard path ${quoted} is absolute; expected a file name relative to ${absDir}`, { tensor });
    }
    if (shardName.includes('\0')) throw new LoadError(index, `shard path ${quoted} contains a NUL byte`, { tensor });
    const abs = nodePath.resolve(absDir, shardName);
    if (!isInside(absDir, abs) || abs === absDir) {
      throw new LoadError(index, `shard path ${quoted} escapes the model directory ${absDir} (resolves to ${abs})`, { tensor });
    }
    let real: string;
    try {
      real = await fsp.realpath(abs);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException)?.code;
      if (code === 'ENOENT') {
        throw new LoadError(index, `shard ${quoted} does not exist: expected a file at ${abs}`, { tensor, cause: e });
      }
      throw new LoadError(index, `cannot resolve shard ${quoted} at ${abs} (${errMsg(e)})`, { tensor, cause: e });
    }
    if (!isInside(realDir, real)) {
      throw new LoadError(
        index,
        `shard path ${quoted} resolves (via symlink) to ${real}, outside the model directory ${realDir}`,
        { tensor },
      );
    }
    const prior = absByReal.get(real);
    if (prior !== undefined) return prior;
    absByReal.set(real, abs);
    return abs;
  }

  get(name: string): TensorInfo | undefined {
    return this.tensors.get(name);
  }

  /** Read one tensor's bytes from its shard. */
  async read(name: string): Promise<Uint8Array> {
    const info = this.tensors.get(name);
    if (!info) throw new LoadError(this.dir, `no such tensor in checkpoint (it has ${this.tensors.size} tensors)`, { tensor: name });
    const shard = this.shards.get(info.file);
    if (!shard) throw new LoadError(this.dir, `checkpoint has been closed`, { tensor: name });
    return shard.read(name);
  }

  /** Read one tensor's bytes into a caller-provided buffer; returns the filled prefix. */
  async readInto(name: string, dst: Uint8Array): Promise<Uint8Array> {
    const info = this.tensors.get(name);
    if (!info) throw new LoadError(this.dir, `no such tensor in checkpoint (it has ${this.tensors.size} tensors)`, { tensor: name });
    const shard = this.shards.get(info.file);
    if (!shard) throw new LoadError(this.dir, `checkpoint has been closed`, { tensor: name });
    return shard.readInto(name, dst);
  }

  async close(): Promise<void> {
    const all = [...this.shards.values()];
    this.shards.clear();
    await Promise.all(all.map((s) => s.close()));
  }
}
