import { request as httpsRequest, Agent } from 'node:https'
import { mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { X509Certificate } from 'node:crypto'
import type { TestContext } from 'node:test'
import { CertificateAuthority } from '../../sidecar/src/emulator/pki/certificate-authority.ts'
import { createLogger } from '../../sidecar/src/core/log.ts'
import { WebhookServer } from '../../sidecar/src/cli/webhook/server.ts'
import type { InjectOptions } from '../../sidecar/src/cli/inject/options.ts'

/** The name kube-apiserver dials and checks: the Service's DNS name (deploy/kubernetes/webhook/). */
export const serviceName = 'credential-sidecar-webhook.credential-sidecar-system.svc'

export const reviewFixture = JSON.parse(
  readFileSync(join(import.meta.dirname, 'fixtures/admission-review-pod-create.json'), 'utf8'),
) as Record<string, any>

/** A fresh copy of the fixture review, with `change` applied to it. */
export function admissionReview(
  change: (review: Record<string, any>) => void = () => {},
): Record<string, any> {
  const review = structuredClone(reviewFixture)
  change(review)
  return review
}

/** A test CA, and server certificates it issues for the Service name (and 127.0.0.1). */
export class TestPki {
  readonly ca: CertificateAuthority
  readonly dir = mkdtempSync(join(tmpdir(), 'webhook-tls-'))
  readonly certFile = join(this.dir, 'tls.crt')
  readonly keyFile = join(this.dir, 'tls.key')

  private constructor(ca: CertificateAuthority) {
    this.ca = ca
  }

  static async create(): Promise<TestPki> {
    return new TestPki(await CertificateAuthority.create({ commonName: 'webhook test CA' }))
  }

  async issue(): Promise<{ cert: string; key: string; serial: string }> {
    const issued = await this.ca.issueWithNewKey({
      subject: [{ shortName: 'CN', value: serviceName }],
      serverNames: [serviceName, '127.0.0.1'],
      validityMs: 24 * 3600_000,
      usage: 'server',
    })
    return {
      cert: issued.certificatePem,
      key: issued.privateKeyPem,
      serial: new X509Certificate(issued.certificatePem).serialNumber,
    }
  }

  /** Writes a file the way the kubelet updates a Secret volume: a new file renamed over the old. */
  replace(file: string, text: string): void {
    const next = `${file}.${Date.now()}.tmp`
    writeFileSync(next, text, { mode: 0o600 })
    renameSync(next, file)
  }
}

export interface Running {
  server: WebhookServer
  logs: Record<string, any>[]
}

export async function startWebhook(
  t: TestContext,
  pki: TestPki,
  defaults: InjectOptions,
  extra: { requestTimeoutMs?: number; maxBodyBytes?: number } = {},
): Promise<Running> {
  const logs: Record<string, any>[] = []
  const logger = createLogger({
    level: 'info',
    destination: { write: (line: string) => void logs.push(JSON.parse(line)) },
  })
  const server = await WebhookServer.start({
    host: '127.0.0.1',
    port: 0,
    tlsCert: pki.certFile,
    tlsKey: pki.keyFile,
    defaults,
    logger,
    reloadIntervalMs: 50,
    ...extra,
  })
  t.after(() => server.close({ graceMs: 1000 }))
  return { server, logs }
}

export interface Answer {
  status: number
  body: any
  /** The serial number of the certificate the server presented in this handshake. */
  serial: string
}

/**
 * One HTTPS request as kube-apiserver makes it: TLS to the Service name (SNI and verification
 * against the CA bundle of the webhook configuration), JSON body. A fresh connection each time
 * unless an agent is given.
 */
export function call(
  url: string,
  ca: string,
  options: {
    method?: string
    path?: string
    body?: unknown
    raw?: string | Buffer
    agent?: Agent
    /** Send the body in chunks (Transfer-Encoding: chunked), with no Content-Length. */
    chunked?: boolean
  } = {},
): Promise<Answer> {
  const target = new URL(options.path ?? '/mutate', url)
  const raw = typeof options.raw === 'string' ? Buffer.from(options.raw) : options.raw
  const payload = raw ?? (options.body === undefined ? undefined : Buffer.from(JSON.stringify(options.body)))
  return new Promise((resolve, reject) => {
    const request = httpsRequest(
      target,
      {
        method: options.method ?? 'POST',
        ca,
        servername: serviceName,
        agent: options.agent ?? false,
        headers:
          payload === undefined ? {} : { 'content-type': 'application/json', accept: 'application/json' },
        timeout: 10_000,
      },
      (response) => {
        const serial =
          (response.socket as import('node:tls').TLSSocket).getPeerX509Certificate()?.serialNumber ?? ''
        const chunks: Buffer[] = []
        response.on('data', (chunk: Buffer) => chunks.push(chunk))
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          let body: unknown = text
          try {
            body = JSON.parse(text)
          } catch {}
          resolve({ status: response.statusCode ?? 0, body, serial })
        })
        response.on('error', reject)
      },
    )
    request.on('error', reject)
    request.on('timeout', () => request.destroy(new Error('timed out')))
    if (options.chunked && payload !== undefined) {
      const half = Math.floor(payload.length / 2)
      request.write(payload.subarray(0, half))
      request.end(payload.subarray(half))
    } else request.end(payload)
  })
}

/** The JSONPatch of an answer, decoded. */
export function patchOf(answer: Answer): any[] | undefined {
  const patch = answer.body?.response?.patch
  return patch === undefined ? undefined : JSON.parse(Buffer.from(patch, 'base64').toString('utf8'))
}
