import { pino, type Logger, type DestinationStream } from 'pino'

export type { Logger }

/**
 * Structured JSON logs (pino). Code never passes tokens, assertions, keys or secret headers to the
 * logger; the redaction list is a second line of defence for fields that might carry one by accident.
 */
export const redactedPaths = [
  'access_token',
  'accessToken',
  'token',
  'assertion',
  'client_assertion',
  'client_secret',
  'clientSecret',
  'private_key',
  'privateKey',
  'secret',
  'password',
  'certificatePassword',
  'authorization',
  'headers.authorization',
  'headers["x-identity-header"]',
  'headers.cookie',
  '*.access_token',
  '*.accessToken',
  '*.assertion',
  '*.private_key',
  '*.privateKey',
  '*.secret',
]

export interface LoggerOptions {
  level?: string
  destination?: DestinationStream
}

export function createLogger(options: LoggerOptions = {}): Logger {
  return pino(
    {
      level: options.level ?? process.env['CREDENTIAL_SIDECAR_LOG_LEVEL'] ?? 'info',
      base: { name: 'credential-sidecar' },
      timestamp: pino.stdTimeFunctions.isoTime,
      messageKey: 'msg',
      redact: { paths: redactedPaths, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination ?? pino.destination({ fd: 1, sync: true }),
  )
}

/** A logger that drops everything, for tests and library callers that do not care. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' })
}
