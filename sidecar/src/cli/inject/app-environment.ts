import { secretKey, sidecarEndpoint } from './layout.ts'
import type { InjectOptions } from './options.ts'

export type AppEnvVar =
  | { name: string; value: string }
  | { name: string; valueFrom: { secretKeyRef: { name: string; key: string } } }

/**
 * The environment that points an app container's SDKs at the sidecar (contract §5):
 * - `CREDENTIAL_SIDECAR_ENDPOINT` always, for the client SDK;
 * - a Bearer identity without a caller secret: `AZURE_POD_IDENTITY_AUTHORITY_HOST`, which unmodified
 *   Azure SDKs use as the IMDS address;
 * - a Bearer identity with a caller secret: `IDENTITY_ENDPOINT` + `IDENTITY_HEADER`, the App Service
 *   pair (the IMDS route demands the secret too, and IMDS clients never send one);
 * - an `MTLS_POP` identity: no unmodified-SDK variable, since those SDKs would ask for a Bearer token
 *   and fail; `IDENTITY_HEADER` only when a secret is used, which the client SDK reads.
 */
export function appEnvironment(options: InjectOptions): AppEnvVar[] {
  const env: AppEnvVar[] = [{ name: 'CREDENTIAL_SIDECAR_ENDPOINT', value: sidecarEndpoint }]
  const bearer = options.protocolScheme === 'Bearer'
  if (bearer && !options.secret)
    env.push({ name: 'AZURE_POD_IDENTITY_AUTHORITY_HOST', value: sidecarEndpoint })
  if (bearer && options.secret) env.push({ name: 'IDENTITY_ENDPOINT', value: `${sidecarEndpoint}/msi/token` })
  if (options.secret)
    env.push({
      name: 'IDENTITY_HEADER',
      valueFrom: { secretKeyRef: { name: options.secret, key: secretKey } },
    })
  return env
}

/**
 * Whether an existing variable is one `inject` wrote (for any options), so a run with other options
 * can remove what no longer applies without touching a variable the user set to something else.
 */
export function isSidecarWiring(variable: unknown): boolean {
  if (!variable || typeof variable !== 'object') return false
  const { name, value, valueFrom } = variable as { name?: unknown; value?: unknown; valueFrom?: unknown }
  switch (name) {
    case 'CREDENTIAL_SIDECAR_ENDPOINT':
    case 'AZURE_POD_IDENTITY_AUTHORITY_HOST':
      return value === sidecarEndpoint
    case 'IDENTITY_ENDPOINT':
      return value === `${sidecarEndpoint}/msi/token`
    case 'IDENTITY_HEADER': {
      const ref = (valueFrom as { secretKeyRef?: { key?: unknown } } | undefined)?.secretKeyRef
      return ref?.key === secretKey
    }
    default:
      return false
  }
}
