import type { SidecarConfig } from './types.ts'

/**
 * What is valid but risky: `check-config` prints it under "warnings:", and the daemon logs it at
 * start (an operator may never run check-config).
 */
export function configWarnings(config: SidecarConfig): string[] {
  const warnings: string[] = []
  if (config.compat.agentIdSidecar && config.callers.allow === undefined)
    warnings.push(
      'compat.agentIdSidecar is on without callers.allow: its routes demand neither Metadata: true nor ' +
        'the caller secret (as the AgentID container), so any local process — or a server-side request ' +
        'forgery in one — can get tokens from them; set callers.allow to say which local users may',
    )
  return warnings
}
