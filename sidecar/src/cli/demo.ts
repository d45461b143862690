export async function runDemo(_options: { port: number }): Promise<number> {
  return 1
}
