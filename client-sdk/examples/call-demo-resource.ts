// Calls the emulator's demo mTLS resource with an mTLS Proof-of-Possession token from the sidecar:
// the SDK asks the sidecar for the token, sets `Authorization: mtls_pop <token>` and presents the
// binding certificate in the TLS handshake.
//
//   npx credential-sidecar demo          # prints the daemon URL, the demo resource URL and the CA file
//   CREDENTIAL_SIDECAR_ENDPOINT=http://127.0.0.1:7780 \
//   DEMO_RESOURCE_URL=https://127.0.0.1:PORT \
//   DEMO_CA_FILE=/tmp/credential-sidecar-demo-XXXX/emulator-ca.pem \
//   node client-sdk/examples/call-demo-resource.ts [identity]      # identity default: mi-pop
import { readFileSync } from 'node:fs'
import { SidecarClient, isSidecarClientError } from 'credential-sidecar-client'

const scope = 'api://credential-sidecar-demo/.default'

async function main(): Promise<number> {
  const resourceUrl = process.env['DEMO_RESOURCE_URL']
  if (!resourceUrl) {
    process.stderr.write(
      'DEMO_RESOURCE_URL is not set: run `npx credential-sidecar demo` and copy its "demo resource" URL\n',
    )
    return 2
  }
  const identity = process.argv[2] ?? process.env['DEMO_IDENTITY'] ?? 'mi-pop'
  // The emulator's resource has a certificate from the emulator's own CA; trust it for this call only.
  const caFile = process.env['DEMO_CA_FILE']
  const ca = caFile ? readFileSync(caFile, 'utf8') : undefined

  const sidecar = new SidecarClient({ identity }) // endpoint from CREDENTIAL_SIDECAR_ENDPOINT
  try {
    const token = await sidecar.getToken(scope)
    process.stdout.write(
      `token_type ${token.tokenType}, expires ${new Date(token.expiresOnTimestamp).toISOString()}` +
        (token.bindingCertificate
          ? `, bound to certificate x5t#S256 ${token.bindingCertificate.x5tS256}`
          : '') +
        '\n',
    )
    const res = await sidecar.fetch(new URL('/api/whoami', resourceUrl), { scope, ...(ca ? { ca } : {}) })
    process.stdout.write(`${res.status} ${await res.text()}\n`)
    return res.ok ? 0 : 1
  } catch (error) {
    // SidecarClientError messages never carry a token or key, so they are safe to print.
    if (isSidecarClientError(error)) {
      process.stderr.write(`${error.code}: ${error.message}\n`)
      return 1
    }
    throw error
  } finally {
    await sidecar.close()
  }
}

process.exitCode = await main()
