/**
 * A requested audience in both spellings, made once from the caller's `resource=` or `scope=`
 * (`tokens/scope.ts` normaliseScope) and carried together down to the source: IMDS v1 takes the
 * `resource`, Entra the `scope`; nothing converts one back into the other on the way.
 */
export interface Scope {
  /** Without `/.default`; a trailing `/` is kept (IMDS v1 puts it in the token's `aud`). */
  readonly resource: string
  /** `<resource>/.default` (`https://x//.default` for `https://x/`): the cache key part. */
  readonly scope: string
}
