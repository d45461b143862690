import { Hono, type Context } from 'hono'
import { createAdaptorServer } from '@hono/node-server'
import type { Server } from 'node:http'
import type { EmulatedEndpoint, Fault } from './faults.ts'
import { closeServer, listenOnLoopback } from './loopback-server.ts'
import type { EmulatedManagedIdentity, EmulatorState } from './state.ts'

/** What the real IMDS puts in its Server header; IMDS v2 clients check for "IMDS". */
export const imdsServerHeader = 'IMDS/150.870.65.1854'

export interface EmulatedImds {
  url: string
  close(): Promise<void>
}

/**
 * The emulated Azure Instance Metadata Service on plain HTTP, behaving like the real one: the
 * `Metadata: true` check, numbers as strings, 400 "Identity not found", `Server: IMDS/…`, and
 * scriptable faults. IMDS v2 routes (`imds-v2.ts`) are mounted on the same host, as on a real VM.
 */
export async function startEmulatedImds(
  state: EmulatorState,
  options: { extraRoutes?: Hono[] } = {},
): Promise<EmulatedImds> {
  const app = new Hono()
  app.use(async function imdsServerHeaderMiddleware(c, next) {
    await next()
    c.res.headers.set('Server', imdsServerHeader)
  })
  app.get('/metadata/identity/oauth2/token', (c) => tokenV1(c, state))
  // @azure/identity and msal-node canonicalise the endpoint to end in "/"; IMDS answers both.
  app.get('/metadata/identity/oauth2/token/', (c) => tokenV1(c, state))
  for (const routes of options.extraRoutes ?? []) app.route('/', routes)
  app.notFound((c) => c.json({ error: 'not_found', error_description: 'Not found' }, 404))

  const server = createAdaptorServer({ fetch: app.fetch }) as Server
  const url = await listenOnLoopback(server, 'http')
  return {
    url,
    close: () => closeServer(server),
  }
}

async function tokenV1(c: Context, state: EmulatorState): Promise<Response> {
  const endpoint: EmulatedEndpoint = 'imds.token'
  state.calls.record(endpoint)
  state.calls.recordCae(endpoint, caeParameters(new URL(c.req.url).searchParams))
  if (c.req.header('Metadata') !== 'true') {
    return c.json(
      { error: 'invalid_request', error_description: 'Required metadata header not specified' },
      400,
    )
  }
  const fault = state.faults.take(endpoint)
  if (fault) return answerFault(fault)
  const apiVersion = c.req.query('api-version')
  if (!apiVersion) {
    return c.json(
      { error: 'invalid_request', error_description: 'Required query variable api-version is missing' },
      400,
    )
  }
  const resource = c.req.query('resource')
  if (!resource) {
    return c.json(
      { error: 'invalid_request', error_description: 'Required query variable resource is missing' },
      400,
    )
  }
  const identity = resolveIdentity(state, {
    clientId: c.req.query('client_id'),
    objectId: c.req.query('object_id'),
    resourceId: c.req.query('msi_res_id') ?? c.req.query('mi_res_id'),
  })
  if (identity === 'ambiguous') {
    return c.json(
      { error: 'invalid_request', error_description: 'Multiple identity selectors specified' },
      400,
    )
  }
  if (!identity) return c.json({ error: 'invalid_request', error_description: 'Identity not found' }, 400)
  if (!isKnownResource(resource)) {
    return c.json(
      {
        error: 'invalid_resource',
        error_description: `AADSTS500011: The resource principal named ${resource} was not found in the tenant named ${state.tenantId}.`,
      },
      400,
    )
  }
  const lifetime = state.settings.accessTokenLifetimeSec
  const now = Math.floor(state.clock.now() / 1000)
  const accessToken = await state.tokens.mint(
    {
      aud: resource,
      iss: `https://sts.windows.net/${state.tenantId}/`,
      tid: state.tenantId,
      sub: identity.objectId,
      oid: identity.objectId,
      appid: identity.clientId,
      idtyp: 'app',
      ...(identity.resourceId ? { xms_mirid: identity.resourceId } : {}),
    },
    lifetime,
  )
  // IMDS answers every number as a string.
  return c.json({
    access_token: accessToken,
    client_id: identity.clientId,
    expires_in: String(lifetime),
    expires_on: String(now + lifetime),
    ext_expires_in: String(lifetime),
    not_before: String(now - 300),
    resource,
    token_type: 'Bearer',
  })
}

/** The MSI v1 CAE parameters a request carried (MSAL.NET docs/msiv1_token_revocation.md). */
function caeParameters(query: URLSearchParams): Record<string, string> {
  const found: Record<string, string> = {}
  for (const name of ['xms_cc', 'token_sha256_to_refresh']) {
    const value = query.get(name)
    if (value !== null) found[name] = value
  }
  return found
}

/** Finds the VM identity a selector names; none given means the system-assigned one. */
export function resolveIdentity(
  state: EmulatorState,
  selector: { clientId?: string | undefined; objectId?: string | undefined; resourceId?: string | undefined },
): EmulatedManagedIdentity | undefined | 'ambiguous' {
  const given = [selector.clientId, selector.objectId, selector.resourceId].filter((v) => v !== undefined)
  if (given.length > 1) return 'ambiguous'
  const lower = (v: string) => v.toLowerCase()
  if (selector.clientId)
    return state.managedIdentities.find((i) => lower(i.clientId) === lower(selector.clientId ?? ''))
  if (selector.objectId)
    return state.managedIdentities.find((i) => lower(i.objectId) === lower(selector.objectId ?? ''))
  if (selector.resourceId) {
    return state.managedIdentities.find(
      (i) => !i.systemAssigned && lower(i.resourceId) === lower(selector.resourceId ?? ''),
    )
  }
  return state.managedIdentities.find((i) => i.systemAssigned)
}

/** The emulated tenant knows every resource except the reserved `*.invalid` names (RFC 2606). */
function isKnownResource(resource: string): boolean {
  try {
    return !new URL(resource).hostname.endsWith('.invalid')
  } catch {
    return true // app id GUIDs and other non-URL resource names
  }
}

export async function answerFault(fault: Fault): Promise<Response> {
  if (fault.delayMs) await new Promise((resolve) => setTimeout(resolve, fault.delayMs))
  const body = fault.body ?? {
    error: fault.status === 429 ? 'too_many_requests' : 'server_error',
    error_description: `Emulated fault ${fault.status}`,
  }
  return new Response(JSON.stringify(body), {
    status: fault.status,
    headers: { 'content-type': 'application/json; charset=utf-8', ...fault.headers },
  })
}
