/**
 * Reads a body of at most `limit` bytes, whoever sent it (an upstream answer, a caller's request, a
 * resource's answer). A declared `Content-Length` above the limit is refused before a byte is read;
 * a body that grows past it (chunked, or lying about its length) is cut off there. Either way the
 * body's iterator is returned, which destroys a Node stream (closing the connection, never pooled
 * half-read) and cancels a web stream, and `tooLarge()` is thrown: nothing unbounded is ever held.
 */
export async function readBoundedBody(
  body: AsyncIterable<Uint8Array> | null,
  declaredLength: string | null | undefined,
  limit: number,
  tooLarge: () => Error,
): Promise<Buffer> {
  const chunks: Uint8Array[] = []
  let size = 0
  if (body) {
    if (Number(declaredLength ?? NaN) > limit) {
      await discard(body)
      throw tooLarge()
    }
    // Leaving the loop by a throw returns the iterator: the stream is destroyed or cancelled.
    for await (const chunk of body) {
      size += chunk.byteLength
      if (size > limit) throw tooLarge()
      chunks.push(chunk)
    }
  }
  return Buffer.concat(chunks, size)
}

/**
 * Drops a body nobody started reading. Returning a fresh async iterator does not run the stream's
 * clean-up (an async generator that never started has nothing to finish), so a Node stream is
 * destroyed and a web stream cancelled by name.
 */
async function discard(body: AsyncIterable<Uint8Array>): Promise<void> {
  const stream = body as { destroy?: () => void; cancel?: () => Promise<void> }
  if (typeof stream.destroy === 'function') stream.destroy()
  else if (typeof stream.cancel === 'function') await stream.cancel().catch(() => {})
  else await body[Symbol.asyncIterator]().return?.()
}
