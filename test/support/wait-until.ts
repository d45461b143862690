type Truthy<T> = Exclude<T, false | 0 | '' | null | undefined>

/**
 * Waits in real time until `condition` holds (it may be async, e.g. a probe of an endpoint) and
 * returns its first truthy value. Tests wait for the state they need instead of sleeping a fixed
 * time: on a loaded 2-core CI machine a fixed pause is sometimes too short, and the generous bound
 * only matters when the behaviour is wrong.
 */
export async function waitUntil<T>(
  condition: () => T | Promise<T>,
  what: string,
  { timeoutMs = 30_000, intervalMs = 25 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<Truthy<T>> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await condition()
    if (value) return value as Truthy<T>
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}
