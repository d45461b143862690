/**
 * The baseline: a bare node:http server that answers every request with fixed bytes and headers
 * (argument: a JSON file `{body, headers}`), the least any Node.js server can do for the same answer.
 * Plain JavaScript, so the baseline process pays no type stripping.
 */
import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'

const { body, headers } = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8'))
const bytes = Buffer.from(body)
const server = createServer((_req, res) => {
  res.writeHead(200, { ...headers, 'content-length': bytes.length })
  res.end(bytes)
})
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address()
  process.stdout.write(`${JSON.stringify({ msg: 'listening', port })}\n`)
})
