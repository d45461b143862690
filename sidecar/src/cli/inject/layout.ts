import { defaults } from '../../config/defaults.ts'
import { sidecarVersion } from '../../core/version.ts'

/**
 * The names, ports and paths `inject` writes. They are part of the product surface: README and
 * deploy/kubernetes/ name them, and a later `inject` recognises its own work by them.
 */
export const sidecarContainerName = 'credential-sidecar'
export const configVolumeName = 'credential-sidecar-config'
export const secretVolumeName = 'credential-sidecar-secret'
export const configMountPath = '/etc/credential-sidecar'
export const configFileName = 'config.yaml'
export const secretMountPath = '/var/run/secrets/credential-sidecar'
/** The key the caller Secret must hold (contract §1: `--secret NAME`). */
export const secretKey = 'identity-header'
export const tokenPort = defaults.listenPort
export const opsPort = defaults.opsPort
/** The image's numeric uid/gid: a numeric uid lets the kubelet verify runAsNonRoot. */
export const sidecarUid = 65532
export const sidecarEndpoint = `http://127.0.0.1:${tokenPort}`

/** `credential-sidecar:<version of this package>`: output is reproducible for a given release. */
export function defaultImage(): string {
  return `credential-sidecar:${sidecarVersion()}`
}
