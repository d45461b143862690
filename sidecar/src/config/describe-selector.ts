import type { ManagedIdentitySelector } from './types.ts'

/**
 * Which managed identity, in the one wording of labels, logs and `check-config`:
 * `system-assigned`, or `user-assigned, clientId 1111…` (objectId, resourceId alike).
 */
export function describeSelector(selector: ManagedIdentitySelector): string {
  return selector.kind === 'system' ? 'system-assigned' : `user-assigned, ${selector.kind} ${selector.value}`
}
