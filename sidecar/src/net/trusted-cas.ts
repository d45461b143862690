import { createSecureContext, rootCertificates, type SecureContextOptions } from 'node:tls'

/**
 * The CA list for upstream TLS: the system roots plus `upstream.caFile`. Node's `ca` option
 * replaces the default roots, so with extra CAs the public roots must be added back or public
 * endpoints stop verifying. Undefined means "Node's defaults".
 */
export function trustedCas(extraCaPem: readonly string[]): string[] | undefined {
  return extraCaPem.length === 0 ? undefined : [...rootCertificates, ...extraCaPem]
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
