import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import type { TestContext } from 'node:test'
import { promisify } from 'node:util'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { decodeJwt } from 'jose'
import { json, type Stack } from '../../support/stack.ts'

/**
 * Shared by the real-client tests (python-identity, azure-cli, go-adal): the stack's identities,
 * the environments each managed identity dialect is reached by, running a client process with
 * exactly that environment, and the checks that the client got the daemon's token on the expected
 * route.
 */
export const secret = 'real-client-identity-header-value'

/** What a client child process printed: a token and its expiry (epoch seconds), or an error. */
export interface ClientResult {
  status: number
  token?: string
  /** Epoch seconds. */
  expiresOn?: number
  error?: string
  /** Go adal: the endpoint adal.GetMSIEndpoint chose. */
  endpoint?: string
  stderr: string
}

/** The token routes, as the daemon logs them. */
export const routes = {
  imds: /^\/+metadata\/identity\/oauth2\/token\/?$/i,
  appService: /^\/+msi\/token\/?$/i,
} as const

export type Dialect = 'app-service-2019' | 'app-service-2017' | 'cloud-shell' | 'imds'

/** The request each dialect sends: method and route. */
export const dialectRequest: Record<Dialect, { method: 'GET' | 'POST'; route: RegExp }> = {
  'app-service-2019': { method: 'GET', route: routes.appService },
  'app-service-2017': { method: 'GET', route: routes.appService },
  'cloud-shell': { method: 'POST', route: routes.imds },
  imds: { method: 'GET', route: routes.imds },
}

/** The environment that makes an unmodified client speak `dialect` to the stack. */
export function dialectEnv(stack: Stack, dialect: Dialect): Record<string, string> {
  switch (dialect) {
    case 'app-service-2019':
      return { IDENTITY_ENDPOINT: `${stack.url}/msi/token`, IDENTITY_HEADER: secret }
    case 'app-service-2017':
      return { MSI_ENDPOINT: `${stack.url}/msi/token`, MSI_SECRET: secret }
    case 'cloud-shell':
      return { MSI_ENDPOINT: `${stack.url}/metadata/identity/oauth2/token` }
    case 'imds':
      return { AZURE_POD_IDENTITY_AUTHORITY_HOST: stack.url }
  }
}

/**
 * The daemon's YAML: identities `mi` and user-assigned `uami`, and with `secret` a caller secret
 * (the App Service dialects need one) in a file removed after the test.
 */
export function configYaml(options: { secret: false } | { secret: true; t: TestContext }) {
  return (emulator: Stack['emulator']): string => {
    let callers = ''
    if (options.secret) {
      const dir = mkdtempSync(join(tmpdir(), 'sidecar-client-secret-'))
      options.t.after(() => rmSync(dir, { recursive: true, force: true }))
      const file = join(dir, 'identity-header')
      writeFileSync(file, secret, { mode: 0o600 })
      callers = `callers:\n  secretFile: ${file}\n`
    }
    const uami = emulator.state.managedIdentities[1]!.clientId
    return `${callers}identities:\n  mi:\n    managedIdentity: {}\n  uami:\n    managedIdentity:\n      userAssignedClientId: "${uami}"\n`
  }
}

/** The App Service dialects need the caller secret; the others must work without one. */
export const needsSecret = (dialect: Dialect) => dialect.startsWith('app-service')

/**
 * Runs `file args` with exactly `env` plus PATH, HOME and LANG: no proxy settings and no AZURE_*,
 * IDENTITY_* or MSI_* variables from the outer environment, so nothing can send the request
 * anywhere but the loopback daemon. Parses the JSON the client printed on stdout.
 */
export function runClient(
  file: string,
  args: string[],
  env: Record<string, string>,
  options: { timeoutMs?: number; cwd?: string } = {},
): Promise<ClientResult> {
  const childEnv = {
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    HOME: process.env['HOME'] ?? tmpdir(),
    LANG: 'C.UTF-8',
    ...env,
  }
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      {
        env: childEnv,
        timeout: options.timeoutMs ?? 60_000,
        maxBuffer: 4 << 20,
        ...(options.cwd ? { cwd: options.cwd } : {}),
      },
      (error, stdout, stderr) => {
        const status = error ? (typeof error.code === 'number' ? error.code : 1) : 0
        let parsed: Partial<ClientResult> = {}
        try {
          parsed = JSON.parse(stdout) as Partial<ClientResult>
        } catch {
          parsed = { error: `unparseable output: ${stdout.slice(0, 300)} ${error?.message ?? ''}` }
        }
        resolve({ status, stderr, ...parsed })
      },
    )
  })
}

/**
 * What the checks read from a daemon: the token it serves on /token and the requests it logged.
 * In process for a stack; through netns-stack.ts for a daemon inside a network namespace.
 */
export interface DaemonView {
  /** GET /token?resource=…&identity=… answered by the daemon. */
  served(resource: string, identity: string): Promise<Record<string, any>>
  /** The daemon's `request` log records and its whole log text. */
  logs(): Promise<{ records: Record<string, unknown>[]; text: string }>
}

export function stackView(stack: Stack): DaemonView {
  return {
    // The secret header is ignored by a daemon without callers.secretFile.
    served: async (resource, identity) =>
      json(
        await stack.get(`/token?resource=${encodeURIComponent(resource)}&identity=${identity}`, {
          'X-IDENTITY-HEADER': secret,
        }),
      ),
    logs: async () => ({ records: stack.logs.records, text: stack.logs.text }),
  }
}

/**
 * The client got exactly the token the daemon serves for `identity` (the same cache entry as
 * /token), for `resource`, naming the expected managed identity, with the daemon's expiry.
 */
export async function assertDaemonToken(
  daemon: DaemonView,
  result: ClientResult,
  options: { identity: string; resource: string; appid: string },
): Promise<void> {
  assert.equal(result.status, 0, `${result.error ?? ''}\n${result.stderr.slice(-2000)}`)
  assert.ok(result.token, 'the client printed a token')
  const claims = decodeJwt(result.token)
  // The daemon names a resource without its trailing slash (`…windows.net/` and `…windows.net` are one entry).
  assert.equal(String(claims.aud).replace(/\/$/, ''), options.resource.replace(/\/$/, ''))
  assert.equal(claims['appid'], options.appid)
  const served = await daemon.served(options.resource, options.identity)
  assert.equal(result.token, served['access_token'], 'the client got the daemon-cached token')
  if (result.expiresOn !== undefined) {
    assert.ok(Math.abs(result.expiresOn - served['expires_on']) <= 5, 'expiry read from the answer')
  }
}

/** The daemon answered the client on the dialect's route with the dialect's method, and 200. */
export async function assertRoute(daemon: DaemonView, dialect: Dialect): Promise<void> {
  const { method, route } = dialectRequest[dialect]
  const { records, text } = await daemon.logs()
  const requests = records.filter((r) => r['msg'] === 'request')
  const seen = requests.map((r) => `${String(r['method'])} ${String(r['path'])} ${String(r['status'])}`)
  assert.ok(
    requests.some((r) => r['method'] === method && route.test(String(r['path'])) && r['status'] === 200),
    `expected ${method} ${route} answered 200; the daemon saw: ${seen.join(', ') || 'nothing'}`,
  )
  assert.doesNotMatch(text, new RegExp(secret), 'the caller secret is never logged')
}

/**
 * Builds go/adal-token into `dir` offline: GOPATH mode against Debian's /usr/share/gocode (adal and
 * its dependencies), a private GOCACHE, no module proxy. Returns the binary's path.
 */
export async function buildAdalToken(dir: string): Promise<string> {
  const binary = join(dir, 'adal-token')
  await promisify(execFile)('/usr/bin/go', ['build', '-o', binary, '.'], {
    cwd: join(import.meta.dirname, 'go', 'adal-token'),
    timeout: 180_000,
    env: {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      HOME: dir,
      GO111MODULE: 'off',
      GOPATH: '/usr/share/gocode',
      GOCACHE: join(dir, 'go-cache'),
      GOFLAGS: '',
      GOPROXY: 'off',
    },
  })
  return binary
}
