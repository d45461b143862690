/**
 * Child process for imds-redirect.test.ts, run inside the test's network namespace (`ip netns exec
 * NS node netns-stack.ts`): the emulator, the daemon (no caller secret; identities `mi` and `uami`)
 * and the Azure CLI's stand-in Resource Manager, all on that namespace's 127.0.0.1. Prints one JSON
 * line `{url, dir, armUrl, subscriptionId, clientIds}` when ready, then answers one JSON line per
 * request line on stdin: `{"op":"served","resource","identity"}` (the daemon's /token answer),
 * `{"op":"logs"}` (its log records and text), `{"op":"arm"}` (tokens Resource Manager was called
 * with). Shuts everything down when stdin closes.
 */
import { createInterface } from 'node:readline'
import type { TestContext } from 'node:test'
import { startStack } from '../../support/stack.ts'
import { startArm } from './azure-cli-env.ts'
import { configYaml, stackView } from './harness.ts'

const cleanups: (() => unknown)[] = []
const context = { after: (fn: () => unknown) => cleanups.push(fn) } as unknown as TestContext
const print = (value: unknown) => process.stdout.write(`${JSON.stringify(value)}\n`)

const stack = await startStack(context, { configYaml: configYaml({ secret: false }) })
const arm = await startArm(stack.emulator.state)
cleanups.push(() => arm.close())
const view = stackView(stack)
print({
  url: stack.url,
  dir: stack.dir,
  armUrl: arm.url,
  subscriptionId: arm.subscriptionId,
  clientIds: stack.emulator.state.managedIdentities.map((m) => m.clientId),
})

for await (const line of createInterface({ input: process.stdin })) {
  const request = JSON.parse(line) as { op: string; resource?: string; identity?: string }
  if (request.op === 'served') print(await view.served(request.resource ?? '', request.identity ?? ''))
  else if (request.op === 'logs') print(await view.logs())
  else if (request.op === 'arm') print({ tokens: arm.tokens })
  else print({ error: `unknown op ${request.op}` })
}
for (const cleanup of cleanups.reverse()) await cleanup()
