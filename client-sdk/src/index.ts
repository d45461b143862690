// First, and on its own: fails with the required and the found Node.js version before anything
// that would fail less clearly on an old Node.js runs (see node-version.ts).
import './node-version.ts'

export { SidecarClient } from './client.ts'
export type { GetTokenOptions, MtlsAgentOptions, SidecarClientOptions, SidecarFetchInit } from './client.ts'
export { CredentialUnavailableError, SidecarClientError, isSidecarClientError } from './errors.ts'
export type { LocalErrorCode, SidecarClientErrorCode, SidecarClientErrorOptions } from './errors.ts'
export type { SidecarBindingCertificate, SidecarToken } from './token.ts'
export type { CaOption } from './mtls-agents.ts'
export type { AbortSignalLike } from './abort.ts'
export type {
  SidecarAccessToken,
  SidecarTokenCredential,
  SidecarTokenCredentialGetTokenOptions,
  TokenCredentialOptions,
} from './token-credential.ts'
export { defaultEndpoint, isLoopbackHostname } from './endpoint.ts'
