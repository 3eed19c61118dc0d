// The server's .npy answers read in the browser: the header's dtype and shape, the data as doubles.
// The GUI draws its own views from these numbers, so what it shows is what the npy holds.

import { request } from "./api.js";

const TYPES = { f8: Float64Array, f4: Float32Array, i8: BigInt64Array, i4: Int32Array, i2: Int16Array, i1: Int8Array,
  u8: BigUint64Array, u4: Uint32Array, u2: Uint16Array, u1: Uint8Array, b1: Uint8Array };

/** An npy file's bytes -> {shape, data: Float64Array} (C order; little-endian or single-byte types). */
export function parseNpy(buffer) {
  const bytes = new Uint8Array(buffer);
  if (String.fromCharCode(...bytes.slice(1, 6)) !== "NUMPY") throw new Error("not an npy file");
  const major = bytes[6];
  const view = new DataView(buffer);
  const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = new TextDecoder().decode(bytes.slice(start, start + headerLen));
  const descr = /'descr':\s*'([<>|=]?)(\w\d+)'/.exec(header);
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)[1];
  const shape = shapeText.split(",").map((s) => s.trim()).filter(Boolean).map(Number);
  if (/True/.test(/'fortran_order':\s*(\w+)/.exec(header)[1])) throw new Error("Fortran-ordered npy");
  if (!descr || descr[1] === ">" || !TYPES[descr[2]]) throw new Error(`npy type ${descr && descr.slice(1).join("")} not read`);
  const Type = TYPES[descr[2]];
  const offset = start + headerLen;
  const count = shape.reduce((a, b) => a * b, 1);
  const raw = new Type(buffer.slice(offset, offset + count * Type.BYTES_PER_ELEMENT));
  const data = Type === Float64Array ? raw : Float64Array.from(raw, Number);
  return { shape, data };
}

export async function fetchNpy(url, options) {
  return parseNpy(await (await request(url, options)).arrayBuffer());
}
