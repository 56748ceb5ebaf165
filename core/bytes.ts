/**
 * Byte-array helpers shared by the core and the adapters.
 * @module
 */

/** `parts` joined into one new array; `length` is their total when the caller already counted it. */
export function concatBytes(parts: readonly Uint8Array[], length?: number): Uint8Array<ArrayBuffer> {
  let total = length
  if (total === undefined) {
    total = 0
    for (const part of parts) total += part.byteLength
  }
  const joined = new Uint8Array(total)
  let offset = 0
  for (const part of parts) {
    joined.set(part, offset)
    offset += part.byteLength
  }
  return joined
}
