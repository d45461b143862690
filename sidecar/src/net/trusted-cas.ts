import { rootCertificates } from 'node:tls'

/**
 * The CA list for upstream TLS: the system roots plus `upstream.caFile`. Node's `ca` option
 * replaces the default roots, so with extra CAs the public roots must be added back or public
 * endpoints stop verifying. Undefined means "Node's defaults".
 */
export function trustedCas(extraCaPem: readonly string[]): string[] | undefined {
  return extraCaPem.length === 0 ? undefined : [...rootCertificates, ...extraCaPem]
}
