// Writes safetensors files: the header for tensors laid out in order (also for callers that stream the
// data themselves, such as bench/make-checkpoint.ts), and whole files for tests and fixtures.
import * as fs from 'node:fs';
import { ITEM_SIZE, isStDType, numelOf } from './dtype.ts';
import type { StDType } from './dtype.ts';
import { LoadError } from './safetensors.ts';

/** Largest single fs write; Node rejects lengths above 2^31-1 bytes. */
const MAX_WRITE_CHUNK = 1 << 30;

export interface TensorSpec {
  name: string;
  dtype: StDType;
  shape: number[];
}

export interface EncodedHeader {
  /** 8-byte length prefix followed by the space-padded JSON header. */
  bytes: Uint8Array;
  /** Header length (the u64 value), a multiple of 8. */
  headerLength: number;
  /** Relative [begin, end) of each tensor in the data section, in input order. */
  offsets: [number, number][];
  /** Total data section length. */
  dataLength: number;
}

/**
 * Build the prefix + header for tensors laid out contiguously in the given order.
 * Used by `writeSafetensors` and by callers that stream tensor data themselves.
 */
export function encodeSafetensorsHeader(tensors: TensorSpec[], metadata?: Record<string, string>): EncodedHeader {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = { ...metadata };
  const offsets: [number, number][] = [];
  let off = 0;
  for (const t of tensors) {
    if (t.name === '__metadata__') throw new Error('tensor name "__metadata__" is reserved');
    if (Object.prototype.hasOwnProperty.call(header, t.name)) throw new Error(`duplicate tensor name ${JSON.stringify(t.name)}`);
    if (!isStDType(t.dtype)) throw new Error(`unsupported dtype ${JSON.stringify(t.dtype)}`);
    const n = Number(numelOf(t.shape)) * ITEM_SIZE[t.dtype];
    offsets.push([off, off + n]);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + n] };
    off += n;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const headerLength = Math.ceil(json.length / 8) * 8;
  const bytes = new Uint8Array(8 + headerLength).fill(0x20);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(headerLength), true);
  bytes.set(json, 8);
  return { bytes, headerLength, offsets, dataLength: off };
}

/** Write a complete safetensors file (header padded with spaces to a multiple of 8). */
export function writeSafetensors(
  path: string,
  tensors: { name: string; dtype: StDType; shape: number[]; data: Uint8Array }[],
  metadata?: Record<string, string>,
): void {
  const enc = encodeSafetensorsHeader(tensors, metadata);
  tensors.forEach((t, i) => {
    const [b, e] = enc.offsets[i];
    if (t.data.byteLength !== e - b) {
      throw new LoadError(path, `data length mismatch: shape ${JSON.stringify(t.shape)} x ${t.dtype} needs ${e - b} bytes, got ${t.data.byteLength}`, {
        tensor: t.name,
      });
    }
  });
  const fd = fs.openSync(path, 'w');
  try {
    fs.writeSync(fd, enc.bytes);
    for (const t of tensors) {
      let done = 0;
      while (done < t.data.byteLength) {
        done += fs.writeSync(fd, t.data, done, Math.min(t.data.byteLength - done, MAX_WRITE_CHUNK));
      }
    }
  } finally {
    fs.closeSync(fd);
  }
}
