/** `baseMs` doubled per failure after the first, at most `maxMs`. */
export function exponentialBackoff(baseMs: number, maxMs: number, failures: number): number {
  return Math.min(baseMs * 2 ** (failures - 1), maxMs)
}
