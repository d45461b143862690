/** The address every Azure SDK, the Azure CLI and Go adal hard-code for IMDS. */
export const imdsAddress = '169.254.169.254'

/**
 * Whether a `Host` header names IMDS itself (`169.254.169.254`, with or without `:80`): what a
 * client sends when a packet redirect (nftables on a VM, contract §5) brings its IMDS request to the
 * sidecar. Only the IMDS route accepts it (contract §3); any other port is not IMDS.
 */
export function namesImds(host: string | undefined): boolean {
  if (host === undefined) return false
  const h = host.trim()
  return h === imdsAddress || h === `${imdsAddress}:80`
}
