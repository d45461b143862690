import type { Dispatcher } from 'undici'
import type { IdentityConfig, ManagedIdentitySelector, SidecarConfig } from '../config/types.ts'
import { buildCore } from '../daemon/compose.ts'
import type { Identity } from '../identities/identity.ts'
import { silentLogger } from '../core/log.ts'
import { normaliseScope } from '../tokens/scope.ts'
import { ImdsV2Client } from '../upstream/imds/v2.ts'
import { probeImdsAsOtherUid, type LockdownProbe } from './imds-lockdown-probe.ts'
import { usesImdsV2 } from '../config/token-scheme.ts'
import { untilAborted } from '../core/abort.ts'
import { classifyTransportError } from '../upstream/transport-errors.ts'
import { loadUndici } from '../upstream/undici.ts'

/** The resource doctor asks a token for when an identity names no warmResource. */
const probeResource = 'https://management.azure.com'

/**
 * How long doctor waits for IMDS to answer at all. Off Azure 169.254.169.254 usually drops the
 * connection attempt silently, so without a short probe every managed identity would wait for the
 * full upstream timeout and retries. The Azure SDKs probe IMDS the same way (about a second).
 */
const imdsProbeTimeoutMs = 1500

/** Bound for each identity's check, so a one-shot command answers even while upstream is silent. */
const identityCheckTimeoutMs = 5000

export interface DoctorReport {
  ok: boolean
  /** How long the whole check took. */
  ms: number
  imdsEndpoint: string
  authorityHost: string
  /**
   * `sidecar`: what answers this uid at the IMDS endpoint is a credential-sidecar (this uid's IMDS
   * traffic is redirected to it, deploy/nftables/imds-redirect.nft), not IMDS.
   */
  imds: { reachable: boolean; ms: number; status?: number; error?: string; sidecar?: boolean }
  identities: {
    name: string
    path: string
    ok: boolean
    /** IMDS v2's getplatformmetadata answered the probe (managed identities over IMDS v2 only). */
    imdsV2?: boolean
    credential?: { x5tS256: string; hoursLeft: number; keyProtection: string }
    token?: { tokenType: string; resource: string; expiresInMinutes: number; ms: number }
    error?: string
    hint?: string
  }[]
  /**
   * Whether a uid other than the sidecar's (65534) can reach IMDS, or is redirected to the
   * sidecar; `failed` when it reaches IMDS itself while callers.allow is set (a refused process
   * could ask IMDS directly).
   */
  lockdown: LockdownProbe & { failed: boolean }
}

export interface DoctorOptions {
  json?: boolean
}

/**
 * Probes IMDS, then each identity's whole credential path (IMDS v1 or v2, Entra) the way the
 * daemon would, and prints one line per step (or, with `json`, the same report as JSON). Never
 * prints a token, assertion or key. Exit 0 when every identity works.
 */
export async function runDoctor(
  config: SidecarConfig,
  out: NodeJS.WritableStream = process.stdout,
  options: DoctorOptions = {},
): Promise<number> {
  const report = await diagnose(config)
  out.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : renderText(report))
  return report.ok ? 0 : 1
}

async function diagnose(config: SidecarConfig): Promise<DoctorReport> {
  const started = performance.now()
  const { tokens, identities, runtime, close } = await buildCore({ config, logger: silentLogger() })
  const imds = await probeImds(config.upstream.imdsEndpoint, await runtime.dispatcher.get())
  const report: DoctorReport = {
    ok: true,
    ms: 0,
    imdsEndpoint: config.upstream.imdsEndpoint,
    authorityHost: config.upstream.authorityHost,
    imds,
    identities: [],
    lockdown: { kind: 'unknown', reason: 'not probed yet', failed: false },
  }
  // The probe is the one place where a 404 from getplatformmetadata means "no IMDS v2" at once;
  // the acquisition path retries it (MSAL's ImdsProbe vs Imds retry conditions).
  const imdsV2 = new ImdsV2Client({ runtime, imdsEndpoint: config.upstream.imdsEndpoint })
  const unreachableHint = `IMDS at ${config.upstream.imdsEndpoint} did not answer (${imds.error ?? ''}): not on Azure? set upstream.imdsEndpoint (or AZURE_POD_IDENTITY_AUTHORITY_HOST) to a reachable IMDS, or try \`credential-sidecar demo\``
  const notImdsHint = `${config.upstream.imdsEndpoint} answered the probe with HTTP ${imds.status ?? '?'} where Azure IMDS answers 400, so it is probably not Azure IMDS (a proxy?): not on Azure? set upstream.imdsEndpoint (or AZURE_POD_IDENTITY_AUTHORITY_HOST) to a reachable IMDS, or try \`credential-sidecar demo\``
  // Every identity is checked at once, so the report comes within one identity's bound however
  // many there are (an address that answers but is not IMDS makes each check wait its bound).
  const check = async (identity: Identity): Promise<DoctorReport['identities'][number]> => {
    const entry: DoctorReport['identities'][number] = {
      name: identity.name,
      path: describePath(identity.config),
      ok: false,
    }
    if (!imds.reachable && needsImds(identity.config)) {
      entry.error = 'IMDS is not reachable'
      entry.hint = unreachableHint
      return entry
    }
    const started = performance.now()
    const signal = AbortSignal.timeout(identityCheckTimeoutMs)
    try {
      const selector = imdsV2Selector(identity.config)
      if (selector) {
        await untilAborted(imdsV2.getPlatformMetadata(selector, signal, { probe: true }), signal)
        entry.imdsV2 = true
      }
      const binding = await untilAborted(identity.currentBinding(signal), signal)
      if (binding) {
        entry.credential = {
          x5tS256: binding.x5tS256,
          hoursLeft: Number(((binding.notAfter - runtime.clock.now()) / 3600_000).toFixed(1)),
          keyProtection: binding.keyProtection,
        }
      }
      const resource = identity.config.warmResource ?? probeResource
      const served = await untilAborted(tokens.getToken(identity, normaliseScope({ resource })), signal)
      entry.token = {
        tokenType: served.token.tokenType,
        resource,
        expiresInMinutes: Math.round((served.token.expiresOn - runtime.clock.now()) / 60_000),
        ms: Math.round(performance.now() - started),
      }
      entry.ok = true
    } catch (error) {
      entry.error = signal.aborted
        ? `no answer within ${identityCheckTimeoutMs} ms`
        : error instanceof Error
          ? error.message
          : String(error)
      // Azure IMDS answers the probe (no Metadata header) with 400; anything else is not IMDS.
      if (needsImds(identity.config) && imds.status !== 400) entry.hint = notImdsHint
    }
    return entry
  }
  report.identities = await Promise.all([...identities.values()].map(check))
  await close()
  // Only worth asking when the sidecar's own uid reaches IMDS (and it keeps doctor's time bound).
  const lockdown: LockdownProbe = imds.reachable
    ? await probeImdsAsOtherUid(config.upstream.imdsEndpoint)
    : { kind: 'unknown', reason: 'IMDS is not reachable from this uid either' }
  report.lockdown = {
    ...lockdown,
    failed: lockdown.kind === 'reachable' && config.callers.allow !== undefined,
  }
  report.ok = report.identities.every((identity) => identity.ok) && !report.lockdown.failed
  report.ms = Math.round(performance.now() - started)
  return report
}

function renderText(report: DoctorReport): string {
  const lines = [
    'credential-sidecar doctor',
    `  IMDS endpoint: ${report.imdsEndpoint} (${report.imds.reachable ? `answered in ${report.imds.ms} ms` : `not reachable: ${report.imds.error}`})`,
    ...(report.imds.sidecar
      ? [
          `  note  a credential-sidecar answers this uid at ${report.imdsEndpoint} (its IMDS traffic is redirected): the checks below go through that sidecar; run doctor as the sidecar's user to check the real IMDS`,
        ]
      : []),
    `  authority host: ${report.authorityHost}`,
    '',
  ]
  for (const identity of report.identities) {
    lines.push(`${identity.name} (${identity.path})`)
    const { credential, token } = identity
    if (identity.imdsV2) lines.push('  ok    IMDS v2: getplatformmetadata answered')
    if (credential) {
      lines.push(
        `  ok    credential: certificate x5t#S256=${credential.x5tS256}, ${credential.hoursLeft.toFixed(1)} h left, key ${credential.keyProtection}`,
      )
    }
    if (token) {
      lines.push(
        `  ok    token: ${token.tokenType} for ${token.resource}, expires in ${token.expiresInMinutes} min (${token.ms} ms)`,
      )
    }
    if (identity.error !== undefined) lines.push(`  FAIL  ${identity.error}`)
    if (identity.hint !== undefined) lines.push(`  hint  ${identity.hint}`)
  }
  lines.push('', 'IMDS from another uid', `  ${lockdownLine(report)}`)
  const failures = report.identities.filter((identity) => !identity.ok).length
  lines.push(
    '',
    (failures === 0 ? 'all identities work' : `${failures} identit${failures === 1 ? 'y' : 'ies'} failed`) +
      ` (checked in ${(report.ms / 1000).toFixed(1)} s)`,
  )
  if (report.lockdown.failed) lines.push('IMDS is not locked to the sidecar while callers.allow is set')
  return lines.join('\n') + '\n'
}

/** Whether a process the sidecar would refuse can go to IMDS itself (a failure only with callers.allow). */
function lockdownLine({ lockdown, imdsEndpoint }: DoctorReport): string {
  switch (lockdown.kind) {
    case 'unknown':
      return `?     cannot tell: ${lockdown.reason}`
    case 'unreachable':
      return `ok    uid ${lockdown.uid} cannot reach ${imdsEndpoint} (${lockdown.detail}): IMDS is locked to the sidecar`
    case 'redirected':
      return `ok    uid ${lockdown.uid}'s requests to ${imdsEndpoint} are answered by the sidecar: the redirect is in place (deploy/nftables/imds-redirect.nft), apps that hard-code IMDS get what callers.allow grants their uid`
    case 'reachable':
      return (
        `${lockdown.failed ? 'FAIL' : 'note'}  uid ${lockdown.uid} can reach ${imdsEndpoint}: ` +
        (lockdown.failed
          ? 'a process that callers.allow refuses can ask IMDS itself; '
          : 'any local process can ask IMDS itself; ') +
        'see docs/vm.md "Locking IMDS to the sidecar" (deploy/nftables/imds-lockdown.nft) and "Redirecting IMDS to the sidecar" (deploy/nftables/imds-redirect.nft)'
      )
  }
}

/**
 * Any HTTP answer means IMDS is there: without `Metadata: true` it answers 400, which is what the
 * probe expects; only a connection error or silence means it is not.
 */
async function probeImds(endpoint: string, dispatcher: Dispatcher): Promise<DoctorReport['imds']> {
  const started = performance.now()
  const signal = AbortSignal.timeout(imdsProbeTimeoutMs)
  const { request } = await loadUndici()
  try {
    const res = await request(`${endpoint}/metadata/identity/oauth2/token?api-version=2018-02-01`, {
      dispatcher,
      signal,
      headersTimeout: imdsProbeTimeoutMs,
    })
    await res.body.dump()
    const ms = Math.round(performance.now() - started)
    const sidecar = await answersAsSidecar(endpoint, dispatcher)
    return { reachable: true, ms, status: res.statusCode, ...(sidecar ? { sidecar } : {}) }
  } catch (error) {
    // Our own deadline, or undici's headersTimeout firing first (UND_ERR_HEADERS_TIMEOUT).
    const timedOut = classifyTransportError(error, signal.aborted)?.reason === 'timeout'
    return {
      reachable: false,
      ms: Math.round(performance.now() - started),
      error: timedOut
        ? `no answer within ${imdsProbeTimeoutMs} ms`
        : ((error as { code?: string }).code ?? (error instanceof Error ? error.message : String(error))),
    }
  }
}

/** Whether a credential-sidecar answers at `endpoint` (`/healthz`: 200 `{"status":"ok"}`; IMDS has no such route). */
async function answersAsSidecar(endpoint: string, dispatcher: Dispatcher): Promise<boolean> {
  const { request } = await loadUndici()
  try {
    const res = await request(`${endpoint}/healthz`, {
      dispatcher,
      signal: AbortSignal.timeout(imdsProbeTimeoutMs),
      headersTimeout: imdsProbeTimeoutMs,
    })
    const body = await res.body.text()
    return res.statusCode === 200 && body.trim().startsWith('{"status":"ok"}')
  } catch {
    return false
  }
}

/** Managed identities, and confidential clients whose FIC leg 1 comes from one, need IMDS. */
function needsImds(config: IdentityConfig): boolean {
  if (config.kind === 'managedIdentity') return true
  return config.clientCredentials.some((c) => c.sourceType === 'SignedAssertionFromManagedIdentity')
}

function describePath(config: IdentityConfig): string {
  if (config.kind === 'managedIdentity') {
    return `managed identity, ${config.protocolScheme}, ${usesImdsV2(config) ? 'IMDS v2 + Entra mTLS' : 'IMDS v1'}`
  }
  return `confidential client ${config.clientId}, ${config.protocolScheme}, credentials: ${config.clientCredentials.map((c) => c.sourceType).join(' > ')}`
}

/**
 * A managed identity served over IMDS v2 has no other path, so doctor probes it first. (A
 * confidential client's FIC leg 1 is one credential of a chain: its failure is reported by the
 * token step, which names the credential.)
 */
function imdsV2Selector(config: IdentityConfig): ManagedIdentitySelector | undefined {
  if (config.kind !== 'managedIdentity') return undefined
  return usesImdsV2(config) ? config.selector : undefined
}
