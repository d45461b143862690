import { getCACertificates } from 'node:tls'

/**
 * The CA list for upstream TLS: Node's default trust (its roots plus `NODE_EXTRA_CA_CERTS`) plus
 * `upstream.caFile`. Node's `ca` option replaces the default trust, so with extra CAs the default
 * list must be added back or public endpoints stop verifying; `tls.rootCertificates` alone would
 * silently drop `NODE_EXTRA_CA_CERTS`. Undefined means "Node's defaults".
 */
export function trustedCas(extraCaPem: readonly string[]): string[] | undefined {
  return extraCaPem.length === 0 ? undefined : [...getCACertificates('default'), ...extraCaPem]
}
