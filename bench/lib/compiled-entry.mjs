/**
 * The compiled daemon (`npm run build` → sidecar/dist/), started as an installed package's bin
 * starts it, for the footprint bench: its bundle (dist/bundle/main.js) when built, as the bin picks
 * it. BENCH_ENTRY=dist runs tsc's dist/main.js instead (the figures before the bundle). Plain
 * JavaScript: nothing here is type-stripped.
 */
import { existsSync } from 'node:fs'

const bundle = new URL('../../sidecar/dist/bundle/main.js', import.meta.url)
const modules = new URL('../../sidecar/dist/main.js', import.meta.url)
const entry = process.env['BENCH_ENTRY'] !== 'dist' && existsSync(bundle) ? bundle : modules
const { main } = await import(entry.href)
process.exit(await main(process.argv.slice(2)))
