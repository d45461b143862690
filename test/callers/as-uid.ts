import { execFile } from 'node:child_process'

/** One answer a client spawned as another uid received. */
export interface UidAnswer {
  status: number
  body: Record<string, any>
  /** The client's port: equal for two answers means one keep-alive connection carried both. */
  localPort: number
  /** The client's own address: `::ffff:127.0.0.1` shows an AF_INET6 socket. */
  localAddress: string
}

/**
 * Runs first in the child, which starts as root: becomes `uid` (and gid, no supplementary
 * groups) before it opens any socket. Started by root, the Node binary need not be reachable by
 * `uid`: a checkout under a 0700 directory (Debian home directories) works too.
 */
export const becomeUid = `
process.setgroups([])
process.setgid(Number(process.env.SIDECAR_TEST_UID))
process.setuid(Number(process.env.SIDECAR_TEST_UID))
`

/** Runs in the child: requests in order over ONE keep-alive connection, answers as JSON on stdout. */
const clientScript = `${becomeUid}
const http = require('node:http')
const { urls, headers, connectHost, socketPath } = JSON.parse(process.env.SIDECAR_TEST_REQUESTS)
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
// connectHost: connect there, while Host still names the URL's host (as Java does for 127.0.0.1).
// socketPath: connect to that Unix socket instead.
const options = (url) =>
  socketPath !== undefined ? { agent, socketPath, headers }
  : connectHost === undefined ? { agent, headers } : { agent, hostname: connectHost, headers: { host: new URL(url).host, ...headers } }
const one = (url) => new Promise((resolve, reject) => {
  const req = http.get(url, options(url), (res) => {
    let body = ''
    res.setEncoding('utf8')
    res.on('data', (chunk) => { body += chunk })
    res.on('end', () => resolve({ status: res.statusCode, body: body ? JSON.parse(body) : {}, localPort: req.socket.localPort, localAddress: req.socket.localAddress }))
  })
  req.on('error', reject)
})
;(async () => {
  const answers = []
  for (const url of urls) answers.push(await one(url))
  agent.destroy()
  process.stdout.write(JSON.stringify(answers))
})().catch((error) => { process.stderr.write(String(error)); process.exit(1) })
`

/**
 * GETs `urls` from a real process running as `uid` (and gid), as a workload on the same host or
 * pod would. Needs root (the test runner's uid); the uid needs no passwd entry. `connectHost`
 * opens the connection to that address instead of the URL's host (`::ffff:127.0.0.1`: an
 * AF_INET6 socket reaching an IPv4 listener, as Java's dual-stack sockets do); `socketPath`
 * connects to that Unix socket.
 */
export function requestsAsUid(
  uid: number,
  urls: string[],
  headers: Record<string, string> = { Metadata: 'true' },
  options: { connectHost?: string; socketPath?: string } = {},
): Promise<UidAnswer[]> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['-e', clientScript],
      {
        cwd: '/',
        timeout: 20_000,
        env: {
          SIDECAR_TEST_UID: String(uid),
          SIDECAR_TEST_REQUESTS: JSON.stringify({
            urls,
            headers,
            connectHost: options.connectHost,
            socketPath: options.socketPath,
          }),
        },
      },
      (error, stdout, stderr) => {
        if (error) return reject(new Error(`client as uid ${uid} failed: ${error.message} ${stderr}`))
        resolve(JSON.parse(stdout) as UidAnswer[])
      },
    )
  })
}

/** Why a test that spawns processes as other uids cannot run here, or undefined when it can. */
export function cannotSpawnAsOtherUids(): string | undefined {
  if (process.platform !== 'linux') return 'callers.allow is Linux-only'
  if (process.getuid?.() !== 0) return 'spawning clients as other uids needs root (CI runs as root)'
  return undefined
}

/** uids no account on a usual system has: nobody, and two unassigned numbers. */
export const uids = { nobody: 65534, alice: 64101, mallory: 64102 } as const
