import { X509Certificate } from 'node:crypto'
import { setTimeout as delay } from 'node:timers/promises'
import { Hono, type Context } from 'hono'
import type { ContentfulStatusCode } from 'hono/utils/http-status'
import { cuIdJson } from '../pki/csr.ts'
import { verifyCsr } from './pki/csr-verify.ts'
import type { EmulatedEndpoint } from './faults.ts'
import type { EmulatedManagedIdentity, EmulatorState } from './state.ts'

/**
 * The emulated IMDS v2 credential endpoint: `getplatformmetadata` and `issuecredential`, with the
 * real service's checks (Metadata header, cred-api-version, identity selector, attestation demand)
 * and a real CSR verification before a binding certificate is issued from `state.ca`.
 * The IMDS server that mounts these routes sets the `Server: IMDS/…` header on every response.
 */
export function imdsV2Routes(state: EmulatorState): Hono {
  const app = new Hono()

  app.get('/metadata/identity/getplatformmetadata', async (c) => {
    const refused = await precheck(c, state, 'imds.getplatformmetadata')
    if (refused) return refused
    const identity = resolveIdentity(c, state)
    if (!identity) return identityNotFound(c)
    return c.json({
      cuId: vmCuId(state),
      clientId: identity.clientId,
      tenantId: state.tenantId,
      attestationEndpoint: ATTESTATION_ENDPOINT,
    })
  })

  app.post('/metadata/identity/issuecredential', async (c) => {
    const refused = await precheck(c, state, 'imds.issuecredential')
    if (refused) return refused
    const identity = resolveIdentity(c, state)
    if (!identity) return identityNotFound(c)

    let body: unknown
    try {
      body = await c.req.json()
    } catch {
      return invalidRequest(c, 'Request body must be JSON')
    }
    const { csr, attestation_token: attestationToken } = (body ?? {}) as {
      csr?: unknown
      attestation_token?: unknown
    }
    if (
      state.settings.requireAttestation &&
      (typeof attestationToken !== 'string' || attestationToken === '')
    ) {
      return invalidRequest(
        c,
        'Attestation Token is missing. The platform requires a KeyGuard key attestation for this request.',
      )
    }
    if (typeof csr !== 'string' || csr === '') return invalidRequest(c, "Required field 'csr' is missing")

    const checked = verifyCsr(csr, {
      clientId: identity.clientId,
      tenantId: state.tenantId,
      cuIdJson: vmCuIdJson(state),
    })
    if (!checked.ok) return invalidRequest(c, `Invalid CSR (${checked.check}): ${checked.message}`)

    const now = state.clock.now()
    const certificatePem = state.ca.issue({
      publicKeyPem: checked.csr.publicKeyPem,
      // DER order DC then CN, like the CSR: it reads back as "CN={clientId}, DC={tenantId}".
      subject: [
        { shortName: 'DC', value: state.tenantId },
        { shortName: 'CN', value: identity.clientId },
      ],
      // Back-dated a minute for clock skew, like real CAs; the lifetime counts from issuance, so
      // a 60-second certificate really has 60 seconds to live.
      validityMs: state.settings.bindingCertificateValidityMs + 60_000,
      notBefore: now - 60_000,
      usage: 'client',
    })
    return c.json({
      client_id: identity.clientId,
      tenant_id: state.tenantId,
      certificate: new X509Certificate(certificatePem).raw.toString('base64'),
      identity_type: identity.systemAssigned ? 'SystemAssigned' : 'UserAssigned',
      mtls_authentication_endpoint: state.settings.entraMtlsBaseUrl,
    })
  })

  return app
}

/** A plausible regional Microsoft Azure Attestation endpoint; nothing calls it. */
const ATTESTATION_ENDPOINT = 'https://sharedeus2.eus2.attest.azure.net'

/** Counts the call, plays a scripted fault, then the checks every IMDS v2 call gets. */
async function precheck(
  c: Context,
  state: EmulatorState,
  endpoint: EmulatedEndpoint,
): Promise<Response | undefined> {
  state.calls.record(endpoint)
  const fault = state.faults.take(endpoint)
  if (fault) {
    // Real time, not state.clock: the client's timeouts are real (AbortSignal.timeout).
    if (fault.delayMs) await delay(fault.delayMs)
    const body = fault.body ?? {
      error: fault.status >= 500 ? 'server_error' : 'invalid_request',
      error_description: `Emulated fault ${fault.status}`,
    }
    return c.json(body, fault.status as ContentfulStatusCode, fault.headers ?? {})
  }
  if (!state.settings.imdsV2Enabled) {
    return c.json({ error: 'not_found', error_description: 'The requested resource was not found' }, 404)
  }
  if (c.req.header('Metadata')?.toLowerCase() !== 'true') {
    return invalidRequest(c, 'Required metadata header not specified')
  }
  const version = c.req.query('cred-api-version')
  if (version === undefined) return invalidRequest(c, "Required query variable 'cred-api-version' is missing")
  if (version !== '2.0') return invalidRequest(c, `Unsupported cred-api-version '${version}'`)
  return undefined
}

/** client_id / object_id / mi_res_id (v2 spelling) select a user-assigned identity; none = system-assigned. */
function resolveIdentity(c: Context, state: EmulatorState): EmulatedManagedIdentity | undefined {
  const clientId = c.req.query('client_id')
  const objectId = c.req.query('object_id')
  const resourceId = c.req.query('mi_res_id')
  const same = (a: string, b: string) => a.toLowerCase() === b.toLowerCase()
  if (clientId !== undefined) return state.managedIdentities.find((m) => same(m.clientId, clientId))
  if (objectId !== undefined) return state.managedIdentities.find((m) => same(m.objectId, objectId))
  if (resourceId !== undefined)
    return state.managedIdentities.find((m) => m.resourceId !== '' && same(m.resourceId, resourceId))
  return state.managedIdentities.find((m) => m.systemAssigned)
}

function vmCuId(state: EmulatorState): Record<string, string> {
  const { vmId, vmssId } = state.cuId
  return vmssId === undefined ? { vmId } : { vmId, vmssId }
}

/** What this VM's CSR attribute must hold: the cuId JSON exactly as getplatformmetadata sends it. */
function vmCuIdJson(state: EmulatorState): string {
  return cuIdJson(vmCuId(state))
}

function invalidRequest(c: Context, description: string): Response {
  return c.json({ error: 'invalid_request', error_description: description }, 400)
}

function identityNotFound(c: Context): Response {
  return invalidRequest(c, 'Identity not found')
}
