import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Agent as HttpsAgent } from 'node:https'
import type { TestContext } from 'node:test'
import type { TokenCredential } from '@azure/core-auth'
import {
  bearerTokenAuthenticationPolicy,
  bearerTokenAuthenticationPolicyName,
  createDefaultHttpClient,
  createEmptyPipeline,
  createPipelineRequest,
  type PipelineResponse,
} from '@azure/core-rest-pipeline'
import type { Stack } from '../support/stack.ts'

/** How many requests the daemon served on /token, any status (from its Prometheus metrics). */
export async function tokenRouteRequests(stack: Stack): Promise<number> {
  const text = await (await fetch(`${stack.url}/metrics`)).text()
  let total = 0
  for (const match of text.matchAll(
    /^credential_sidecar_requests_total\{route="\/token",status="\d+"\} (\d+)$/gm,
  ))
    total += Number(match[1])
  return total
}

/** A plain HTTP server on 127.0.0.1:0, closed after the test. */
export async function startHttpServer(
  t: TestContext,
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ server: Server; url: string }> {
  const server = createServer(handler)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  // One hook (node:test runs after-hooks first-registered first): close() alone would wait for
  // connections a test left open on purpose.
  t.after(() => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()))
    server.closeAllConnections()
    return closed
  })
  const { port } = server.address() as AddressInfo
  return { server, url: `http://127.0.0.1:${port}` }
}

/** A /token answer shaped as the daemon's, for tests of the SDK's own logic against a fake sidecar. */
export function tokenJson(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000)
  return {
    token_type: 'Bearer',
    access_token: 'fake-access-token',
    expires_on: now + 3600,
    expires_in: 3600,
    refresh_on: now + 1800,
    resource: 'https://management.azure.com',
    scope: 'https://management.azure.com/.default',
    identity: 'mi',
    ...overrides,
  }
}

/**
 * A real Azure SDK pipeline (bearerTokenAuthenticationPolicy over `credential`) to the emulator's
 * demo resource. `sent` records every Authorization header the pipeline put on the wire, in order;
 * `call()` sends one GET /api/whoami (trusting the emulator's CA).
 */
export function demoResourcePipeline(
  t: TestContext,
  stack: Stack,
  credential: TokenCredential,
  scopes: string,
): { sent: string[]; call: () => Promise<PipelineResponse> } {
  const sent: string[] = []
  const pipeline = createEmptyPipeline()
  pipeline.addPolicy(bearerTokenAuthenticationPolicy({ credential, scopes }))
  pipeline.addPolicy(
    {
      name: 'record-authorization',
      sendRequest: (request, next) => {
        sent.push(request.headers.get('authorization') ?? '')
        return next(request)
      },
    },
    { afterPolicies: [bearerTokenAuthenticationPolicyName] },
  )
  const agent = new HttpsAgent({ ca: stack.emulator.caPem })
  t.after(() => agent.destroy())
  const httpClient = createDefaultHttpClient()
  const call = () => {
    const request = createPipelineRequest({ url: `${stack.emulator.resourceUrl}/api/whoami` })
    request.agent = agent
    return pipeline.sendRequest(httpClient, request)
  }
  return { sent, call }
}
