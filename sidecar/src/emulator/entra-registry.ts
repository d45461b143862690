import { createPrivateKey, createPublicKey, randomUUID, type KeyObject } from 'node:crypto'
import { SignJWT } from 'jose'
import { x5tS256 } from '../pki/x509.ts'
import type { EmulatedApp, EmulatorState } from './state.ts'

/** The audience of federated identity credential assertions (FIC leg 1 tokens, workload identity tokens). */
export const tokenExchangeAudience = 'api://AzureADTokenExchange'

/** What the emulated Entra knows beyond `EmulatorState`: certificate bodies and workload issuers' keys. */
export interface EntraRegistry {
  /** Registered app certificates by x5t#S256 (PEM), to verify private_key_jwt signatures. */
  readonly certificates: Map<string, string>
  /** Public keys of registered Kubernetes-like token issuers, by `iss`. */
  readonly issuerKeys: Map<string, KeyObject>
}

// Keyed by state, so each emulator instance has its own registry and it goes away with the state.
const registries = new WeakMap<EmulatorState, EntraRegistry>()

export function entraRegistry(state: EmulatorState): EntraRegistry {
  let registry = registries.get(state)
  if (!registry) {
    registry = { certificates: new Map(), issuerKeys: new Map() }
    registries.set(state, registry)
  }
  return registry
}

export interface AppRegistration {
  clientId?: string
  /** Certificate PEMs registered on the app (private_key_jwt and bound "SNI" authentication). */
  certificates?: string[]
  clientSecrets?: string[]
  /** Object ids (the leg-1 token's `sub`) trusted for FIC. */
  federatedSubjects?: string[]
  federatedIssuers?: { issuer: string; subject: string }[]
  /** Whether mTLS client authentication is enabled for the app (default true); false → AADSTS51000. */
  mtlsClientAuth?: boolean
}

/** Registers (or extends) an app in the emulated tenant. Returns it. */
export function registerApp(state: EmulatorState, registration: AppRegistration = {}): EmulatedApp {
  const clientId = registration.clientId ?? randomUUID()
  let app = state.apps.get(clientId)
  if (!app) {
    app = {
      clientId,
      certificateThumbprints: new Set(),
      clientSecrets: new Set(),
      federatedSubjects: new Set(),
      federatedIssuers: [],
      mtlsClientAuth: true,
    }
    state.apps.set(clientId, app)
  }
  if (registration.mtlsClientAuth !== undefined) app.mtlsClientAuth = registration.mtlsClientAuth
  const registry = entraRegistry(state)
  for (const pem of registration.certificates ?? []) {
    const thumbprint = x5tS256(pem)
    app.certificateThumbprints.add(thumbprint)
    registry.certificates.set(thumbprint, pem)
  }
  for (const secret of registration.clientSecrets ?? []) app.clientSecrets.add(secret)
  for (const subject of registration.federatedSubjects ?? []) app.federatedSubjects.add(subject)
  app.federatedIssuers.push(...(registration.federatedIssuers ?? []))
  return app
}

export interface WorkloadIssuer {
  issuer: string
  /** A Kubernetes-like projected service account token (aud api://AzureADTokenExchange by default). */
  sign(options: { subject: string; audience?: string; lifetimeSec?: number }): Promise<string>
}

/**
 * Registers an OIDC issuer (e.g. an AKS cluster) whose tokens the emulated Entra trusts for the
 * apps that list `{issuer, subject}` in `federatedIssuers`. Real Entra fetches the issuer's JWKS;
 * the emulator keeps the public key instead.
 */
export async function registerWorkloadIssuer(state: EmulatorState, issuer: string): Promise<WorkloadIssuer> {
  const keys = await state.keys.rsaKeyPair('workload-issuer')
  const privateKey = createPrivateKey(keys.privateKeyPem)
  entraRegistry(state).issuerKeys.set(issuer, createPublicKey(keys.publicKeyPem))
  const kid = randomUUID()
  return {
    issuer,
    async sign({ subject, audience = tokenExchangeAudience, lifetimeSec = 3600 }) {
      const now = Math.floor(state.clock.now() / 1000)
      return new SignJWT({})
        .setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid })
        .setIssuer(issuer)
        .setSubject(subject)
        .setAudience(audience)
        .setIssuedAt(now)
        .setNotBefore(now)
        .setExpirationTime(now + lifetimeSec)
        .sign(privateKey)
    },
  }
}
