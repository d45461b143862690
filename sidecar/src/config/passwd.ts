import { readFileSync } from 'node:fs'

/** Where `callers.allow[].user` names are looked up, unless a test or embedder says otherwise. */
export const defaultPasswdFile = '/etc/passwd'

/**
 * User name → uid from a passwd(5) file (`name:password:uid:gid:gecos:home:shell`). Only the file:
 * users that exist only in NSS sources such as LDAP or sssd are not seen; name those by `uid`.
 * The first line for a name wins, as getpwnam(3) does with the files source. Comments and
 * malformed lines are skipped.
 *
 * @throws the read error (ENOENT, EACCES) for the caller to report.
 */
export function readPasswd(path: string): Map<string, number> {
  return parsePasswd(readFileSync(path, 'utf8'))
}

export function parsePasswd(text: string): Map<string, number> {
  const users = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const fields = line.split(':')
    const [name, , uidText] = fields
    if (fields.length < 7 || !name || uidText === undefined || !/^\d+$/.test(uidText)) continue
    if (!users.has(name)) users.set(name, Number(uidText))
  }
  return users
}
