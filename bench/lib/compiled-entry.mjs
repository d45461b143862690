/**
 * The compiled daemon (`npm run build` → sidecar/dist/), started as an installed package's bin
 * starts it, for the footprint bench. Plain JavaScript: nothing here is type-stripped.
 */
const { main } = await import(new URL('../../sidecar/dist/main.js', import.meta.url).href)
process.exit(await main(process.argv.slice(2)))
