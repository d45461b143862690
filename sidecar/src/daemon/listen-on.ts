import type { Server } from 'node:http'
import type { ListenOptions } from 'node:net'

/** `server.listen(options)` as a promise: resolves once listening, rejects with the listen error. */
export function listenOn(server: Server, options: ListenOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(options, () => {
      server.off('error', reject)
      resolve()
    })
  })
}
