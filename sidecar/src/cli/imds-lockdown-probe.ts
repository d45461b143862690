import { execFile } from 'node:child_process'

/** What a TCP connect to IMDS from another local uid showed. */
export type LockdownProbe =
  | { kind: 'reachable'; uid: number }
  | { kind: 'unreachable'; uid: number; detail: string }
  | { kind: 'unknown'; reason: string }

export interface LockdownProbeOptions {
  /** The uid (and gid) to probe as; 65534, `nobody`, when absent. */
  uid?: number
  timeoutMs?: number
}

/** Runs in the child: one TCP connect, the outcome on stdout. Nothing is sent. */
const probeScript = `
const socket = require('node:net').connect({ host: process.env.PROBE_HOST, port: Number(process.env.PROBE_PORT) })
socket.setTimeout(Number(process.env.PROBE_TIMEOUT_MS))
const done = (text) => { process.stdout.write(text); socket.destroy(); process.exit(0) }
socket.on('connect', () => done('reachable'))
socket.on('timeout', () => done('timeout'))
socket.on('error', (error) => done(error.code || 'error'))
`

/**
 * Can a local uid other than the sidecar's open a connection to IMDS? Only root can tell (it
 * spawns the probe as another uid); anyone else gets `unknown` with the reason. A firewall that
 * drops the packets (deploy/nftables/imds-lockdown.nft) shows as a timeout.
 */
export function probeImdsAsOtherUid(
  imdsEndpoint: string,
  options: LockdownProbeOptions = {},
): Promise<LockdownProbe> {
  if (process.platform !== 'linux')
    return Promise.resolve({ kind: 'unknown', reason: 'only probed on Linux' })
  if (process.getuid?.() !== 0)
    return Promise.resolve({ kind: 'unknown', reason: 'run doctor as root to probe as another uid' })
  const uid = options.uid ?? 65534
  const timeoutMs = options.timeoutMs ?? 1500
  const url = new URL(imdsEndpoint)
  const port = url.port === '' ? (url.protocol === 'https:' ? '443' : '80') : url.port
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['-e', probeScript],
      {
        uid,
        gid: uid,
        cwd: '/',
        timeout: timeoutMs + 3000,
        env: {
          PROBE_HOST: url.hostname.replace(/^\[|\]$/g, ''),
          PROBE_PORT: port,
          PROBE_TIMEOUT_MS: String(timeoutMs),
        },
      },
      (error, stdout) => {
        if (error)
          return resolve({ kind: 'unknown', reason: `the probe as uid ${uid} failed (${error.message})` })
        const outcome = stdout.trim()
        resolve(
          outcome === 'reachable'
            ? { kind: 'reachable', uid }
            : { kind: 'unreachable', uid, detail: outcome },
        )
      },
    )
  })
}
