// Started inside a test's network namespace (imds-redirect.test.ts): the emulator stands for the
// real IMDS there. Logs one JSON line with its IMDS port and managed identities, then runs until
// SIGTERM.
import { startEmulator } from '../../support/emulator.ts'

const emulator = await startEmulator()
process.stdout.write(
  `${JSON.stringify({
    msg: 'emulator',
    imdsUrl: emulator.imdsUrl,
    clientIds: emulator.state.managedIdentities.map((identity) => identity.clientId),
  })}\n`,
)
process.on('SIGTERM', () => void emulator.close().then(() => process.exit(0)))
