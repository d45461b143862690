import { SidecarError } from '../core/errors.ts'
import type { Scope } from '../model/scope.ts'

const maxLength = 2048
const defaultSuffix = '/.default'

/**
 * `resource=R` and `scope=R/.default` name the same thing (and the same cache entry). A trailing `/`
 * is kept, as MSAL.NET's managed identity sources keep it (`ScopeHelper.RemoveDefaultSuffixIfPresent`
 * strips only `/.default`): IMDS v1 issues the token for the resource as written, so
 * `https://x/` and `https://x` are two audiences and two cache entries. Entra requests trim it
 * (`upstream/entra/requests.ts` scopeForResource, as MSAL.NET's IMDS v2 path does).
 */
export function normaliseScope(input: { resource?: string | undefined; scope?: string | undefined }): Scope {
  const { resource, scope } = input
  if ((resource === undefined) === (scope === undefined)) {
    throw new SidecarError(
      'invalid_request',
      'Give exactly one of the query parameters "resource" or "scope"',
    )
  }
  if (scope !== undefined) {
    const trimmed = scope.trim()
    if (!trimmed.endsWith(defaultSuffix) || /\s/.test(trimmed)) {
      throw new SidecarError(
        'invalid_request',
        'scope must be a single "<resource>/.default" scope (application tokens carry the app roles granted to the identity)',
      )
    }
    return fromResource(trimmed.slice(0, -defaultSuffix.length), 'scope')
  }
  return fromResource(resource ?? '', 'resource')
}

function fromResource(raw: string, parameter: string): Scope {
  const resource = raw.trim()
  if (!resource.replace(/\/+$/, '')) throw new SidecarError('invalid_request', `${parameter} is empty`)
  // "resource=https://x/.default" would go upstream as the scope "https://x/.default/.default".
  if (resource.replace(/\/+$/, '').toLowerCase().endsWith(defaultSuffix)) {
    throw new SidecarError(
      'invalid_request',
      parameter === 'resource'
        ? 'resource is a resource URI without "/.default"; for "<resource>/.default" use scope= instead'
        : 'scope names "/.default" twice; give a single "<resource>/.default" scope',
    )
  }
  if (resource.length > maxLength)
    throw new SidecarError('invalid_request', `${parameter} is longer than ${maxLength} characters`)
  // Control characters and whitespace never belong in a resource URI or app id.
  // eslint-disable-next-line no-control-regex
  if (/[\s\u0000-\u001f\u007f]/.test(resource))
    throw new SidecarError('invalid_request', `${parameter} contains whitespace or control characters`)
  const problem = resourceProblem(resource)
  if (problem) throw new SidecarError('invalid_request', `${parameter} ${problem}`)
  return { resource, scope: `${resource}${defaultSuffix}` }
}

/**
 * What makes a resource unusable as an audience, checked here so it never reaches upstream (where
 * it could change the request's meaning): a fragment, userinfo (`https://user@host`, a classic way
 * to make a URL look like another host's), or a `%` that is not a valid escape. App id GUIDs and
 * `api://…` URIs pass.
 */
function resourceProblem(resource: string): string | undefined {
  if (resource.includes('#')) return 'must not contain a fragment ("#")'
  if (/%(?![0-9a-fA-F]{2})/.test(resource)) return 'contains a malformed percent-escape'
  const authority = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)/i.exec(resource)?.[1]
  if (authority?.includes('@')) return 'must not contain userinfo ("user@" before the host)'
  return undefined
}
