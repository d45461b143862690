import type { IncomingMessage, ServerResponse } from 'node:http'
import { createServer } from 'node:https'
import type { TLSSocket } from 'node:tls'
import type { JWTPayload } from 'jose'
import { x5tS256 } from '../pki/x509.ts'
import { issueLoopbackServerCertificate } from './entra.ts'
import { closeServer, listenOnLoopback } from './loopback-server.ts'
import { sendJson } from './entra-responses.ts'
import type { EmulatorState } from './state.ts'

/** The audience (resource) of the demo resource: ask for `api://credential-sidecar-demo/.default`. */
export const demoResourceAudience = 'api://credential-sidecar-demo'

export interface DemoResource {
  url: string
  close(): Promise<void>
}

/**
 * A resource server that accepts Bearer and mTLS PoP tokens from the emulated Entra (RFC 8705):
 * `Authorization: mtls_pop <jwt>` is accepted only over a TLS connection whose client certificate's
 * x5t#S256 equals the token's `cnf`; a token with `cnf` sent as Bearer is refused. Any path
 * answers `{ok, scheme, sub, appid, cnf?}`; `/api/whoami` is the documented one.
 */
export async function startDemoResource(state: EmulatorState): Promise<DemoResource> {
  const { cert, key } = await issueLoopbackServerCertificate(state, 'resource-tls')
  const server = createServer(
    {
      cert,
      key,
      // A bound token is checked against the certificate's thumbprint only (RFC 8705 §3), so any
      // certificate is let through the handshake; unauthenticated requests are refused below.
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
      maxVersion: 'TLSv1.3',
    },
    (req, res) => void handle(state, req, res),
  )
  const url = await listenOnLoopback(server)
  return { url, close: () => closeServer(server) }
}

class Unauthorized extends Error {
  readonly challenge: string

  constructor(scheme: 'Bearer' | 'mtls_pop', description: string) {
    super(description)
    this.challenge = `${scheme} error="invalid_token", error_description="${description.replace(/"/g, "'")}"`
  }
}

async function handle(state: EmulatorState, req: IncomingMessage, res: ServerResponse): Promise<void> {
  state.calls.record('resource')
  const fault = state.faults.take('resource')
  if (fault) {
    sendJson(res, fault.status, fault.body ?? { error: 'scripted_fault' }, fault.headers ?? {})
    return
  }
  try {
    const authorization = req.headers.authorization
    const match = authorization ? /^(\S+)\s+(\S+)$/.exec(authorization) : null
    if (!match) {
      sendJson(
        res,
        401,
        { error: 'invalid_request', error_description: 'Authorization: Bearer or mtls_pop token required' },
        { 'www-authenticate': 'Bearer, mtls_pop' },
      )
      return
    }
    const scheme = (match[1] ?? '').toLowerCase()
    const token = match[2] ?? ''
    if (scheme === 'bearer') {
      const claims = await verify(state, token, 'Bearer')
      if (claims['cnf'] !== undefined) {
        // A PoP token presented as Bearer would let whoever stole it use it without the key.
        throw new Unauthorized('Bearer', 'token is bound to a certificate (cnf); present it as mtls_pop')
      }
      sendJson(res, 200, { ok: true, scheme: 'Bearer', sub: claims.sub, appid: claims['appid'] })
      return
    }
    if (scheme === 'mtls_pop') {
      const claims = await verify(state, token, 'mtls_pop')
      const expected = (claims['cnf'] as { 'x5t#S256'?: unknown } | undefined)?.['x5t#S256']
      if (typeof expected !== 'string') throw new Unauthorized('mtls_pop', 'token has no cnf x5t#S256 claim')
      const peer = (req.socket as TLSSocket).getPeerCertificate(true)
      if (!peer || !peer.raw) throw new Unauthorized('mtls_pop', 'no client certificate was presented')
      if (x5tS256(peer.raw) !== expected) {
        throw new Unauthorized('mtls_pop', 'the client certificate does not match the token cnf')
      }
      sendJson(res, 200, {
        ok: true,
        scheme: 'mtls_pop',
        sub: claims.sub,
        appid: claims['appid'],
        cnf: claims['cnf'],
      })
      return
    }
    sendJson(
      res,
      401,
      { error: 'invalid_request', error_description: `unsupported authorization scheme` },
      { 'www-authenticate': 'Bearer, mtls_pop' },
    )
  } catch (error) {
    if (error instanceof Unauthorized) {
      sendJson(
        res,
        401,
        { error: 'invalid_token', error_description: error.message },
        { 'www-authenticate': error.challenge },
      )
      return
    }
    sendJson(res, 500, { error: 'server_error' })
  }
}

async function verify(
  state: EmulatorState,
  token: string,
  scheme: 'Bearer' | 'mtls_pop',
): Promise<JWTPayload> {
  try {
    return await state.tokens.verify(token, { audience: demoResourceAudience })
  } catch (error) {
    const code = (error as { code?: unknown }).code
    throw new Unauthorized(scheme, `token rejected (${typeof code === 'string' ? code : 'invalid'})`)
  }
}
