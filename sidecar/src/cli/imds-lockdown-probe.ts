import { execFile } from 'node:child_process'

/**
 * What a request to IMDS from another local uid showed: it reached IMDS (or whatever listens
 * there), it could not connect (the lockdown recipe drops it), or a credential-sidecar answered
 * (the redirect recipe sent it to the sidecar).
 */
export type LockdownProbe =
  | { kind: 'reachable'; uid: number }
  | { kind: 'unreachable'; uid: number; detail: string }
  | { kind: 'redirected'; uid: number }
  | { kind: 'unknown'; reason: string }

export interface LockdownProbeOptions {
  /** The uid (and gid) to probe as; 65534, `nobody`, when absent. */
  uid?: number
  timeoutMs?: number
}

/**
 * Runs in the child, which starts as root and becomes the probed uid before it opens a socket (so
 * the Node binary need not be reachable by that uid: a checkout under a 0700 home directory
 * works). One connection, one `GET /healthz`: a credential-sidecar answers it with 200
 * `{"status":"ok"}`, IMDS does not. The outcome on stdout: `sidecar`, `other`, or why it failed.
 */
const probeScript = `
process.setgroups([])
process.setgid(Number(process.env.PROBE_UID))
process.setuid(Number(process.env.PROBE_UID))
const socket = require('node:net').connect({ host: process.env.PROBE_HOST, port: Number(process.env.PROBE_PORT) })
socket.setTimeout(Number(process.env.PROBE_TIMEOUT_MS))
let answer = ''
let connected = false
const done = (text) => { process.stdout.write(text); socket.destroy(); process.exit(0) }
// Connected: something listens there; it is the sidecar only if it answered as the sidecar does.
const judge = () => {
  const [head = '', body = ''] = answer.split('\\r\\n\\r\\n')
  done(/^HTTP\\/1\\.[01] 200 /.test(head) && body.trim().startsWith('{"status":"ok"}') ? 'sidecar' : 'other')
}
const fail = (why) => (connected ? judge() : done(why))
socket.on('connect', () => {
  connected = true
  socket.write('GET /healthz HTTP/1.1\\r\\nHost: ' + process.env.PROBE_HOST_HEADER + '\\r\\nConnection: close\\r\\n\\r\\n')
})
socket.on('data', (chunk) => { answer += chunk.toString('latin1'); if (answer.length > 4096) judge() })
socket.on('end', judge)
socket.on('timeout', () => fail('timeout'))
socket.on('error', (error) => fail(error.code || 'error'))
`

/**
 * Can a local uid other than the sidecar's reach IMDS, and does the sidecar answer in its place?
 * Only root can tell (it starts the probe, which then drops to the other uid); anyone else gets
 * `unknown` with the reason. A firewall that drops the packets (deploy/nftables/imds-lockdown.nft)
 * shows as a timeout; a redirect to the sidecar (deploy/nftables/imds-redirect.nft) as `redirected`.
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
        cwd: '/',
        timeout: timeoutMs + 3000,
        env: {
          PROBE_UID: String(uid),
          PROBE_HOST: url.hostname.replace(/^\[|\]$/g, ''),
          PROBE_HOST_HEADER: url.host,
          PROBE_PORT: port,
          PROBE_TIMEOUT_MS: String(timeoutMs),
        },
      },
      (error, stdout) => {
        if (error)
          return resolve({ kind: 'unknown', reason: `the probe as uid ${uid} failed (${error.message})` })
        const outcome = stdout.trim()
        resolve(
          outcome === 'sidecar'
            ? { kind: 'redirected', uid }
            : outcome === 'other'
              ? { kind: 'reachable', uid }
              : { kind: 'unreachable', uid, detail: outcome },
        )
      },
    )
  })
}
