import { createSecureContext, getCACertificates, type SecureContextOptions } from 'node:tls'

/**
 * The CA list for upstream TLS: Node's default trust (its roots plus `NODE_EXTRA_CA_CERTS`) plus
 * `upstream.caFile`. Node's `ca` option replaces the default trust, so with extra CAs the default
 * list must be added back or public endpoints stop verifying; `tls.rootCertificates` alone would
 * silently drop `NODE_EXTRA_CA_CERTS`. Undefined means "Node's defaults".
 */
export function trustedCas(extraCaPem: readonly string[]): string[] | undefined {
  return extraCaPem.length === 0 ? undefined : [...getCACertificates('default'), ...extraCaPem]
}

/**
 * undici `connect` options for `tls` (client certificate, versions) trusting `ca` (undefined: Node's
 * defaults), with the secure context built once, here. Given as plain options, Node builds a new
 * context for every TLS connection, parsing each of the ~140 root certificates again: tens of ms of
 * CPU on the cold path. An option Node refuses is left for the connection to report, as before.
 */
export function tlsConnectOptions(
  ca: readonly string[] | undefined,
  tls: SecureContextOptions = {},
): SecureContextOptions | { secureContext: ReturnType<typeof createSecureContext> } {
  const options: SecureContextOptions = ca ? { ...tls, ca: [...ca] } : tls
  if (Object.keys(options).length === 0) return {}
  try {
    return { secureContext: createSecureContext(options) }
  } catch {
    return options
  }
}
