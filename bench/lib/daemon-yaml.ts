import type { EmulatorProcess } from './processes.ts'

/** A daemon config pointing at the emulator process, with `identities` (YAML, two-space indented). */
export function daemonYaml(emulator: EmulatorProcess, identities: string, extra = ''): string {
  return [
    'listen:',
    '  host: 127.0.0.1',
    '  port: 0',
    'upstream:',
    `  imdsEndpoint: ${emulator.imdsUrl}`,
    `  authorityHost: ${emulator.entraUrl}`,
    `  caFile: ${emulator.caFile}`,
    extra,
    'identities:',
    identities,
    '',
  ].join('\n')
}
