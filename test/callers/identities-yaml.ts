import type { Emulator } from '../../sidecar/src/emulator/emulator.ts'

/** The `identities:` the callers tests share: `mi` (system-assigned) and `two` (a user-assigned one). */
export function twoIdentitiesYaml(emulator: Emulator): string[] {
  return [
    'identities:',
    '  mi:',
    '    managedIdentity: {}',
    '  two:',
    '    managedIdentity:',
    `      userAssignedClientId: "${emulator.state.managedIdentities[1]!.clientId}"`,
    '',
  ]
}
