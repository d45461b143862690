import type { CallerAllowEntry } from '../../config/types.ts'

/** Why `callers.allow` refused a caller; `uid` and `identity` label the refusal metric. */
export interface CallerRefusal {
  allowed: false
  reason: 'caller_unknown' | 'caller_not_allowed'
  uid: number | undefined
  /** The identity asked for; undefined when the refusal does not depend on it. */
  identity: string | undefined
  /** For the caller and the operator: what to change. Names uids and identities, nothing secret. */
  message: string
}

export type CallerDecision = { allowed: true; uid: number } | CallerRefusal

/**
 * `callers.allow` as a pure function: may the local user `uid` (undefined when the kernel could
 * not tell who opened the connection) use `identity` (undefined: any of its identities)? Built once
 * from the config; cheap enough for every request (one Map lookup and a short list scan).
 */
export type CallerPolicy = (uid: number | undefined, identity: string | undefined) => CallerDecision

export function callerPolicy(entries: readonly CallerAllowEntry[]): CallerPolicy {
  const byUid = new Map(entries.map((entry) => [entry.uid, entry]))
  return (uid, identity) => {
    if (uid === undefined) {
      return {
        allowed: false,
        reason: 'caller_unknown',
        uid,
        identity,
        message:
          'callers.allow is set and the sidecar could not tell which local user opened this connection, so it is refused; connect over TCP loopback from this host or pod',
      }
    }
    const entry = byUid.get(uid)
    if (entry === undefined) {
      return {
        allowed: false,
        reason: 'caller_not_allowed',
        uid,
        identity,
        message: `uid ${uid} is not listed in callers.allow; the sidecar operator can add an entry for it`,
      }
    }
    if (identity !== undefined && !entry.identities.includes(identity)) {
      return {
        allowed: false,
        reason: 'caller_not_allowed',
        uid,
        identity,
        message: `uid ${uid} may not use identity "${identity}"; callers.allow lets it use ${entry.identities.map((name) => `"${name}"`).join(', ')} (ask with identity=${entry.identities[0]})`,
      }
    }
    return { allowed: true, uid }
  }
}

/** The identity the IMDS and App Service routes serve `uid` when the request names none. */
export function firstAllowedIdentity(
  entries: readonly CallerAllowEntry[],
  uid: number | undefined,
): string | undefined {
  return entries.find((entry) => entry.uid === uid)?.identities[0]
}
