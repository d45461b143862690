import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)

/** The few libc calls the caller lookups make, as koffi binds them. */
export interface Libc {
  socket(domain: number, type: number, protocol: number): number
  send(fd: number, buffer: Buffer, length: number, flags: number): number
  recv(fd: number, buffer: Buffer, length: number, flags: number): number
  close(fd: number): number
  /** `length` is a one-element array: in, the buffer's size; out, what the kernel wrote. */
  getsockopt(fd: number, level: number, name: number, value: Buffer, length: number[]): number
  errno(): number
}

/**
 * Binds libc through koffi (an FFI library shipped with prebuilt binaries, an optional dependency:
 * no compiler anywhere). Throws when koffi or libc cannot be loaded (another platform, koffi not
 * installed); callers turn that into a reason, never a crash.
 */
export function loadLibc(): Libc {
  const koffi = require('koffi') as typeof import('koffi')
  const libc = koffi.load('libc.so.6')
  return {
    socket: libc.func('int socket(int, int, int)') as Libc['socket'],
    send: libc.func('long send(int, const void *, size_t, int)') as Libc['send'],
    recv: libc.func('long recv(int, _Out_ void *, size_t, int)') as Libc['recv'],
    close: libc.func('int close(int)') as Libc['close'],
    getsockopt: libc.func(
      'int getsockopt(int, int, int, _Out_ void *, _Inout_ uint32_t *)',
    ) as Libc['getsockopt'],
    errno: () => koffi.errno(),
  }
}
