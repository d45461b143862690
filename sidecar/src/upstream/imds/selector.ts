import type { ManagedIdentitySelector } from '../../config/types.ts'

/**
 * The query parameter that names a user-assigned identity (none for system-assigned). IMDS v1
 * spells the resource id `msi_res_id`, IMDS v2 `mi_res_id` (MSAL.NET ImdsManagedIdentitySource.cs,
 * V2/ImdsV2ManagedIdentitySource.cs).
 */
export function imdsSelectorParam(
  selector: ManagedIdentitySelector,
  resourceIdParam: 'msi_res_id' | 'mi_res_id',
): [string, string] | undefined {
  switch (selector.kind) {
    case 'system':
      return undefined
    case 'clientId':
      return ['client_id', selector.value]
    case 'objectId':
      return ['object_id', selector.value]
    case 'resourceId':
      return [resourceIdParam, selector.value]
  }
}
