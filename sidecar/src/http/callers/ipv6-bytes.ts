/** The 16 bytes of an IPv6 address (`::` expanded, a trailing dotted quad accepted). */
export function ipv6Bytes(address: string): Buffer {
  let text = address.replace(/%.*$/, '')
  const quad = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  if (quad?.[1] !== undefined) {
    const [a, b, c, d] = quad[1].split('.').map(Number) as [number, number, number, number]
    text = `${text.slice(0, quad.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const [head = '', tail] = text.split('::')
  const headGroups = head === '' ? [] : head.split(':')
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':')
  const zeros = tail === undefined ? 0 : 8 - headGroups.length - tailGroups.length
  const groups = [...headGroups, ...Array<string>(zeros).fill('0'), ...tailGroups]
  const bytes = Buffer.alloc(16)
  groups.forEach((group, index) => bytes.writeUInt16BE(Number.parseInt(group, 16) & 0xffff, index * 2))
  return bytes
}
