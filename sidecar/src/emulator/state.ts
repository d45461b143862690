import { randomUUID } from 'node:crypto'
import type { Clock } from '../core/clock.ts'
import { CertificateAuthority } from './pki/certificate-authority.ts'
import { CallCounter, FaultPlan } from './faults.ts'
import { freshEmulatorKeys, type EmulatorKeySource } from './key-source.ts'
import { TokenMinter } from './token-minter.ts'

/** A managed identity assigned to the emulated VM. The first one is the system-assigned identity. */
export interface EmulatedManagedIdentity {
  clientId: string
  objectId: string
  /** ARM resource id: /subscriptions/…/providers/Microsoft.ManagedIdentity/userAssignedIdentities/… */
  resourceId: string
  systemAssigned: boolean
}

/** An app registration in the emulated tenant (confidential clients). */
export interface EmulatedApp {
  clientId: string
  /** x5t#S256 of certificates registered on the app. */
  certificateThumbprints: Set<string>
  clientSecrets: Set<string>
  /** Federated identity credentials: `sub` (object id) of managed identities trusted for FIC. */
  federatedSubjects: Set<string>
  /** Issuer + subject pairs trusted for SignedAssertionFilePath (Kubernetes workload identity). */
  federatedIssuers: { issuer: string; subject: string }[]
  /**
   * Whether Entra has enabled mTLS client authentication (a certificate presented in the TLS
   * handshake) for this app. Real Entra needs it switched on per app (preview; otherwise
   * AADSTS51000 "MtlsClientAuth is/are disabled"). The emulator defaults it to on.
   */
  mtlsClientAuth: boolean
}

export interface EmulatorSettings {
  /** Lifetime of IMDS v2 binding certificates from issuance (real: about 7 days; other platforms hours). */
  bindingCertificateValidityMs: number
  accessTokenLifetimeSec: number
  /** When set, Entra answers include refresh_in (seconds). */
  refreshInSec: number | undefined
  /** IMDS v2 answers issuecredential with 400 "Attestation Token is missing". */
  requireAttestation: boolean
  /** When false, the IMDS v2 routes answer 404 (a host without IMDS v2). */
  imdsV2Enabled: boolean
  /** Entra answers Bearer even when mtls_pop is asked (to prove the daemon fails closed). */
  entraIgnoresPopRequest: boolean
  /**
   * The tenant is not allowed bound tokens: every `token_type=mtls_pop` request answers
   * AADSTS3921996, as Entra does for a tenant not enabled for mTLS PoP.
   */
  boundTokensRefused: boolean
  /** Base URL of the emulated Entra mTLS endpoint, set once it listens (mtls_authentication_endpoint). */
  entraMtlsBaseUrl: string
  /** Base URL of the emulated regular Entra (login) endpoint. */
  entraBaseUrl: string
}

/**
 * Everything the emulated IMDS, Entra and demo resource share: the tenant, the VM's identities,
 * app registrations, the CA that issues binding certificates, the token issuer, faults and counters.
 */
export interface EmulatorState {
  readonly clock: Clock
  readonly tenantId: string
  readonly cuId: { vmId: string; vmssId?: string }
  readonly managedIdentities: EmulatedManagedIdentity[]
  readonly apps: Map<string, EmulatedApp>
  readonly ca: CertificateAuthority
  readonly tokens: TokenMinter
  readonly faults: FaultPlan
  readonly calls: CallCounter
  readonly settings: EmulatorSettings
  /** Where the emulator's own keys come from (server TLS keys, workload issuers). */
  readonly keys: EmulatorKeySource
}

export async function createEmulatorState(
  clock: Clock,
  overrides: Partial<EmulatorSettings> = {},
  keys: EmulatorKeySource = freshEmulatorKeys(),
): Promise<EmulatorState> {
  const tenantId = randomUUID()
  const subscription = randomUUID()
  const userAssigned = (name: string): EmulatedManagedIdentity => ({
    clientId: randomUUID(),
    objectId: randomUUID(),
    resourceId: `/subscriptions/${subscription}/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/${name}`,
    systemAssigned: false,
  })
  const [caKeys, signingKeys] = await Promise.all([keys.rsaKeyPair('ca'), keys.rsaKeyPair('token-signing')])
  return {
    clock,
    tenantId,
    cuId: { vmId: randomUUID() },
    managedIdentities: [
      { clientId: randomUUID(), objectId: randomUUID(), resourceId: '', systemAssigned: true },
      userAssigned('uami-one'),
      userAssigned('uami-two'),
    ],
    apps: new Map(),
    ca: await CertificateAuthority.create({
      commonName: 'credential-sidecar emulator CA',
      now: clock.now(),
      keys: caKeys,
    }),
    tokens: await TokenMinter.create(clock, signingKeys),
    faults: new FaultPlan(),
    calls: new CallCounter(),
    keys,
    settings: {
      bindingCertificateValidityMs: 7 * 24 * 3600_000,
      accessTokenLifetimeSec: 3599,
      refreshInSec: undefined,
      requireAttestation: false,
      imdsV2Enabled: true,
      entraIgnoresPopRequest: false,
      boundTokensRefused: false,
      entraMtlsBaseUrl: '',
      entraBaseUrl: '',
      ...overrides,
    },
  }
}
