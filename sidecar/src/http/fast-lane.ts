import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Runtime } from '../core/runtime.ts'
import type { Identity } from '../identities/identity.ts'
import type { Scope } from '../model/scope.ts'
import type { CachedToken } from '../cache/token-cache.ts'
import type { ServedToken } from '../identities/identity.ts'
import type { TokenService } from '../tokens/token-service.ts'
import type { CallerAccess } from './callers/caller-access.ts'
import { rawHeaderLookup } from './callers/caller-guard.ts'
import { PerTurnQueue } from './callers/per-turn-queue.ts'
import { tokenRouteRefusal, type CallerChecks } from './caller-checks.ts'
import type { Readiness } from './readiness.ts'
import { logRequest } from './request-log.ts'
import { tokenRoutes, type TokenAsk, type TokenRoute } from './token-routes.ts'

export interface FastLaneDeps {
  runtime: Runtime
  tokens: TokenService
  readiness: Readiness
  callers: CallerChecks
}

type Listener = (req: IncomingMessage, res: ServerResponse) => void

/** Observability without log lines: how many answers the lane wrote itself. */
export interface FastLaneStatus {
  served: number
}

/** What a request target means, once understood: static for a given configuration. */
interface Target {
  route: TokenRoute
  /** The metrics route label and access-log path, as hono names them (`//` collapsed). */
  label: string
  ask: TokenAsk
  /** The identity the parameters name, or the route's default (callers.allow picks the caller's). */
  identity: Identity
  scope: Scope
}

/** A pre-serialised answer: JSON split around the fields that depend on the time. */
interface Template {
  parts: string[]
  fills: ((nowMs: number) => string)[]
  /** Bytes of `parts` (every fill is ASCII). */
  partsBytes: number
}

/** Request path → route and label: every path of the table, and `/` + it where the route says. */
const routes = new Map<string, { route: TokenRoute; label: string }>(
  tokenRoutes.flatMap((route) =>
    route.paths.flatMap((path) => [
      [path, { route, label: path }] as const,
      ...(route.doubleSlash ? [[`/${path}`, { route, label: path }] as const] : []),
    ]),
  ),
)

/** Raw query values the lane understands: unreserved characters, `:`, `/` and percent escapes. */
const plainRaw = /^[A-Za-z0-9\-._~%:/]+$/
/** The same, decoded: no `@`, `#`, `?`, `%`, space or control character can reach the cache here. */
const plainDecoded = /^[A-Za-z0-9\-._~:/]+$/
const maxTargets = 1024
const maxVariantsPerToken = 8

/**
 * The fast lane for cache hits (issue 11): a `GET` on a token route of the table
 * (`token-routes.ts`) whose answer is a fresh cache hit is written straight from node:http with
 * bytes serialised once per cache entry. Everything else — a miss, a refresh due, a refusal, a
 * query it does not fully understand (claims, token_sha256_to_refresh, an unknown or repeated
 * parameter, an unusual character), another route, draining — goes to `next` (the hono app)
 * untouched, and the lane has done nothing observable by then. Answers, headers, status, metrics
 * and the access log are the hono door's: the same route, read by the same steps, answered by the
 * same builder after the same caller check (`tokenRouteRefusal`). With `callers.allow` it serves
 * only a connection whose owner is already known and allowed the identity
 * (`CallerAccess.admits`), so it never waits nor refuses.
 */
export function fastLane(deps: FastLaneDeps, next: Listener): { listener: Listener; status: FastLaneStatus } {
  const status: FastLaneStatus = { served: 0 }
  const { runtime, tokens, readiness, callers } = deps
  // callers.allow: decided once per connection (PeerUids); the lane serves a caller whose uid is
  // known and allowed, and leaves everything else (a lookup still running, a refusal to log and
  // count) to the hono app, which waits or refuses as it always does.
  const access = callers.access
  const refused = new PerTurnQueue({ perTurn: 8 })
  const refusal = tokenRouteRefusal(callers)
  // Request target → meaning. Bounded: a caller cycling through resources only loses the memo.
  const targets = new Map<string, Target | null>()
  const templates = new WeakMap<CachedToken, Map<string, Template>>()

  const understand = (url: string): Target | undefined => {
    let target = targets.get(url)
    if (target === undefined) {
      target = parseTarget(tokens, url) ?? null
      if (targets.size >= maxTargets) targets.clear()
      targets.set(url, target)
    }
    return target ?? undefined
  }

  const callerAllowed = (target: Target, req: IncomingMessage): boolean =>
    refusal(target.route.guard, rawHeaderLookup(req.rawHeaders), () => target.ask.apiVersion) === undefined

  const templateFor = (target: Target, served: ServedToken, nowMs: number): Template | undefined => {
    let variants = templates.get(served.token)
    // The answer shows the token and, on the compat routes, the resource as asked.
    const variant = `${target.route.name} ${target.ask.resource ?? ''}`
    const known = variants?.get(variant)
    if (known) return known
    const made = makeTemplate(target, served, nowMs, callers.exposePrivateKey)
    if (made === undefined) return undefined
    if (!variants) templates.set(served.token, (variants = new Map()))
    if (variants.size < maxVariantsPerToken) variants.set(variant, made)
    return made
  }

  /** The identity this connection's caller gets for `target` under callers.allow, if allowed now. */
  const admitted = (access: CallerAccess, target: Target, req: IncomingMessage): Identity | undefined => {
    let identity = target.identity
    if (!target.ask.selected) {
      // A compat route with no selector serves the caller's first listed identity.
      const name = access.compatIdentityOf(req.socket)
      if (name === undefined) return undefined
      try {
        identity = target.route.identity(tokens, target.ask, () => name)
      } catch {
        return undefined
      }
    }
    return access.admits(req.socket, identity.name) ? identity : undefined
  }

  const listener: Listener = function fastLaneListener(req, res) {
    const started = performance.now()
    const url = req.url
    // A GET that announces a body is the hono app's to refuse (400 and close, RFC 9112): answering it
    // here, synchronously inside the parser's callback, would answer before node sees a bad body.
    if (req.method !== 'GET' || url === undefined || readiness.draining || announcesBody(req.rawHeaders))
      return next(req, res)
    const target = understand(url)
    if (target === undefined || !callerAllowed(target, req)) return next(req, res)
    // A connection's first request usually arrives while its owner is still being looked up:
    // come back once it is known (the hono app would wait for it too).
    const pending = access?.pending(req.socket)
    if (pending) {
      void pending
        .then(() => fastLaneListener(req, res))
        .catch(() => {
          if (!res.headersSent) next(req, res)
        })
      return
    }
    const identity = access ? admitted(access, target, req) : target.identity
    // Not admitted by callers.allow: the app refuses, a few per turn (per-turn-queue.ts), so a
    // refused uid's burst does not hold up connections already allowed.
    if (identity === undefined) return access ? refused.defer(() => next(req, res)) : next(req, res)
    const served = identity.cachedToken(target.scope)
    if (served === undefined) return next(req, res)
    const nowMs = runtime.clock.now()
    let template: Template | undefined
    try {
      template = templateFor(target, served, nowMs)
    } catch {
      // e.g. an mtls_pop token without its certificate: the slow path answers the error.
      template = undefined
    }
    if (template === undefined) return next(req, res)
    let body = template.parts[0] as string
    let length = template.partsBytes
    for (let i = 0; i < template.fills.length; i++) {
      const value = (template.fills[i] as (nowMs: number) => string)(nowMs)
      length += value.length
      body += value + (template.parts[i + 1] as string)
    }
    // Header names, values and order as @hono/node-server writes the slow path's answer.
    res.writeHead(200, [
      'cache-control',
      'no-store',
      'content-type',
      'application/json',
      'Content-Length',
      String(length),
    ])
    res.end(body)
    status.served++
    runtime.metrics.countRequest(target.label, 200, (performance.now() - started) / 1000)
    logRequest(runtime, 'GET', target.label, 200, started, undefined)
  }
  return { listener, status }
}

/**
 * Whether the raw header list has a Transfer-Encoding (any) or a Content-Length other than 0: one
 * pass, no header object built (node builds `req.headers` lazily, and the lane never asks for it).
 */
function announcesBody(rawHeaders: readonly string[]): boolean {
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string
    if (name.length === 17 && name.toLowerCase() === 'transfer-encoding') return true
    if (
      name.length === 14 &&
      name.toLowerCase() === 'content-length' &&
      (rawHeaders[i + 1] as string).trim() !== '0'
    )
      return true
  }
  return false
}

/**
 * The target of a request the lane can serve, or undefined: unknown path, a parameter outside the
 * route's set (claims, token_sha256_to_refresh, xms_cc, ...), a repeated or empty one, a value with a
 * character outside `plainDecoded`, or anything the slow path would refuse.
 */
function parseTarget(tokens: TokenService, url: string): Target | undefined {
  const q = url.indexOf('?')
  if (q < 0) return undefined
  const known = routes.get(url.slice(0, q))
  if (!known) return undefined
  const { route, label } = known
  const query = new Map<string, string>()
  for (const pair of url.slice(q + 1).split('&')) {
    const eq = pair.indexOf('=')
    if (eq <= 0) return undefined
    const name = pair.slice(0, eq)
    const raw = pair.slice(eq + 1)
    if (!route.parameters.has(name) || query.has(name) || !plainRaw.test(raw)) return undefined
    let value: string
    try {
      value = decodeURIComponent(raw)
    } catch {
      return undefined
    }
    if (!plainDecoded.test(value)) return undefined
    query.set(name, value)
  }
  const field = (name: string) => query.get(name)
  try {
    // The hono door's steps (`token-route-app.ts`), with the route's default identity: under
    // callers.allow the lane picks the caller's (`admitted`).
    const ask = route.read(field, 'query')
    const identity = route.identity(tokens, ask, () => undefined)
    return { route, label, ask, identity, scope: route.scope(ask, field) }
  } catch {
    // The hono door raises the same error and answers it.
    return undefined
  }
}

/**
 * Serialises the answer once, with a marker in each field that depends on the time; the markers
 * split the JSON into parts, and each request only prints the time-dependent numbers between them.
 */
function makeTemplate(
  target: Target,
  served: ServedToken,
  nowMs: number,
  exposePrivateKey: boolean,
): Template | undefined {
  const body: Record<string, unknown> = {
    ...target.route.answer(served, target.ask, nowMs, exposePrivateKey),
  }
  const holes = target.route.clocked(served)
  for (const name of holes.keys()) {
    // A time-dependent field the answer does not have: nothing to fill (never expected).
    if (!(name in body)) return undefined
    body[name] = marker(name)
  }
  const text = JSON.stringify(body)
  const found: { at: number; length: number; fill: (nowMs: number) => string }[] = []
  for (const [name, fill] of holes) {
    const quoted = JSON.stringify(marker(name))
    const at = text.indexOf(quoted)
    // A marker must appear exactly once (it cannot come from upstream data, but never assume).
    if (at < 0 || text.indexOf(quoted, at + 1) >= 0) return undefined
    found.push({ at, length: quoted.length, fill })
  }
  found.sort((a, b) => a.at - b.at)
  const parts: string[] = []
  let from = 0
  for (const hole of found) {
    parts.push(text.slice(from, hole.at))
    from = hole.at + hole.length
  }
  parts.push(text.slice(from))
  return {
    parts,
    fills: found.map((h) => h.fill),
    partsBytes: parts.reduce((n, p) => n + Buffer.byteLength(p), 0),
  }
}

function marker(name: string): string {
  return `\u0000fast-lane:${name}\u0000`
}
