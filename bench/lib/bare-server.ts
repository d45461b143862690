/**
 * The baseline: a bare node:http server that answers every request with fixed bytes and headers
 * (argument: a JSON file `{body, headers}`), the least any Node.js server can do for the same answer.
 */
import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'

const { body, headers } = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as {
  body: string
  headers: Record<string, string>
}
const bytes = Buffer.from(body)
const server = createServer((_req, res) => {
  res.writeHead(200, { ...headers, 'content-length': bytes.length })
  res.end(bytes)
})
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo
  process.stdout.write(`${JSON.stringify({ msg: 'listening', port })}\n`)
})
