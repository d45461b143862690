import type { SidecarError } from '../../core/errors.ts'

/**
 * Reads a web body of at most `limit` bytes. A declared `Content-Length` above the limit is refused
 * before a byte is read; a body that grows past it (chunked, or lying about its length) is cut off
 * there. Either way the stream is cancelled and `tooLarge()` is thrown: nothing unbounded is ever
 * held in memory, whoever sent it (a caller's request, a resource's answer).
 */
export async function readBoundedBody(
  body: ReadableStream<Uint8Array> | null,
  declaredLength: string | null | undefined,
  limit: number,
  tooLarge: () => SidecarError,
): Promise<Buffer> {
  if (Number(declaredLength ?? NaN) > limit) {
    await body?.cancel().catch(() => {})
    throw tooLarge()
  }
  const chunks: Uint8Array[] = []
  let size = 0
  if (body) {
    const reader = body.getReader()
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      size += value.byteLength
      if (size > limit) {
        await reader.cancel().catch(() => {})
        throw tooLarge()
      }
      chunks.push(value)
    }
  }
  return Buffer.concat(chunks, size)
}
