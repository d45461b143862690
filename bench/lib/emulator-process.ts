/**
 * The emulator (IMDS v1/v2, Entra) in its own process for the bench, so its crypto and HTTP work
 * never run on the daemon's event loop. Talks to the bench over IPC: sends its URLs, then answers
 * `calls` (upstream calls by endpoint) and `reset`.
 */
import { startEmulator } from '../../sidecar/src/emulator/emulator.ts'

const emulator = await startEmulator()
const endpoints = [
  'imds.token',
  'imds.getplatformmetadata',
  'imds.issuecredential',
  'entra.token',
  'entra.mtls.token',
] as const
process.send?.({ imdsUrl: emulator.imdsUrl, entraUrl: emulator.entraUrl, caPem: emulator.caPem })
process.on('message', (message) => {
  if (message === 'calls') {
    process.send?.(Object.fromEntries(endpoints.map((e) => [e, emulator.state.calls.count(e)])))
  } else if (message === 'reset') {
    emulator.state.calls.reset()
    process.send?.('ok')
  }
})
process.on('disconnect', () => void emulator.close().then(() => process.exit(0)))
