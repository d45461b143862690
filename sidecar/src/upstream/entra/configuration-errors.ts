/**
 * AADSTS codes that Entra answers on the mTLS and bound-token flows when something must be
 * switched on or corrected in Entra itself (upstream-protocol.md §7). Retrying, re-minting the
 * certificate or blaming the caller's request would not help: the daemon answers 502 with the code
 * and a sentence saying what to configure.
 */

/** "Tenant not allowed for bound token": the one refusal `allowBearerFallback` answers with a Bearer token. */
export const bindingNotAllowedCode = 3921996

const problems: ReadonlyMap<number, (identity: string) => string> = new Map([
  [
    bindingNotAllowedCode,
    (identity: string) =>
      `the tenant is not allowed bound (mTLS PoP) tokens: have mTLS PoP enabled for the tenant in Entra, or set allowBearerFallback: true on identity "${identity}" to be served a Bearer token instead`,
  ],
  [
    392196,
    () =>
      'the resource is not enrolled for mTLS PoP tokens: enable mTLS PoP for the resource (its service principal) in Entra, or ask for it with protocolScheme Bearer',
  ],
  [
    392199,
    (identity: string) =>
      `the app requires its federated (FIC) leg-1 assertion to be an mTLS PoP token: set useBoundCredential: true on the SignedAssertionFromManagedIdentity credential of identity "${identity}", or drop that requirement on the app's federated identity credential in Entra`,
  ],
  [
    500181,
    () =>
      'the TLS client certificate differs from the certificate the client assertion names: the certificate registered on the app in Entra must be the one presented and the one that signs the assertion',
  ],
  [
    51000,
    (identity: string) =>
      `mTLS client authentication (a certificate presented in the TLS handshake) is not enabled for this app in Entra: have it enabled for the app, or set useBoundCredential: false on the certificate of identity "${identity}" to authenticate with a client assertion only`,
  ],
])

/** The first configuration problem among `errorCodes`, with what to do about it; undefined when none. */
export function entraConfigurationProblem(
  errorCodes: readonly number[] | undefined,
  identity: string,
): { code: number; advice: string } | undefined {
  for (const code of errorCodes ?? []) {
    const advice = problems.get(code)
    if (advice) return { code, advice: advice(identity) }
  }
  return undefined
}
