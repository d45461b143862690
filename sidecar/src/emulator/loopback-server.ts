import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'

/** Listens on 127.0.0.1 at a free port; resolves with the base URL (`http` or `https`). */
export async function listenOnLoopback(server: Server, scheme: 'http' | 'https' = 'https'): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  })
  return `${scheme}://127.0.0.1:${(server.address() as AddressInfo).port}`
}

/** Closes the server, cutting keep-alive connections so tests do not wait for them. */
export async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => resolve()))
}
