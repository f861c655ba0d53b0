/**
 * Safetensors reader (CPU only). Decoding tensor bytes to numbers on the CPU is in decode.ts, writing
 * files in safetensors-write.ts (read, decode and write kept apart, as in tinygrad's nn/state.py).
 *
 * File layout: 8-byte little-endian u64 header length N, then N bytes of UTF-8
 * JSON, then the data section. The JSON maps tensor names to
 * `{ dtype, shape, data_offsets: [begin, end] }` (offsets relative to the data
 * section) plus an optional `__metadata__` object of string values.
 *
 * `SafetensorsFile.open` reads only the 8-byte prefix and the header, validates
 * everything it can, and keeps a FileHandle open; `read(name)` does a ranged
 * read of exactly one tensor's bytes. Every problem detected is reported as a
 * `LoadError` naming the file (and tensor, where relevant) and the expected vs
 * actual values.
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as nodePath from 'node:path';
import { ITEM_SIZE, NUMEL_LIMIT, ST_DTYPES, isStDType, numelOf } from './dtype.ts';
import type { StDType } from './dtype.ts';
import { jsonText } from './json.ts';

export type { StDType } from './dtype.ts';

/** Default cap on the JSON header size (100 MiB). */
export const DEFAULT_MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** Largest single fs read; Node rejects reads above 2^31-1 bytes. */
const MAX_READ_CHUNK = 1 << 30;

export class LoadError extends Error {
  readonly file: string;
  readonly tensor?: string;

  constructor(file: string, message: string, opts?: { tensor?: string; cause?: unknown }) {
    const where = opts?.tensor !== undefined ? `${file}: tensor ${JSON.stringify(opts.tensor)}` : file;
    super(`${where}: ${message}`, opts?.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = 'LoadError';
    this.file = file;
    if (opts?.tensor !== undefined) this.tensor = opts.tensor;
  }
}

export interface TensorInfo {
  name: string;
  dtype: StDType;
  shape: number[];
  /** Path of the file holding the tensor (as passed to `SafetensorsFile.open`, resolved). */
  file: string;
  /** Absolute byte offset of the first byte in the file (8 + headerLen + data_offsets[0]). */
  begin: number;
  /** Absolute byte offset one past the last byte in the file (8 + headerLen + data_offsets[1]). */
  end: number;
}

export interface OpenOptions {
  /** Reject headers longer than this many bytes. Default 100 MiB. */
  maxHeaderBytes?: number;
  /**
   * Checkpoint only: the folder that shard files (after following symlinks) must lie in. Default: the
   * model directory. The Hugging Face cache passes the repository folder, since a snapshot's files
   * are links into its blobs/.
   */
  root?: string;
  /** Checkpoint only: config.json as already read (see ModelDir); read from the folder when absent. */
  config?: Record<string, unknown>;
}

function errMsg(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}

function describe(v: unknown): string {
  if (v === undefined) return 'undefined';
  if (Array.isArray(v)) return 'an array';
  if (v === null) return 'null';
  if (typeof v === 'object') return 'an object';
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  if (s.length > 60) s = s.slice(0, 57) + '...';
  return `${typeof v} ${s}`;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isNonNegSafeInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Read exactly `length` bytes at `position` into `dst[offset..]`; returns bytes actually read (less only at EOF). */
async function readFully(
  fh: fsp.FileHandle,
  dst: Uint8Array,
  offset: number,
  length: number,
  position: number,
): Promise<number> {
  let done = 0;
  while (done < length) {
    const want = Math.min(length - done, MAX_READ_CHUNK);
    const { bytesRead } = await fh.read(dst, offset + done, want, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

export class SafetensorsFile {
  readonly path: string;
  readonly metadata: Record<string, string>;
  readonly tensors: Map<string, TensorInfo>;
  /** Length of the JSON header in bytes (the u64 prefix value). */
  readonly headerLength: number;
  /** Total file size in bytes at open time. */
  readonly fileSize: number;
  private fh: fsp.FileHandle | null;

  private constructor(
    path: string,
    fh: fsp.FileHandle,
    metadata: Record<string, string>,
    tensors: Map<string, TensorInfo>,
    headerLength: number,
    fileSize: number,
  ) {
    this.path = path;
    this.fh = fh;
    this.metadata = metadata;
    this.tensors = tensors;
    this.headerLength = headerLength;
    this.fileSize = fileSize;
  }

  static async open(path: string, opts?: OpenOptions): Promise<SafetensorsFile> {
    const file = nodePath.resolve(path);
    const cap = opts?.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
    if (!isNonNegSafeInt(cap)) {
      throw new LoadError(file, `maxHeaderBytes must be a non-negative safe integer, got ${describe(cap)}`);
    }
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(file, 'r');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException)?.code;
      const what = code === 'ENOENT' ? 'file does not exist' : `cannot open file (${errMsg(e)})`;
      throw new LoadError(file, what, { cause: e });
    }
    try {
      const parsed = await SafetensorsFile.parse(file, fh, cap);
      return new SafetensorsFile(file, fh, parsed.metadata, parsed.tensors, parsed.headerLength, parsed.fileSize);
    } catch (e) {
      await fh.close().catch(() => {});
      if (e instanceof LoadError) throw e;
      throw new LoadError(file, `unexpected error while reading header: ${errMsg(e)}`, { cause: e });
    }
  }

  private static async parse(
    file: string,
    fh: fsp.FileHandle,
    cap: number,
  ): Promise<{ metadata: Record<string, string>; tensors: Map<string, TensorInfo>; headerLength: number; fileSize: number }> {
    let st: fs.Stats;
    try {
      st = await fh.stat();
    } catch (e) {
      throw new LoadError(file, `cannot stat file (${errMsg(e)})`, { cause: e });
    }
    if (!st.isFile()) throw new LoadError(file, 'not a regular file');
    const fileSize = st.size;
    if (fileSize < 8) {
      throw new LoadError(
        file,
        `file is too short: expected at least 8 bytes for the header length prefix, got ${fileSize} bytes`,
      );
    }

    // --- 8-byte little-endian u64 header length.
    const prefix = new Uint8Array(8);
    const got = await readFully(fh, prefix, 0, 8, 0);
    if (got !== 8) {
      throw new LoadError(file, `file is too short: expected 8 bytes for the header length prefix, read ${got}`);
    }
    const n64 = new DataView(prefix.buffer).getBigUint64(0, true);
    if (n64 > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new LoadError(
        file,
        `header length ${n64} is not a plausible size (exceeds Number.MAX_SAFE_INTEGER = ${Number.MAX_SAFE_INTEGER}); corrupt or not a safetensors file`,
      );
    }
    const headerLength = Number(n64);
    if (headerLength > cap) {
      throw new LoadError(
        file,
        `header length ${headerLength} bytes exceeds the cap of ${cap} bytes (maxHeaderBytes); corrupt file or raise the cap`,
      );
    }
    if (8 + headerLength > fileSize) {
      throw new LoadError(
        file,
        `header length ${headerLength} extends beyond the end of the file: expected file size >= ${8 + headerLength} bytes (8 + header), got ${fileSize} bytes (truncated?)`,
      );
    }
    const dataLength = fileSize - 8 - headerLength;

    // --- JSON header.
    const headerBytes = new Uint8Array(headerLength);
    const gotH = await readFully(fh, headerBytes, 0, headerLength, 8);
    if (gotH !== headerLength) {
      throw new LoadError(file, `unexpected end of file in header: expected ${headerLength} bytes, read ${gotH}`);
    }
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
    } catch (e) {
      throw new LoadError(file, `header is not valid UTF-8 (${errMsg(e)})`, { cause: e });
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new LoadError(file, `header is not valid JSON (${errMsg(e)})`, { cause: e });
    }
    if (!isPlainObject(json)) {
      throw new LoadError(file, `header JSON must be an object mapping tensor names to entries, got ${describe(json)}`);
    }

    const metadata: Record<string, string> = {};
    const tensors = new Map<string, TensorInfo>();
    const base = 8 + headerLength;
    // Relative offsets for range/overlap checks.
    const spans: { name: string; b: number; e: number }[] = [];

    for (const [name, entry] of Object.entries(json)) {
      if (name === '__metadata__') {
        if (!isPlainObject(entry)) {
          throw new LoadError(file, `__metadata__ must be an object of string values, got ${describe(entry)}`);
        }
        for (const [k, v] of Object.entries(entry)) {
          if (typeof v !== 'string') {
            throw new LoadError(
              file,
              `__metadata__[${JSON.stringify(k)}] must be a string, got ${describe(v)}`,
            );
          }
          metadata[k] = v;
        }
        continue;
      }
      const fail = (msg: string): never => {
        throw new LoadError(file, msg, { tensor: name });
      };
      if (!isPlainObject(entry)) fail(`entry must be an object with dtype, shape, data_offsets; got ${describe(entry)}`);
      const ent = entry as Record<string, unknown>;

      const dtype = ent.dtype;
      if (dtype === undefined) fail('missing "dtype"');
      if (typeof dtype !== 'string' || !isStDType(dtype)) {
        fail(`unsupported dtype ${describe(dtype)}; expected one of ${ST_DTYPES.join(', ')}`);
      }

      const shape = ent.shape;
      if (shape === undefined) fail('missing "shape"');
      if (!Array.isArray(shape)) fail(`"shape" must be an array of non-negative integers, got ${describe(shape)}`);
      const shapeArr = shape as unknown[];
      for (let i = 0; i < shapeArr.length; i++) {
        if (!isNonNegSafeInt(shapeArr[i])) {
          fail(`shape[${i}] must be a non-negative safe integer, got ${describe(shapeArr[i])} (shape ${jsonText(shape)})`);
        }
      }

      const offs = ent.data_offsets;
      if (offs === undefined) fail('missing "data_offsets"');
      if (!Array.isArray(offs) || offs.length !== 2) {
        fail(`"data_offsets" must be [begin, end], got ${describe(offs)}${Array.isArray(offs) ? ` of length ${offs.length}` : ''}`);
      }
      const [b, e] = offs as unknown[];
      if (!isNonNegSafeInt(b)) fail(`data_offsets begin must be a non-negative safe integer, got ${describe(b)}`);
      if (!isNonNegSafeInt(e)) fail(`data_offsets end must be a non-negative safe integer, got ${describe(e)}`);
      const begin = b as number;
      const end = e as number;
      if (begin > end) fail(`data_offsets begin ${begin} is greater than end ${end}`);

      const dt = dtype as StDType;
      const dims = shapeArr as number[];
      const numel = numelOf(dims);
      const expectedBytes = numel * BigInt(ITEM_SIZE[dt]);
      const actualBytes = end - begin;
      if (expectedBytes !== BigInt(actualBytes)) {
        fail(
          `size mismatch: shape ${JSON.stringify(dims)} x ${dt} (${ITEM_SIZE[dt]} bytes/element) needs ${numel > NUMEL_LIMIT ? 'more than 2^256' : expectedBytes} bytes, ` +
            `but data_offsets [${begin}, ${end}] span ${actualBytes} bytes`,
        );
      }
      spans.push({ name, b: begin, e: end });
      tensors.set(name, { name, dtype: dt, shape: dims.slice(), file, begin: base + begin, end: base + end });
    }

    // --- Range, overlap and coverage checks.
    let maxEnd = 0;
    let maxEndName = '';
    for (const s of spans) {
      if (s.e > maxEnd) {
        maxEnd = s.e;
        maxEndName = s.name;
      }
    }
    if (maxEnd > dataLength) {
      throw new LoadError(
        file,
        `data_offsets end ${maxEnd} is beyond the data section: expected the data section to hold >= ${maxEnd} bytes, ` +
          `got ${dataLength} bytes (file size ${fileSize} = 8 + header ${headerLength} + data ${dataLength}; truncated?)`,
        { tensor: maxEndName },
      );
    }
    const nonEmpty = spans.filter((s) => s.e > s.b).sort((x, y) => x.b - y.b || x.e - y.e);
    for (let i = 1; i < nonEmpty.length; i++) {
      const p = nonEmpty[i - 1];
      const c = nonEmpty[i];
      if (c.b < p.e) {
        throw new LoadError(
          file,
          `tensors overlap: ${JSON.stringify(p.name)} occupies [${p.b}, ${p.e}) and ${JSON.stringify(c.name)} occupies [${c.b}, ${c.e}) ` +
            `(expected ${JSON.stringify(c.name)} to begin at >= ${p.e})`,
          { tensor: c.name },
        );
      }
    }
    if (dataLength !== maxEnd) {
      throw new LoadError(
        file,
        `data section length mismatch: tensors end at byte ${maxEnd} of the data section, but the data section is ${dataLength} bytes ` +
          `(${dataLength - maxEnd} trailing bytes; file size ${fileSize} = 8 + header ${headerLength} + data)`,
      );
    }

    return { metadata, tensors, headerLength, fileSize };
  }

  /** Tensor info by name, or undefined. */
  get(name: string): TensorInfo | undefined {
    return this.tensors.get(name);
  }

  private info(name: string): TensorInfo {
    const info = this.tensors.get(name);
    if (!info) {
      throw new LoadError(this.path, `no such tensor in this file (it has ${this.tensors.size} tensors)`, { tensor: name });
    }
    return info;
  }

  private handle(name: string): fsp.FileHandle {
    if (!this.fh) throw new LoadError(this.path, 'file has been closed', { tensor: name });
    return this.fh;
  }

  /** Read one tensor's bytes (a fresh buffer of exactly end - begin bytes). */
  async read(name: string): Promise<Uint8Array> {
    const info = this.info(name);
    const fh = this.handle(name);
    const len = info.end - info.begin;
    let buf: Uint8Array;
    try {
      buf = new Uint8Array(len);
    } catch (e) {
      throw new LoadError(this.path, `cannot allocate ${len} bytes for the tensor (${errMsg(e)})`, { tensor: name, cause: e });
    }
    await this.readSpan(info, fh, buf);
    return buf;
  }

  /**
   * Read one tensor's bytes into `dst` (which must have at least end - begin bytes);
   * returns the filled prefix of `dst`. Lets callers reuse a staging buffer.
   */
  async readInto(name: string, dst: Uint8Array): Promise<Uint8Array> {
    const info = this.info(name);
    const fh = this.handle(name);
    const len = info.end - info.begin;
    if (dst.byteLength < len) {
      throw new LoadError(this.path, `destination buffer too small: expected >= ${len} bytes, got ${dst.byteLength}`, {
        tensor: name,
      });
    }
    const view = dst.subarray(0, len);
    await this.readSpan(info, fh, view);
    return view;
  }

  private async readSpan(info: TensorInfo, fh: fsp.FileHandle, dst: Uint8Array): Promise<void> {
    const len = info.end - info.begin;
    let got: number;
    try {
      got = await readFully(fh, dst, 0, len, info.begin);
    } catch (e) {
      throw new LoadError(this.path, `read of bytes [${info.begin}, ${info.end}) failed (${errMsg(e)})`, {
        tensor: info.name,
        cause: e,
      });
    }
    if (got !== len) {
      throw new LoadError(
        this.path,
        `unexpected end of file: expected ${len} bytes at offset ${info.begin}, got ${got} (file changed since open?)`,
        { tensor: info.name },
      );
    }
  }

  async close(): Promise<void> {
    const fh = this.fh;
    this.fh = null;
    if (fh) await fh.close();
  }
}
