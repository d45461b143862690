import {
  configFileName,
  configMountPath,
  configVolumeName,
  opsPort,
  secretKey,
  secretMountPath,
  secretVolumeName,
  sidecarContainerName,
  sidecarUid,
  tokenPort,
} from './layout.ts'
import type { InjectOptions } from './options.ts'

type EnvVar = { name: string; value: string }

/**
 * The sidecar as a native sidecar container (an `initContainers` entry with `restartPolicy:
 * Always`): it starts before the app containers, keeps running beside them, and stops after them.
 * Every field is written in a fixed order so that a second `inject` produces the same bytes.
 */
export function sidecarContainer(options: InjectOptions): Record<string, unknown> {
  const volumeMounts = []
  if (options.configMap)
    volumeMounts.push({ name: configVolumeName, mountPath: configMountPath, readOnly: true })
  if (options.secret)
    volumeMounts.push({ name: secretVolumeName, mountPath: secretMountPath, readOnly: true })
  return {
    name: sidecarContainerName,
    image: options.image,
    restartPolicy: 'Always',
    env: sidecarEnvironment(options),
    ports: [{ name: 'sidecar-ops', containerPort: opsPort, protocol: 'TCP' }],
    // The kubelet probes the pod IP, never the pod's loopback: probes go to the ops listener, which
    // serves only /healthz, /readyz and /metrics. For a native sidecar the startup probe also
    // holds back the app containers until the daemon listens.
    startupProbe: probe('/healthz', { periodSeconds: 1, failureThreshold: 30 }),
    readinessProbe: probe('/readyz', { periodSeconds: 5, failureThreshold: 3 }),
    livenessProbe: probe('/healthz', { periodSeconds: 10, failureThreshold: 3 }),
    resources: {
      requests: { cpu: '10m', memory: '80Mi' },
      // RSA key generation for IMDS v2 binding certificates is the CPU peak; memory is Node's heap.
      limits: { cpu: '500m', memory: '192Mi' },
    },
    securityContext: {
      runAsNonRoot: true,
      runAsUser: sidecarUid,
      runAsGroup: sidecarUid,
      allowPrivilegeEscalation: false,
      privileged: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    ...(volumeMounts.length ? { volumeMounts } : {}),
  }
}

/** Contract §1: with no config file the daemon reads these; with one, the file alone decides. */
function sidecarEnvironment(options: InjectOptions): EnvVar[] {
  if (options.configMap)
    return [{ name: 'CREDENTIAL_SIDECAR_CONFIG', value: `${configMountPath}/${configFileName}` }]
  const env: EnvVar[] = [
    { name: 'CREDENTIAL_SIDECAR_LISTEN', value: `127.0.0.1:${tokenPort}` },
    { name: 'CREDENTIAL_SIDECAR_OPS_LISTEN', value: `0.0.0.0:${opsPort}` },
    { name: 'CREDENTIAL_SIDECAR_PROTOCOL_SCHEME', value: options.protocolScheme },
  ]
  if (options.secret)
    env.push({ name: 'CREDENTIAL_SIDECAR_SECRET_FILE', value: `${secretMountPath}/${secretKey}` })
  if (options.clientId) env.push({ name: 'AZURE_CLIENT_ID', value: options.clientId })
  return env
}

function probe(path: string, timing: { periodSeconds: number; failureThreshold: number }) {
  return { httpGet: { path, port: opsPort }, ...timing }
}

/** The volumes the sidecar mounts; their names are the sidecar's own. */
export function sidecarVolumes(options: InjectOptions): Record<string, unknown>[] {
  const volumes: Record<string, unknown>[] = []
  if (options.configMap)
    volumes.push({
      name: configVolumeName,
      configMap: { name: options.configMap, items: [{ key: configFileName, path: configFileName }] },
    })
  if (options.secret)
    volumes.push({
      name: secretVolumeName,
      // 0440 (written in decimal: YAML 1.1 and 1.2 read a leading-zero number differently), group
      // = the pod's fsGroup, which the kubelet adds to every container's groups: readable by the
      // sidecar's uid whatever uid the app runs as, and by nobody outside the pod's fsGroup.
      secret: {
        secretName: options.secret,
        defaultMode: 0o440,
        items: [{ key: secretKey, path: secretKey }],
      },
    })
  return volumes
}

/** Every volume name `inject` may have written, so a later run can take back what it no longer needs. */
export const sidecarVolumeNames: readonly string[] = [configVolumeName, secretVolumeName]
