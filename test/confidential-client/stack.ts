import { Agent, request } from 'undici'
import type { Emulator } from '../../sidecar/src/emulator/emulator.ts'
import type { LogCapture } from '../support/runtime.ts'

/** An app certificate issued by the emulator's CA (CN defaults to `app`). */
export async function issueAppCertificate(emulator: Emulator, commonName = 'app') {
  return emulator.state.ca.issueWithNewKey({
    subject: [{ shortName: 'CN', value: commonName }],
    usage: 'client',
    validityMs: 30 * 24 * 3600_000,
  })
}

/** Calls the demo resource's whoami with `authorization`, presenting `cert` in the TLS handshake. */
export async function callDemoResource(
  emulator: Emulator,
  authorization: string,
  cert?: { certificate: string; private_key: string },
): Promise<{ status: number; body: Record<string, unknown> }> {
  const agent = new Agent({
    connect: { ca: [emulator.caPem], ...(cert ? { cert: cert.certificate, key: cert.private_key } : {}) },
  })
  try {
    const res = await request(`${emulator.resourceUrl}/api/whoami`, {
      dispatcher: agent,
      headers: { authorization },
    })
    return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> }
  } finally {
    await agent.close()
  }
}

/** Fails if any of `secrets` appears in the daemon's log output. */
export function secretsInLogs(logs: LogCapture, secrets: string[]): string[] {
  const text = logs.text
  return secrets.filter((secret) => secret.length >= 8 && text.includes(secret))
}
