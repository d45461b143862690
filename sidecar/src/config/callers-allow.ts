import { defaultPasswdFile, readPasswd } from './passwd.ts'
import type { ConfigPath, PathIssue } from './path.ts'
import type { RawCallerAllowEntry } from './schema.ts'
import type { CallerAllowEntry } from './types.ts'

export interface CallerAllowContext {
  /** Configured identity names. */
  identities: readonly string[]
  /** passwd(5) file that `user:` names are resolved through. */
  passwdFile?: string | undefined
  platform?: NodeJS.Platform | undefined
}

/**
 * Resolves `callers.allow` (user names to uids) and checks it against the rest of the config.
 * Problems are pushed to `issues`; the result is undefined when there is any.
 */
export function resolveCallerAllow(
  raw: RawCallerAllowEntry[],
  context: CallerAllowContext,
  issues: PathIssue[],
): CallerAllowEntry[] | undefined {
  const before = issues.length
  const base: ConfigPath = ['callers', 'allow']
  const platform = context.platform ?? process.platform
  if (platform !== 'linux') {
    issues.push({
      path: base,
      message: `callers.allow needs Linux: the caller's uid is read from the kernel (socket diagnostics, /proc/net/tcp, SO_PEERCRED), which ${platform} does not offer`,
    })
    return undefined
  }
  const passwdFile = context.passwdFile ?? defaultPasswdFile
  let users: Map<string, number> | undefined
  let passwdProblem: string | undefined
  const uidOf = (name: string): number | string => {
    if (users === undefined && passwdProblem === undefined) {
      try {
        users = readPasswd(passwdFile)
      } catch (error) {
        passwdProblem = `cannot read ${passwdFile} (${(error as NodeJS.ErrnoException).code ?? String(error)}) to resolve user names; use uid instead`
      }
    }
    if (users === undefined) return passwdProblem ?? `cannot read ${passwdFile}`
    return (
      users.get(name) ??
      `no user "${name}" in ${passwdFile} (users known only to LDAP/sssd are not looked up; use uid: <number>)`
    )
  }

  const firstEntryOfUid = new Map<number, number>()
  const entries: CallerAllowEntry[] = []
  raw.forEach((entry, index) => {
    const path = [...base, index]
    let uid: number | undefined
    if (entry.uid !== undefined && entry.user !== undefined) {
      issues.push({
        path: [...path, 'user'],
        message:
          'set either uid or user, not both: each names the caller on its own, so the two could disagree',
      })
    } else if (entry.uid === undefined && entry.user === undefined) {
      issues.push({ path, message: 'name the caller with uid: <number> or user: <name>' })
    } else if (entry.user !== undefined) {
      const resolved = uidOf(entry.user)
      if (typeof resolved === 'string') issues.push({ path: [...path, 'user'], message: resolved })
      else uid = resolved
    } else {
      uid = entry.uid
    }

    const seen = new Set<string>()
    entry.identities.forEach((name, position) => {
      const at = [...path, 'identities', position]
      if (!context.identities.includes(name)) {
        issues.push({
          path: at,
          message: `no identity is named "${name}" (configured: ${context.identities.join(', ')})`,
        })
      } else if (seen.has(name)) {
        issues.push({ path: at, message: `"${name}" is listed twice in this entry` })
      }
      seen.add(name)
    })

    if (uid === undefined) return
    const first = firstEntryOfUid.get(uid)
    if (first !== undefined) {
      issues.push({
        path: [...path, entry.user === undefined ? 'uid' : 'user'],
        message: `uid ${uid} already has an entry (callers.allow[${first}]); list all its identities there (the first is the one the IMDS and App Service routes serve it)`,
      })
      return
    }
    firstEntryOfUid.set(uid, index)
    entries.push({
      uid,
      ...(entry.user === undefined ? {} : { user: entry.user }),
      identities: entry.identities,
    })
  })
  return issues.length > before ? undefined : entries
}
