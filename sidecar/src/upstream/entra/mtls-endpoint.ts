import { SidecarError } from '../../core/errors.ts'

/**
 * Known Entra cloud host aliases and the host each one sends network traffic to ("preferred
 * network"), from MSAL.NET `Instance/Discovery/KnownMetadataProvider.cs`. The mTLS host is derived
 * from the preferred network host, so a legacy alias (login.usgovcloudapi.net,
 * login.chinacloudapi.cn) lands on the same mTLS host as the modern name. MSAL Go does this
 * (`authority` package, TestMtlsTokenEndpoint); MSAL.NET instead refuses those two aliases for mTLS.
 */
const preferredNetwork: ReadonlyMap<string, string> = new Map([
  ['login.microsoftonline.com', 'login.microsoftonline.com'],
  ['login.windows.net', 'login.microsoftonline.com'],
  ['login.microsoft.com', 'login.microsoftonline.com'],
  ['sts.windows.net', 'login.microsoftonline.com'],
  ['login.partner.microsoftonline.cn', 'login.partner.microsoftonline.cn'],
  ['login.chinacloudapi.cn', 'login.partner.microsoftonline.cn'],
  ['login.microsoftonline.de', 'login.microsoftonline.de'],
  ['login.microsoftonline.us', 'login.microsoftonline.us'],
  ['login.usgovcloudapi.net', 'login.microsoftonline.us'],
  ['login.windows-ppe.net', 'login.windows-ppe.net'],
  ['sts.windows-ppe.net', 'login.windows-ppe.net'],
  ['login.microsoft-ppe.com', 'login.windows-ppe.net'],
  ['login.sovcloud-identity.fr', 'login.sovcloud-identity.fr'],
  ['login.sovcloud-identity.de', 'login.sovcloud-identity.de'],
  ['login.sovcloud-identity.sg', 'login.sovcloud-identity.sg'],
])

/** The public cloud's mTLS host is not login→mtlsauth of its login host (RegionAndMtlsDiscoveryProvider.cs). */
const publicCloudLoginHost = 'login.microsoftonline.com'
const publicCloudMtlsHost = 'mtlsauth.microsoft.com'

/** Authorities that name no tenant: an mTLS (and client-credentials) request needs a real tenant. */
const nonTenantedAuthorities = new Set(['common', 'organizations', 'consumers'])

/** True for a tenant id or domain; false for `common`, `organizations`, `consumers` or an empty value. */
export function isTenantedAuthority(tenant: string): boolean {
  const t = tenant.trim()
  return t !== '' && !t.includes('/') && !nonTenantedAuthorities.has(t.toLowerCase())
}

/**
 * The regular (non-mTLS) token endpoint: `{authorityHost}/{tenant}/oauth2/v2.0/token`.
 *
 * @example authorityTokenEndpoint('https://login.microsoftonline.com', 'contoso.onmicrosoft.com')
 *   // 'https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token'
 */
export function authorityTokenEndpoint(authorityHost: string, tenant: string): string {
  const base = parseAuthorityHost(authorityHost)
  requireTenant(tenant)
  return `${base.protocol}//${base.host}${basePath(base)}/${encodeURIComponent(tenant)}/oauth2/v2.0/token`
}

/**
 * The mTLS token endpoint for an authority host: `login.X` → `{region.}mtlsauth.X`, except that the
 * public cloud (login.microsoftonline.com and its aliases) maps to `{region.}mtlsauth.microsoft.com`.
 * Known aliases are first normalised to their cloud's preferred host. A host that does not start
 * with `login.` (private clouds, the emulator) is used as-is, port included. Without a region the
 * global mTLS host is used (MSAL Go's documented fallback; MSAL.NET demands a region).
 *
 * @example authorityMtlsTokenEndpoint('https://login.microsoftonline.com', 'contoso.onmicrosoft.com', 'westus3')
 *   // 'https://westus3.mtlsauth.microsoft.com/contoso.onmicrosoft.com/oauth2/v2.0/token'
 */
export function authorityMtlsTokenEndpoint(authorityHost: string, tenant: string, region?: string): string {
  const base = parseAuthorityHost(authorityHost)
  requireTenant(tenant)
  const hostname = base.hostname.toLowerCase()
  const port = base.port ? `:${base.port}` : ''
  const mtlsHost = mtlsHostname(hostname, region?.trim().toLowerCase() || undefined)
  return `${base.protocol}//${mtlsHost}${port}${basePath(base)}/${encodeURIComponent(tenant)}/oauth2/v2.0/token`
}

function mtlsHostname(hostname: string, region: string | undefined): string {
  const preferred = preferredNetwork.get(hostname) ?? hostname
  let mtls: string
  if (preferred === publicCloudLoginHost) mtls = publicCloudMtlsHost
  else if (preferred.startsWith('login.')) mtls = `mtlsauth.${preferred.slice('login.'.length)}`
  else return hostname
  return region ? `${region}.${mtls}` : mtls
}

function parseAuthorityHost(authorityHost: string): URL {
  let url: URL
  try {
    url = new URL(authorityHost)
  } catch {
    throw new SidecarError('internal_error', `authority host '${authorityHost}' is not an absolute URL`)
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new SidecarError('internal_error', `authority host '${authorityHost}' must be an https URL`)
  }
  if (url.search || url.hash || url.username || url.password) {
    throw new SidecarError(
      'internal_error',
      `authority host '${url.origin}' must not carry a query, fragment or credentials`,
    )
  }
  return url
}

function basePath(url: URL): string {
  return url.pathname.replace(/\/+$/, '')
}

function requireTenant(tenant: string): void {
  if (!isTenantedAuthority(tenant)) {
    throw new SidecarError(
      'internal_error',
      `tenant '${tenant}' is not a tenanted authority: client credentials and mTLS need a tenant id or domain, not common/organizations/consumers`,
    )
  }
}
