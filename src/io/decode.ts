// Tensor bytes as read from a safetensors file (SafetensorsFile.read) decoded to numbers on the CPU, for
// references, inputs and tests: F32/F16/BF16 to Float32Array, integer and BOOL dtypes to Int32Array. The
// upload path does not use this (weights go to the GPU as stored). Errors name the file and the tensor.
import { getFloat16 } from '@petamoriken/float16';
import { ITEM_SIZE, numelOf } from './dtype.ts';
import { LoadError, type TensorInfo } from './safetensors.ts';

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

let f16Table: Float32Array | null = null;
/** 65536-entry f16 bit pattern -> f32 table, built once with @petamoriken/float16. */
function f16ToF32Table(): Float32Array {
  if (f16Table) return f16Table;
  const t = new Float32Array(65536);
  const dv = new DataView(new ArrayBuffer(2));
  for (let h = 0; h < 65536; h++) {
    dv.setUint16(0, h, true);
    t[h] = getFloat16(dv, 0, true);
  }
  f16Table = t;
  return t;
}

function checkBytes(info: TensorInfo, bytes: Uint8Array): number {
  const expected = info.end - info.begin;
  const numel = Number(numelOf(info.shape));
  if (bytes.byteLength !== expected || expected !== numel * ITEM_SIZE[info.dtype]) {
    throw new LoadError(
      info.file,
      `byte length mismatch: shape ${JSON.stringify(info.shape)} x ${info.dtype} needs ${numel * ITEM_SIZE[info.dtype]} bytes ` +
        `(span ${expected}), got ${bytes.byteLength}`,
      { tensor: info.name },
    );
  }
  return numel;
}

/** A view of `bytes` with the given alignment, copying only when the byte offset is unaligned. */
function aligned(bytes: Uint8Array, align: number): Uint8Array {
  if (bytes.byteOffset % align === 0) return bytes;
  return bytes.slice();
}

/**
 * Decode F32/F16/BF16 tensor bytes to a Float32Array. For F32 with an aligned
 * byteOffset the result is a view sharing memory with `bytes`; otherwise a new array.
 */
export function toFloat32(info: TensorInfo, bytes: Uint8Array): Float32Array {
  const n = checkBytes(info, bytes);
  switch (info.dtype) {
    case 'F32': {
      if (LITTLE_ENDIAN) {
        const a = aligned(bytes, 4);
        return new Float32Array(a.buffer, a.byteOffset, n);
      }
      const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = dv.getFloat32(i * 4, true);
      return out;
    }
    case 'F16': {
      const table = f16ToF32Table();
      const out = new Float32Array(n);
      if (LITTLE_ENDIAN) {
        const a = aligned(bytes, 2);
        const u16 = new Uint16Array(a.buffer, a.byteOffset, n);
        for (let i = 0; i < n; i++) out[i] = table[u16[i]];
      } else {
        const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        for (let i = 0; i < n; i++) out[i] = table[dv.getUint16(i * 2, true)];
      }
      return out;
    }
    case 'BF16': {
      const out = new Float32Array(n);
      const bits = new Uint32Array(out.buffer);
      if (LITTLE_ENDIAN) {
        const a = aligned(bytes, 2);
        const u16 = new Uint16Array(a.buffer, a.byteOffset, n);
        for (let i = 0; i < n; i++) bits[i] = u16[i] << 16;
      } else {
        const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        const ov = new DataView(out.buffer);
        for (let i = 0; i < n; i++) ov.setUint32(i * 4, dv.getUint16(i * 2, true) << 16);
      }
      return out;
    }
    default:
      throw new LoadError(info.file, `toFloat32: dtype ${info.dtype} is not a float type; expected F32, F16 or BF16`, {
        tensor: info.name,
      });
  }
}

/**
 * Decode I32/I64/U8/I8/BOOL tensor bytes to an Int32Array. I64 values must fit
 * in int32. BOOL bytes become 0/1. For I32 with an aligned byteOffset the result
 * is a view sharing memory with `bytes`; otherwise a new array.
 */
export function toInt32(info: TensorInfo, bytes: Uint8Array): Int32Array {
  const n = checkBytes(info, bytes);
  switch (info.dtype) {
    case 'I32': {
      if (LITTLE_ENDIAN) {
        const a = aligned(bytes, 4);
        return new Int32Array(a.buffer, a.byteOffset, n);
      }
      const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) out[i] = dv.getInt32(i * 4, true);
      return out;
    }
    case 'I64': {
      const out = new Int32Array(n);
      const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      for (let i = 0; i < n; i++) {
        const lo = dv.getUint32(i * 8, true);
        const hi = dv.getInt32(i * 8 + 4, true);
        // Fits in int32 iff hi is the sign extension of lo's bit 31.
        if (hi !== (lo >> 31)) {
          throw new LoadError(
            info.file,
            `I64 value at index ${i} is ${dv.getBigInt64(i * 8, true)}, outside the int32 range [-2147483648, 2147483647]`,
            { tensor: info.name },
          );
        }
        out[i] = lo | 0;
      }
      return out;
    }
    case 'U8': {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) out[i] = bytes[i];
      return out;
    }
    case 'I8': {
      const src = new Int8Array(bytes.buffer, bytes.byteOffset, n);
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) out[i] = src[i];
      return out;
    }
    case 'BOOL': {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) out[i] = bytes[i] !== 0 ? 1 : 0;
      return out;
    }
    default:
      throw new LoadError(info.file, `toInt32: dtype ${info.dtype} is not an integer type; expected I32, I64, U8, I8 or BOOL`, {
        tensor: info.name,
      });
  }
}
