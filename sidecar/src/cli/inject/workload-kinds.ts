/** Where a workload keeps the pod it runs: the pod's metadata and spec, as YAML paths. */
export interface PodLocation {
  metadata: string[]
  spec: string[]
}

const template = (prefix: string[]): PodLocation => ({
  metadata: [...prefix, 'template', 'metadata'],
  spec: [...prefix, 'template', 'spec'],
})

// Only the built-in API groups: a custom resource that happens to be called `Job` (Volcano,
// Kueue…) has a pod template somewhere else, or none, and is passed through.
const locations: Record<string, PodLocation> = {
  'v1/Pod': { metadata: ['metadata'], spec: ['spec'] },
  'apps/v1/Deployment': template(['spec']),
  'apps/v1/StatefulSet': template(['spec']),
  'apps/v1/DaemonSet': template(['spec']),
  'batch/v1/Job': template(['spec']),
  'batch/v1/CronJob': template(['spec', 'jobTemplate', 'spec']),
}

/** The pod inside a document of this kind, or undefined for a kind `inject` leaves alone. */
export function podLocation(apiVersion: unknown, kind: unknown): PodLocation | undefined {
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') return undefined
  return locations[`${apiVersion}/${kind}`]
}
