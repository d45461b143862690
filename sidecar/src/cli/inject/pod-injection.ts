import { isAlias, isMap, isNode, isScalar, isSeq, type Document, type YAMLMap, type YAMLSeq } from 'yaml'
import { appEnvironment, isSidecarWiring, type AppEnvVar } from './app-environment.ts'
import { opsPort, sidecarContainerName, sidecarUid, tokenPort } from './layout.ts'
import type { InjectOptions } from './options.ts'
import { InjectRefusal } from './refusal.ts'
import { sidecarContainer, sidecarVolumeNames, sidecarVolumes } from './sidecar-container.ts'
import type { PodLocation } from './workload-kinds.ts'

export const workloadIdentityLabel = 'azure.workload.identity/use'
const workloadIdentitySkipAnnotation = 'azure.workload.identity/skip-containers'

/**
 * Adds (or refreshes) the sidecar in one pod and wires its other containers. Everything `inject`
 * owns is rebuilt from the options and put back at the same place, so a second run writes the same
 * bytes; everything else is left as it was, comments included.
 */
export function injectPod(
  document: Document,
  root: YAMLMap,
  location: PodLocation,
  options: InjectOptions,
  what: string,
): void {
  const spec = root.getIn(location.spec, true)
  if (!isMap(spec)) throw new InjectRefusal(`${what}: no pod spec (a mapping) at ${location.spec.join('.')}`)
  if (spec.get('hostNetwork') === true)
    throw new InjectRefusal(
      `${what}: hostNetwork pods share the node's loopback, where the sidecar's port ${tokenPort} would serve every process on the node; run the sidecar as a node service instead`,
    )

  if (spec.getIn(['os', 'name']) === 'windows')
    throw new InjectRefusal(`${what}: a Windows pod; the sidecar's image is Linux`)

  const containers = spec.get('containers', true)
  if (!isSeq(containers) || containers.items.length === 0)
    throw new InjectRefusal(`${what}: spec.containers is missing or empty`)
  const appContainers = containerMaps(containers, `${what}: spec.containers`)
  if (appContainers.some((container) => container.get('name') === sidecarContainerName))
    throw new InjectRefusal(
      `${what}: spec.containers already has a container named "${sidecarContainerName}"; inject adds it as a native sidecar in initContainers: remove it (or rename it) and run inject again`,
    )

  if (!options.workloadIdentity) refuseWorkloadIdentityLabel(root, location, what)

  const initContainers = seqIn(document, spec, 'initContainers', what)
  initContainers.items = initContainers.items.filter(
    (item) => !(isMap(item) && item.get('name') === sidecarContainerName),
  )
  const otherInitContainers = containerMaps(initContainers, `${what}: spec.initContainers`)
  const others = [...otherInitContainers, ...appContainers]
  refusePortConflicts(others, what)
  refuseClientIdMismatch(document, others, options, what)
  // First among the init containers, so later init containers can fetch tokens too.
  initContainers.items.unshift(document.createNode(sidecarContainer(options)))

  const wiring = appEnvironment(options)
  for (const container of others) wireContainer(document, container, wiring, what)

  const hadVolumes = spec.has('volumes')
  const volumes = seqIn(document, spec, 'volumes', what)
  const before = volumes.items.length
  volumes.items = volumes.items.filter(
    (item) => !(isMap(item) && sidecarVolumeNames.includes(String(item.get('name')))),
  )
  const removedOurs = volumes.items.length < before
  for (const volume of sidecarVolumes(options)) volumes.items.push(document.createNode(volume))
  // An empty list only `inject` would have left behind goes; a user's own `volumes: []` stays.
  if (volumes.items.length === 0 && (!hadVolumes || removedOurs)) spec.delete('volumes')
  else if (volumes.items.length === 0) volumes.flow = true // `[]`: an empty block list would print as null
  if (options.secret) ensureFsGroup(document, spec, what)
  if (options.workloadIdentity) labelForWorkloadIdentity(document, root, location, others, what)
}

/**
 * A pod already labelled for Azure workload identity gets the federated token in every container:
 * the app's DefaultAzureCredential would take it and never ask the sidecar. Only
 * `--workload-identity` keeps the token away from the app containers.
 */
function refuseWorkloadIdentityLabel(root: YAMLMap, location: PodLocation, what: string): void {
  const label = root.getIn([...location.metadata, 'labels', workloadIdentityLabel])
  if (label === 'true' || label === true)
    throw new InjectRefusal(
      `${what}: the pod is labelled ${workloadIdentityLabel}: "true", so its app containers would get the federated token and their SDKs would never ask the sidecar; run inject with --workload-identity (the sidecar alone gets the token), or remove the label`,
    )
}

/**
 * An app container that names its identity (`AZURE_CLIENT_ID`) sends it as `client_id` to the
 * sidecar's IMDS and App Service routes, which answer 400 "Identity not found" for any other
 * identity. Where the sidecar's identity is known here (environment mode: `--client-id`, or the
 * system-assigned managed identity without it), a different literal value is refused. Under
 * `--workload-identity` without `--client-id` the ServiceAccount decides, which inject cannot see.
 */
function refuseClientIdMismatch(
  document: Document,
  containers: YAMLMap[],
  options: InjectOptions,
  what: string,
): void {
  if (options.configMap) return
  if (options.workloadIdentity && !options.clientId) return
  for (const container of containers) {
    const env = container.get('env', true)
    if (!isSeq(env)) continue
    const variables = env.items.map(
      (item) => (isNode(item) ? item.toJS(document) : item) as { name?: unknown; value?: unknown } | null,
    )
    // With AZURE_TENANT_ID too, the id names an app credential of the container's own
    // (EnvironmentCredential), not a managed identity it would ask the sidecar for.
    if (variables.some((variable) => variable?.name === 'AZURE_TENANT_ID')) continue
    for (const variable of variables) {
      if (variable?.name !== 'AZURE_CLIENT_ID' || typeof variable.value !== 'string') continue
      const wanted = variable.value.trim()
      if (wanted === '' || wanted.toLowerCase() === options.clientId?.toLowerCase()) continue
      const served = options.clientId
        ? `the managed identity with client id ${options.clientId} (--client-id)`
        : 'the system-assigned managed identity (no --client-id)'
      throw new InjectRefusal(
        `${what}: container "${String(container.get('name'))}" sets AZURE_CLIENT_ID=${wanted}, which its SDK asks the sidecar for, but the sidecar serves ${served} and would answer 400 "Identity not found"; run inject with --client-id ${wanted}, or remove the variable`,
      )
    }
  }
}

function containerMaps(seq: YAMLSeq, where: string): YAMLMap[] {
  return seq.items.map((item, index) => {
    if (isAlias(item))
      throw new InjectRefusal(
        `${where}[${index}] is a YAML alias; expand it first (inject would change every use of it)`,
      )
    if (!isMap(item)) throw new InjectRefusal(`${where}[${index}] is not a container (a mapping)`)
    return item
  })
}

/** The sequence under `key`, created empty when absent. */
function seqIn(document: Document, map: YAMLMap, key: string, what: string): YAMLSeq {
  const existing = map.get(key, true)
  if (existing === undefined || (isScalar(existing) && existing.value === null)) {
    const created = document.createNode([]) as YAMLSeq
    map.set(key, created)
    return created
  }
  if (!isSeq(existing)) throw new InjectRefusal(`${what}: ${key} is not a list`)
  // `[]` would otherwise print the containers we add in flow style, one unreadable line.
  existing.flow = false
  return existing
}

/** The pod shares one network namespace: another container on 7780/7781 would take the sidecar's port. */
function refusePortConflicts(containers: YAMLMap[], what: string): void {
  for (const container of containers) {
    const ports = container.get('ports', true)
    if (!isSeq(ports)) continue
    for (const port of ports.items) {
      const number = isMap(port) ? port.get('containerPort') : undefined
      if (number === tokenPort || number === opsPort)
        throw new InjectRefusal(
          `${what}: container "${String(container.get('name'))}" uses port ${number}, which the sidecar needs in the pod's shared network namespace`,
        )
    }
  }
}

function wireContainer(document: Document, container: YAMLMap, wiring: AppEnvVar[], what: string) {
  const env = seqIn(document, container, 'env', `${what}: container "${String(container.get('name'))}"`)
  const wanted = new Set(wiring.map((variable) => variable.name))
  env.items = env.items.filter((item) => {
    const variable = isNode(item) ? item.toJS(document) : item
    return !(isSidecarWiring(variable) && !wanted.has((variable as { name: string }).name))
  })
  for (const variable of wiring) {
    const node = document.createNode(variable)
    const index = env.items.findIndex((item) => isMap(item) && item.get('name') === variable.name)
    if (index >= 0) env.items[index] = node
    else env.items.push(node)
  }
}

/**
 * The Secret volume is mode 0440 with the pod's fsGroup as its group; the kubelet adds the fsGroup
 * to every container's supplementary groups, so the sidecar (uid 65532) can read it. A pod that
 * already has an fsGroup keeps it: that group works the same way.
 */
function ensureFsGroup(document: Document, spec: YAMLMap, what: string): void {
  const context = spec.get('securityContext', true)
  if (context === undefined) {
    spec.set('securityContext', document.createNode({ fsGroup: sidecarUid }))
    return
  }
  if (!isMap(context)) throw new InjectRefusal(`${what}: spec.securityContext is not a mapping`)
  if (context.get('fsGroup') === undefined) context.set('fsGroup', sidecarUid)
}

/**
 * The azure-workload-identity webhook injects AZURE_CLIENT_ID, AZURE_TENANT_ID,
 * AZURE_FEDERATED_TOKEN_FILE and the token volume into every container of a labelled pod. The
 * sidecar needs them; the app containers must not get them, or their SDKs would go to Entra
 * directly instead of through the sidecar. So: label the pod, and list the other containers in
 * the webhook's skip annotation (keeping names already there).
 */
function labelForWorkloadIdentity(
  document: Document,
  root: YAMLMap,
  location: PodLocation,
  others: YAMLMap[],
  what: string,
): void {
  const metadata = mapAt(document, root, location.metadata, what)
  mapAt(document, metadata, ['labels'], what).set(workloadIdentityLabel, document.createNode('true'))
  const annotations = mapAt(document, metadata, ['annotations'], what)
  const existing = annotations.get(workloadIdentitySkipAnnotation)
  const names =
    typeof existing === 'string'
      ? existing
          .split(';')
          .map((name) => name.trim())
          .filter(Boolean)
      : []
  for (const container of others) {
    const name = String(container.get('name'))
    if (!names.includes(name)) names.push(name)
  }
  annotations.set(workloadIdentitySkipAnnotation, document.createNode(names.join(';')))
}

/**
 * The mapping at `path` under `map`, creating plain mappings on the way (`setIn` would create
 * YAML 1.1 `!!omap`s, which kubectl does not read as objects).
 */
function mapAt(document: Document, map: YAMLMap, path: string[], what: string): YAMLMap {
  let current = map
  for (const key of path) {
    let next: unknown = current.get(key, true)
    if (next === undefined) {
      next = document.createNode({})
      // A new pod template `metadata` reads best where people write it: before `spec`.
      const specIndex = current.items.findIndex((pair) => isScalar(pair.key) && pair.key.value === 'spec')
      if (key === 'metadata' && specIndex >= 0)
        current.items.splice(specIndex, 0, document.createPair(key, next))
      else current.set(key, next)
    } else if (isScalar(next) && next.value === null) {
      next = document.createNode({})
      current.set(key, next)
    }
    if (!isMap(next)) throw new InjectRefusal(`${what}: ${key} is not a mapping`)
    current = next
  }
  return current
}
