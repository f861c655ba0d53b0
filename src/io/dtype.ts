/** Element types that can appear in a safetensors header and that this runtime understands. */
export type StDType = 'F32' | 'F16' | 'BF16' | 'I32' | 'I64' | 'I8' | 'U8' | 'BOOL';

/** Bytes per element for each dtype. */
export const ITEM_SIZE: Record<StDType, number> = {
  F32: 4,
  F16: 2,
  BF16: 2,
  I32: 4,
  I64: 8,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

export const ST_DTYPES: readonly StDType[] = Object.keys(ITEM_SIZE) as StDType[];

export function isStDType(s: string): s is StDType {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(ITEM_SIZE, s);
}

/** Element counts above this cannot match any file; `numelOf` stops multiplying once past it. */
export const NUMEL_LIMIT = 1n << 256n;

/**
 * Product of the dims, exact up to NUMEL_LIMIT; above it, some value > NUMEL_LIMIT (a long shape of
 * huge dims would otherwise cost quadratic BigInt time: 55k dims of 2^53 took over a minute).
 */
export function numelOf(shape: readonly number[]): bigint {
  if (shape.includes(0)) return 0n;
  let n = 1n;
  for (const d of shape) {
    n *= BigInt(d);
    if (n > NUMEL_LIMIT) return n;
  }
  return n;
}
