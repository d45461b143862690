/** Small statistics helpers shared by the bench scripts. */

export function median(values: readonly number[]): number {
  return percentile(values, 50)
}

/** Nearest-rank percentile; NaN for an empty list. */
export function percentile(values: readonly number[] | Float64Array, p: number): number {
  if (values.length === 0) return Number.NaN
  const sorted = Float64Array.from(values).sort()
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[rank] ?? Number.NaN
}

export function fixed(value: number, digits = 1): string {
  return Number.isFinite(value) ? value.toFixed(digits) : 'n/a'
}

/**
 * Runs `a` and `b` interleaved A B B A, `rounds` times, so drift (other load on a shared machine,
 * thermal) hits both series alike. Returns every sample of each.
 */
export async function interleaved<T>(
  rounds: number,
  a: () => Promise<T>,
  b: () => Promise<T>,
): Promise<{ a: T[]; b: T[] }> {
  const as: T[] = []
  const bs: T[] = []
  for (let round = 0; round < rounds; round++) {
    as.push(await a())
    bs.push(await b())
    bs.push(await b())
    as.push(await a())
  }
  return { a: as, b: bs }
}

/** Bench knobs from the environment, bounded so a typo cannot start an hour-long run. */
export function knob(name: string, fallback: number, max: number): number {
  const raw = process.env[name]
  const value = raw === undefined ? fallback : Number(raw)
  if (!Number.isFinite(value) || value <= 0) return fallback
  return Math.min(value, max)
}
