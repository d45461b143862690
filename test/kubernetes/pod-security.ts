/**
 * The Pod Security Standards "restricted" profile (which includes "baseline"), checked the way the
 * PodSecurity admission controller checks a pod, over every container: regular, init (native
 * sidecars included) and ephemeral. https://kubernetes.io/docs/concepts/security/pod-security-standards/
 * Returns one message per violation; an empty list means the pod is admitted.
 */

type Obj = Record<string, any>

const allowedVolumeTypes = new Set([
  'configMap',
  'csi',
  'downwardAPI',
  'emptyDir',
  'ephemeral',
  'persistentVolumeClaim',
  'projected',
  'secret',
])
const safeSysctls = new Set([
  'kernel.shm_rmid_forced',
  'net.ipv4.ip_local_port_range',
  'net.ipv4.ip_unprivileged_port_start',
  'net.ipv4.tcp_syncookies',
  'net.ipv4.ping_group_range',
  'net.ipv4.ip_local_reserved_ports',
  'net.ipv4.tcp_keepalive_time',
  'net.ipv4.tcp_fin_timeout',
  'net.ipv4.tcp_keepalive_intvl',
  'net.ipv4.tcp_keepalive_probes',
])
const allowedSeLinuxTypes = new Set([
  '',
  'container_t',
  'container_init_t',
  'container_kvm_t',
  'container_engine_t',
])

export function restrictedViolations(spec: Obj, metadata: Obj = {}): string[] {
  const violations: string[] = []
  const pod = (spec['securityContext'] ?? {}) as Obj
  const containers: [string, Obj][] = (
    ['initContainers', 'containers', 'ephemeralContainers'] as const
  ).flatMap((field) =>
    ((spec[field] ?? []) as Obj[]).map((c): [string, Obj] => [`${field}[${c['name']}]`, c]),
  )

  // baseline
  for (const field of ['hostNetwork', 'hostPID', 'hostIPC'])
    if (spec[field] === true) violations.push(`${field} is true`)
  if (pod['windowsOptions']?.hostProcess === true) violations.push('pod windowsOptions.hostProcess')
  for (const volume of (spec['volumes'] ?? []) as Obj[]) {
    const types = Object.keys(volume).filter((key) => key !== 'name')
    for (const type of types)
      if (!allowedVolumeTypes.has(type)) violations.push(`volume ${volume['name']} has type ${type}`)
  }
  for (const sysctl of (pod['sysctls'] ?? []) as Obj[])
    if (!safeSysctls.has(sysctl['name'])) violations.push(`unsafe sysctl ${sysctl['name']}`)
  checkSeLinux(pod['seLinuxOptions'], 'pod', violations)
  checkAppArmor(pod['appArmorProfile'], 'pod', violations)
  for (const [key, value] of Object.entries((metadata['annotations'] ?? {}) as Obj))
    if (
      key.startsWith('container.apparmor.security.beta.kubernetes.io/') &&
      value !== 'runtime/default' &&
      !String(value).startsWith('localhost/')
    )
      violations.push(`annotation ${key}: ${value}`)

  // restricted, pod level
  if (pod['runAsUser'] === 0) violations.push('pod runAsUser is 0')
  if (pod['seccompProfile'] && !['RuntimeDefault', 'Localhost'].includes(pod['seccompProfile'].type))
    violations.push(`pod seccompProfile ${pod['seccompProfile'].type}`)

  for (const [where, container] of containers) {
    const context = (container['securityContext'] ?? {}) as Obj
    // baseline
    if (context['privileged'] === true) violations.push(`${where}: privileged`)
    if (context['windowsOptions']?.hostProcess === true)
      violations.push(`${where}: windowsOptions.hostProcess`)
    for (const port of (container['ports'] ?? []) as Obj[])
      if (port['hostPort']) violations.push(`${where}: hostPort ${port['hostPort']}`)
    if (context['procMount'] !== undefined && context['procMount'] !== 'Default')
      violations.push(`${where}: procMount ${context['procMount']}`)
    checkSeLinux(context['seLinuxOptions'], where, violations)
    checkAppArmor(context['appArmorProfile'], where, violations)
    // restricted
    if (context['allowPrivilegeEscalation'] !== false)
      violations.push(`${where}: allowPrivilegeEscalation is not false`)
    const runAsNonRoot = context['runAsNonRoot'] ?? pod['runAsNonRoot']
    if (context['runAsNonRoot'] === false || runAsNonRoot !== true)
      violations.push(`${where}: runAsNonRoot is not true (container or pod)`)
    if (context['runAsUser'] === 0) violations.push(`${where}: runAsUser is 0`)
    const seccomp = (context['seccompProfile'] ?? pod['seccompProfile']) as Obj | undefined
    if (!seccomp || !['RuntimeDefault', 'Localhost'].includes(seccomp['type']))
      violations.push(`${where}: seccompProfile is not RuntimeDefault or Localhost (container or pod)`)
    const capabilities = (context['capabilities'] ?? {}) as Obj
    if (!((capabilities['drop'] ?? []) as string[]).includes('ALL'))
      violations.push(`${where}: capabilities.drop does not include ALL`)
    for (const added of (capabilities['add'] ?? []) as string[])
      if (added !== 'NET_BIND_SERVICE') violations.push(`${where}: adds capability ${added}`)
  }
  return violations
}

function checkSeLinux(options: Obj | undefined, where: string, violations: string[]): void {
  if (!options) return
  if (options['type'] !== undefined && !allowedSeLinuxTypes.has(options['type']))
    violations.push(`${where}: seLinuxOptions.type ${options['type']}`)
  if (options['user'] || options['role']) violations.push(`${where}: seLinuxOptions.user/role set`)
}

function checkAppArmor(profile: Obj | undefined, where: string, violations: string[]): void {
  if (profile && !['RuntimeDefault', 'Localhost'].includes(profile['type']))
    violations.push(`${where}: appArmorProfile ${profile['type']}`)
}
