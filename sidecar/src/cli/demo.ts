import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseConfig } from '../config/load.ts'
import { Daemon } from '../daemon/daemon.ts'
import { startEmulator } from '../emulator/emulator.ts'
import { createLogger } from '../core/log.ts'

/**
 * `credential-sidecar demo`: the built-in emulator (IMDS v1/v2, Entra, a demo mTLS resource) and
 * the daemon wired to it, on loopback, with the exact commands to try. Runs until Ctrl-C or
 * SIGTERM, then removes its temporary directory: it holds the private key of step 2.
 */
export async function runDemo(options: { port: number }): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'credential-sidecar-demo-'))
  const removeDir = () => rmSync(dir, { recursive: true, force: true })
  // Last resort for any exit path (process.exit, a fatal error): 'exit' handlers run synchronously.
  process.once('exit', removeDir)
  try {
    return await serveDemo(options, dir)
  } finally {
    removeDir()
  }
}

async function serveDemo(options: { port: number }, dir: string): Promise<number> {
  const emulator = await startEmulator()
  const caFile = join(dir, 'emulator-ca.pem')
  writeFileSync(caFile, emulator.caPem, { mode: 0o600 })
  const uami = emulator.state.managedIdentities[1]!
  const yaml = (port: number) => `listen:
  host: 127.0.0.1
  port: ${port}
upstream:
  imdsEndpoint: ${emulator.imdsUrl}
  authorityHost: ${emulator.entraUrl}
  caFile: ${caFile}
defaultIdentity: mi
identities:
  mi:                      # system-assigned managed identity, Bearer tokens from IMDS v1
    managedIdentity: {}
  mi-pop:                  # the same identity, mTLS PoP: IMDS v2 binding certificate + Entra mTLS
    managedIdentity: {}
    protocolScheme: MTLS_POP
    warm: true
  uami:                    # a user-assigned managed identity
    managedIdentity:
      userAssignedClientId: ${uami.clientId}
`
  const logger = createLogger({ level: 'warn' })
  let daemon: Daemon
  try {
    daemon = await Daemon.start({ config: parseConfig(yaml(options.port), { source: 'demo.yaml' }), logger })
  } catch (error) {
    if ((error as { code?: string }).code !== 'EADDRINUSE') throw error
    process.stderr.write(`port ${options.port} is in use; using a free port instead\n`)
    daemon = await Daemon.start({ config: parseConfig(yaml(0), { source: 'demo.yaml' }), logger })
  }
  writeFileSync(join(dir, 'config.yaml'), yaml(Number(new URL(daemon.url).port)))
  const url = daemon.url
  const resource = emulator.resourceAudience
  const pop = join(dir, 'pop.json')
  // Handlers before the banner: whoever reads the banner may signal at once (a test does).
  const stopped = new Promise<number>((resolve) => {
    let stopping = false
    const stop = () => {
      // A second Ctrl-C: stop at once (the 'exit' handler still removes the directory).
      if (stopping) process.exit(1)
      stopping = true
      void daemon
        .shutdown(2000)
        .then(() => emulator.close())
        .then(() => resolve(0))
    }
    process.on('SIGINT', stop)
    process.on('SIGTERM', stop)
  })
  process.stdout.write(`credential-sidecar demo: the daemon and the emulator are running on loopback.

  daemon           ${url}
  emulated IMDS    ${emulator.imdsUrl}
  emulated Entra   ${emulator.entraUrl} (mTLS: ${emulator.entraMtlsUrl})
  demo resource    ${emulator.resourceUrl}  (audience ${resource})
  config           ${join(dir, 'config.yaml')}

1. A Bearer token for the managed identity (IMDS v1):

  curl -s -H 'Metadata: true' '${url}/token?resource=https://management.azure.com'

2. An mTLS PoP token and its binding certificate (IMDS v2 + Entra mTLS):

  curl -s -H 'Metadata: true' '${url}/token?resource=${resource}&identity=mi-pop' > ${pop}
  node -e 'const t=require("${pop}");const fs=require("fs");fs.writeFileSync("${dir}/cert.pem",t.binding_certificate.certificate);fs.writeFileSync("${dir}/key.pem",t.binding_certificate.private_key,{mode:0o600});fs.writeFileSync("${dir}/token",t.access_token)'

3. Call the demo resource with the token, presenting the certificate it is bound to:

  curl -s --cacert ${caFile} --cert ${dir}/cert.pem --key ${dir}/key.pem -H "Authorization: mtls_pop $(cat ${dir}/token)" ${emulator.resourceUrl}/api/whoami

   Without --cert/--key (or with another certificate) the resource answers 401: the token is useless if stolen.

4. The bound credential bundle, and the daemon's health and metrics:

  curl -s -H 'Metadata: true' '${url}/credential?identity=mi-pop'
  curl -s ${url}/readyz
  curl -s ${url}/metrics

Press Ctrl-C to stop.
`)
  return stopped
}
