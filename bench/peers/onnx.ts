// A minimal ONNX model writer: just enough of the protobuf wire format (varints, length-delimited
// fields, fixed32 floats) and of onnx.proto's ModelProto / GraphProto / NodeProto / TensorProto /
// ValueInfoProto / AttributeProto to build single-op graphs at bench time, so that no binary .onnx
// file is committed. Field numbers are those of onnx/onnx.proto (IR version 8 era; all still valid).
//
// Only the fields used by the peer bench are written: dense float32 tensors (raw_data), int64 tensors,
// static shapes, and int / float / ints attributes.

/** A protobuf message under construction: append fields, then `bytes()`. */
class Writer {
  private parts: Uint8Array[] = [];
  private len = 0;

  private push(b: Uint8Array): void {
    this.parts.push(b);
    this.len += b.length;
  }

  private varint(v: number | bigint): void {
    // Negative int64 values are written as 10-byte two's complement varints, as protobuf does.
    let x = BigInt.asUintN(64, BigInt(v));
    const out: number[] = [];
    while (x >= 0x80n) {
      out.push(Number(x & 0x7fn) | 0x80);
      x >>= 7n;
    }
    out.push(Number(x));
    this.push(Uint8Array.from(out));
  }

  private tag(field: number, wire: 0 | 1 | 2 | 5): void {
    this.varint((field << 3) | wire);
  }

  int(field: number, v: number | bigint): this {
    this.tag(field, 0);
    this.varint(v);
    return this;
  }

  float(field: number, v: number): this {
    this.tag(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.push(b);
    return this;
  }

  bytes(field: number, b: Uint8Array): this {
    this.tag(field, 2);
    this.varint(b.length);
    this.push(b);
    return this;
  }

  string(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }

  message(field: number, m: Writer): this {
    return this.bytes(field, m.finish());
  }

  /** Packed repeated varints (proto3 default for repeated scalars; proto2 parsers accept it too). */
  packedInts(field: number, vs: readonly (number | bigint)[]): this {
    const w = new Writer();
    for (const v of vs) w.varint(v);
    return this.bytes(field, w.finish());
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.len);
    let o = 0;
    for (const p of this.parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }
}

/** onnx.TensorProto.DataType values used here. */
export const DT = { FLOAT: 1, UINT8: 2, INT32: 6, INT64: 7, FLOAT16: 10 } as const;
export type ElemType = (typeof DT)[keyof typeof DT];

export type Attr = number | { float: number } | { ints: number[] } | { string: string };

export interface OnnxNode {
  op: string;
  inputs: string[];
  outputs: string[];
  /** '' (default) is the ONNX domain; 'com.microsoft' for contrib ops. */
  domain?: string;
  /** Integers are written as INT attributes; { float } as FLOAT; { ints } as INTS. */
  attrs?: Record<string, Attr | undefined>;
}

export interface OnnxValue {
  name: string;
  shape: number[];
  type?: ElemType;
}

export interface OnnxInitializer extends OnnxValue {
  /** Float32Array for FLOAT, BigInt64Array for INT64, Int32Array for INT32, Uint16Array (bits) for FLOAT16, Uint8Array for UINT8. */
  data: Float32Array | BigInt64Array | Int32Array | Uint16Array | Uint8Array;
}

export interface OnnxModel {
  nodes: OnnxNode[];
  inputs: OnnxValue[];
  outputs: OnnxValue[];
  initializers?: OnnxInitializer[];
  /** Opsets imported, by domain; defaults to { '': 17 }. */
  opsets?: Record<string, number>;
  name?: string;
}

// Attribute types (onnx.AttributeProto.AttributeType).
const AT_FLOAT = 1;
const AT_INT = 2;
const AT_STRING = 3;
const AT_INTS = 7;

function attribute(name: string, a: Attr): Writer {
  const w = new Writer().string(1, name);
  if (typeof a === 'number') {
    if (!Number.isInteger(a)) throw new Error(`onnx: attribute ${name} = ${a}: write non-integers as { float }`);
    return w.int(3, a).int(20, AT_INT);
  }
  if ('float' in a) return w.float(2, a.float).int(20, AT_FLOAT);
  if ('string' in a) return w.bytes(4, new TextEncoder().encode(a.string)).int(20, AT_STRING);
  return w.packedInts(8, a.ints).int(20, AT_INTS);
}

function valueInfo(v: OnnxValue): Writer {
  const shape = new Writer();
  for (const d of v.shape) shape.message(1, new Writer().int(1, d)); // Dimension.dim_value
  const tensorType = new Writer().int(1, v.type ?? DT.FLOAT).message(2, shape);
  return new Writer().string(1, v.name).message(2, new Writer().message(1, tensorType)); // TypeProto.tensor_type
}

function tensor(t: OnnxInitializer): Writer {
  const w = new Writer().packedInts(1, t.shape).int(2, t.type ?? DT.FLOAT).string(8, t.name);
  const size = t.shape.reduce((a, b) => a * b, 1);
  if (t.data.length !== size) throw new Error(`onnx: initializer ${t.name} has ${t.data.length} values for shape [${t.shape}]`);
  // raw_data is little-endian, which every typed array on the platforms we run on already is.
  return w.bytes(9, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
}

function node(n: OnnxNode, i: number): Writer {
  const w = new Writer();
  for (const s of n.inputs) w.string(1, s);
  for (const s of n.outputs) w.string(2, s);
  w.string(3, `${n.op}_${i}`).string(4, n.op);
  for (const [k, v] of Object.entries(n.attrs ?? {})) if (v !== undefined) w.message(5, attribute(k, v));
  if (n.domain) w.string(7, n.domain);
  return w;
}

/** Serializes a ModelProto (IR version 8) for the given graph. */
export function encodeModel(m: OnnxModel): Uint8Array {
  const g = new Writer();
  m.nodes.forEach((n, i) => g.message(1, node(n, i)));
  g.string(2, m.name ?? 'graph');
  for (const t of m.initializers ?? []) g.message(5, tensor(t));
  for (const v of m.inputs) g.message(11, valueInfo(v));
  for (const v of m.outputs) g.message(12, valueInfo(v));
  const model = new Writer().int(1, 8).string(2, 'webgpu-vlm bench/peers');
  for (const [domain, version] of Object.entries(m.opsets ?? { '': 17 })) {
    model.message(8, new Writer().string(1, domain).int(2, version));
  }
  return model.message(7, g).finish();
}
