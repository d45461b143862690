/**
 * Load generator, run in its own process so it competes with the server under test only for CPU,
 * never for the server's event loop. Plain `net` sockets and a minimal HTTP/1.1 response parser:
 * a few microseconds per request, far less than any HTTP client library, so on a 2-core machine the
 * server gets most of a core. The same generator drives the baseline and the daemon.
 *
 * Modes (argument: JSON):
 * - `closed`: `connections` keep-alive connections, each sends the next request when the previous
 *   answer is complete, for `durationMs` after `warmupMs`; reports throughput and latency percentiles.
 * - `storm`: `connections` connections opened at once, one request each; reports every latency.
 * - `churn`: `total` requests, each on a new connection closed by the client once answered,
 *   `connections` at a time (connection churn: what a fleet of short-lived callers costs).
 */
import { connect, type Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import { percentile } from './stats.ts'

export interface LoadRequest {
  mode: 'closed' | 'storm' | 'churn'
  port: number
  path: string
  headers: Record<string, string>
  connections: number
  durationMs?: number
  warmupMs?: number
  /** `churn`: how many connections (one request each) in all. */
  total?: number
}

export interface ChurnResult {
  answered: number
  non200: number
  errors: number
  seconds: number
  /** New connections (one request each) per second. */
  rate: number
}

export interface ClosedResult {
  requests: number
  seconds: number
  rps: number
  p50Ms: number
  p99Ms: number
  non200: number
  errors: number
}

export interface StormResult {
  answered: number
  non200: number
  errors: number
  p50Ms: number
  maxMs: number
  over1s: number
}

const headerEnd = Buffer.from('\r\n\r\n')
const chunkedEnd = Buffer.from('\r\n0\r\n\r\n')

/** Splits complete responses off a connection's byte stream. */
class ResponseReader {
  #buffer: Buffer = Buffer.alloc(0)

  /** Feeds bytes; returns the status of each response completed by them. */
  push(chunk: Buffer): number[] {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk])
    const done: number[] = []
    for (;;) {
      const end = this.#buffer.indexOf(headerEnd)
      if (end < 0) return done
      const head = this.#buffer.subarray(0, end).toString('latin1')
      const status = Number(head.slice(9, 12))
      const length = /\r\ncontent-length:\s*(\d+)/i.exec(head)
      let total: number
      if (length) {
        total = end + 4 + Number(length[1])
        if (this.#buffer.length < total) return done
      } else if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) {
        const last = this.#buffer.indexOf(chunkedEnd, end + 2)
        if (last < 0) return done
        total = last + chunkedEnd.length
      } else {
        total = end + 4
      }
      done.push(status)
      this.#buffer = this.#buffer.subarray(total)
    }
  }
}

function requestBytes(request: LoadRequest): Buffer {
  const lines = [`GET ${request.path} HTTP/1.1`, `Host: 127.0.0.1:${request.port}`]
  for (const [name, value] of Object.entries(request.headers)) lines.push(`${name}: ${value}`)
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1')
}

async function closed(request: LoadRequest): Promise<ClosedResult> {
  const bytes = requestBytes(request)
  const warmupMs = request.warmupMs ?? 500
  const durationMs = request.durationMs ?? 3000
  const latencies: number[] = []
  let measuring = false
  let stopping = false
  let requests = 0
  let non200 = 0
  let errors = 0
  const sockets: Socket[] = []
  for (let i = 0; i < request.connections; i++) {
    const reader = new ResponseReader()
    const socket = connect({ port: request.port, host: '127.0.0.1', noDelay: true })
    let sentAt = 0
    const send = () => {
      if (stopping) return
      sentAt = performance.now()
      socket.write(bytes)
    }
    socket.on('connect', send)
    socket.on('data', (chunk: Buffer) => {
      for (const status of reader.push(chunk)) {
        if (measuring) {
          latencies.push(performance.now() - sentAt)
          requests++
          if (status !== 200) non200++
        }
        send()
      }
    })
    socket.on('error', () => errors++)
    sockets.push(socket)
  }
  await new Promise((resolve) => setTimeout(resolve, warmupMs))
  measuring = true
  const started = performance.now()
  await new Promise((resolve) => setTimeout(resolve, durationMs))
  measuring = false
  const seconds = (performance.now() - started) / 1000
  stopping = true
  for (const socket of sockets) socket.destroy()
  return {
    requests,
    seconds,
    rps: requests / seconds,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    non200,
    errors,
  }
}

async function storm(request: LoadRequest): Promise<StormResult> {
  const bytes = requestBytes(request)
  const latencies: number[] = []
  let non200 = 0
  let errors = 0
  const started = performance.now()
  await Promise.all(
    Array.from(
      { length: request.connections },
      () =>
        new Promise<void>((resolve) => {
          const reader = new ResponseReader()
          const socket = connect({ port: request.port, host: '127.0.0.1', noDelay: true })
          socket.on('connect', () => socket.write(bytes))
          socket.on('data', (chunk: Buffer) => {
            const statuses = reader.push(chunk)
            if (statuses.length === 0) return
            latencies.push(performance.now() - started)
            if (statuses[0] !== 200) non200++
            socket.destroy()
            resolve()
          })
          socket.on('error', () => {
            errors++
            resolve()
          })
          socket.on('close', () => resolve())
        }),
    ),
  )
  return {
    answered: latencies.length,
    non200,
    errors,
    p50Ms: percentile(latencies, 50),
    maxMs: latencies.length ? Math.max(...latencies) : Number.NaN,
    over1s: latencies.filter((ms) => ms > 1000).length,
  }
}

async function churn(request: LoadRequest): Promise<ChurnResult> {
  const bytes = requestBytes(request)
  const total = request.total ?? 10_000
  let started = 0
  let answered = 0
  let non200 = 0
  let errors = 0
  const begin = performance.now()
  const once = () =>
    new Promise<void>((resolve) => {
      const reader = new ResponseReader()
      const socket = connect({ port: request.port, host: '127.0.0.1', noDelay: true })
      socket.on('connect', () => socket.write(bytes))
      socket.on('data', (chunk: Buffer) => {
        const statuses = reader.push(chunk)
        if (statuses.length === 0) return
        answered++
        if (statuses[0] !== 200) non200++
        socket.destroy()
        resolve()
      })
      socket.on('error', () => {
        errors++
        resolve()
      })
      socket.on('close', () => resolve())
    })
  await Promise.all(
    Array.from({ length: request.connections }, async () => {
      while (started < total) {
        started++
        await once()
      }
    }),
  )
  const seconds = (performance.now() - begin) / 1000
  return { answered, non200, errors, seconds, rate: answered / seconds }
}

process.once('message', (request: LoadRequest) => {
  const work =
    request.mode === 'storm' ? storm(request) : request.mode === 'churn' ? churn(request) : closed(request)
  void work.then((result) => process.send?.(result, () => process.exit(0)))
})
