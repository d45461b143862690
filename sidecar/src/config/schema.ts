import { z } from 'zod'
import { urlProblem, type UrlRules } from './urls.ts'

/**
 * The shape of the YAML file, before defaults and cross-field rules (those live in resolve.ts).
 * Every object is strict: an unknown key is almost always a typo that would otherwise be ignored.
 */

export const logLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export const protocolSchemes = ['Bearer', 'MTLS_POP'] as const
export const userAssignedSelectors = [
  'userAssignedClientId',
  'userAssignedObjectId',
  'userAssignedResourceId',
] as const
/** Tenant aliases that name no tenant: mTLS and bound credentials need a tenanted authority. */
export const tenantAliases = ['common', 'organizations', 'consumers'] as const

function strict<Shape extends z.ZodRawShape>(shape: Shape) {
  const allowed = Object.keys(shape).join(', ')
  return z.strictObject(shape, {
    error: (issue) =>
      issue.code === 'unrecognized_keys' ? `unknown key (allowed here: ${allowed})` : undefined,
  })
}

/** A section written with nothing under it (`listen:`, everything commented out) counts as absent. */
function section<Schema extends z.ZodType>(schema: Schema) {
  return z.preprocess((value) => (value === null ? undefined : value), schema.optional())
}

const text = z.string().min(1)
const flag = z.boolean()
const positiveInteger = z.number().int().positive()
/** A delay the daemon waits with one timer: at most what `setTimeout` holds (2^31-1 ms, 24.8 days). */
const delayMs = positiveInteger.max(2 ** 31 - 1)

function url(rules: UrlRules = {}) {
  return text.superRefine((value, ctx) => {
    const problem = urlProblem(value, rules)
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem })
  })
}

/** A GUID, any case (client, tenant and object ids). */
export const guid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const domain = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/i

const tenantId = text.superRefine((value, ctx) => {
  if ((tenantAliases as readonly string[]).includes(value.toLowerCase())) {
    ctx.addIssue({
      code: 'custom',
      message: `"${value}" is not a tenant: mTLS and bound credentials need a tenanted authority; use the tenant's GUID or domain (contoso.onmicrosoft.com)`,
    })
  } else if (!guid.test(value) && !domain.test(value)) {
    ctx.addIssue({
      code: 'custom',
      message: 'expected a tenant GUID or domain name (contoso.onmicrosoft.com)',
    })
  }
})

const base64 = text.superRefine((value, ctx) => {
  if (!/^[A-Za-z0-9+/\s]+={0,2}\s*$/.test(value))
    ctx.addIssue({ code: 'custom', message: 'expected base64 text' })
})

const port = z.number().int().min(0).max(65535)

/** The ops listener serves only /healthz, /readyz and /metrics, so it may face the pod network. */
const opsListenSchema = strict({ host: text.optional(), port: port.optional() })

const listenSchema = strict({
  host: text.optional(),
  port: port.optional(),
  socket: text.optional(),
  allowNonLoopback: flag.optional(),
  backlog: positiveInteger.optional(),
  ops: section(opsListenSchema),
})

/** A Linux uid; 4294967295 is (uid_t)-1, "no user", which no process runs as. */
const uid = z.number().int().min(0).max(4294967294)

const callerAllowEntrySchema = strict({
  uid: uid.optional(),
  user: text.optional(),
  identities: z.array(text).min(1, { error: 'list at least one identity' }),
})

const callersSchema = strict({
  requireMetadataHeader: flag.optional(),
  secretFile: text.optional(),
  exposePrivateKey: flag.optional(),
  allow: z
    .array(callerAllowEntrySchema)
    .min(1, { error: 'list at least one entry, or remove callers.allow to let every local caller in' })
    .optional(),
})

const upstreamSchema = strict({
  imdsEndpoint: url().optional(),
  authorityHost: url({ originOnly: true }).optional(),
  caFile: text.optional(),
  timeoutMs: delayMs.optional(),
  requestDeadlineMs: delayMs.optional(),
})

const cacheSchema = strict({ maxTokens: positiveInteger.optional() })
const logSchema = strict({ level: z.enum(logLevels).optional() })

const managedIdentitySelectorSchema = z.preprocess(
  // `managedIdentity:` with nothing after it reads as "system-assigned", like `managedIdentity: {}`.
  (value) => (value === null ? {} : value),
  strict({
    userAssignedClientId: text.optional(),
    userAssignedObjectId: text.optional(),
    userAssignedResourceId: text.optional(),
  }),
)

const identityCommon = {
  protocolScheme: z.enum(protocolSchemes).optional(),
  warm: flag.optional(),
  warmResource: text.optional(),
  allowBearerFallback: flag.optional(),
  clientCapabilities: z
    .array(z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, { error: 'expected a capability name such as cp1' }))
    .optional(),
}

export const managedIdentitySchema = strict({
  managedIdentity: managedIdentitySelectorSchema,
  useBoundCredential: flag.optional(),
  bindingStore: text.optional(),
  ...identityCommon,
})

// useBoundCredential is accepted by the shape of the unbindable sources only so that resolve.ts can
// explain why it is wrong there, instead of a bare "unknown key".
const credentialSchema = z.discriminatedUnion('sourceType', [
  strict({
    sourceType: z.literal('Path'),
    certificateDiskPath: text,
    certificatePassword: z.string().optional(),
    useBoundCredential: flag.optional(),
  }),
  strict({
    sourceType: z.literal('Base64Encoded'),
    base64EncodedValue: base64,
    certificatePassword: z.string().optional(),
    useBoundCredential: flag.optional(),
  }),
  strict({
    sourceType: z.literal('SignedAssertionFromManagedIdentity'),
    managedIdentityClientId: text.optional(),
    tokenExchangeUrl: text.optional(),
    useBoundCredential: flag.optional(),
  }),
  strict({
    sourceType: z.literal('SignedAssertionFilePath'),
    signedAssertionFileDiskPath: text,
    useBoundCredential: flag.optional(),
  }),
  strict({ sourceType: z.literal('ClientSecret'), clientSecret: text, useBoundCredential: flag.optional() }),
])

export const confidentialClientSchema = strict({
  tenantId,
  clientId: text,
  /** Microsoft.Identity.Web's name for the authority host (`https://login.microsoftonline.com/`). */
  instance: url({ originOnly: true }).optional(),
  authorityHost: url({ originOnly: true }).optional(),
  azureRegion: z
    .string()
    .regex(/^[A-Za-z0-9-]+$/, { error: 'expected an Azure region name such as westus3' })
    .optional(),
  sendX5C: flag.optional(),
  clientCredentials: z.array(credentialSchema).min(1, { error: 'list at least one credential' }),
  ...identityCommon,
})

/** Keys that make an identity a confidential client; `managedIdentity` makes it a managed identity. */
export const confidentialClientMarkers = ['tenantId', 'clientId', 'clientCredentials'] as const

const downstreamApiSchema = strict({
  baseUrl: url({ httpsUnlessLoopback: true }),
  identity: text.optional(),
  scopes: z.array(text).min(1, { error: 'list at least one scope' }),
})

export const fileSchema = strict({
  listen: section(listenSchema),
  callers: section(callersSchema),
  upstream: section(upstreamSchema),
  cache: section(cacheSchema),
  log: section(logSchema),
  shutdownGraceMs: delayMs.optional(),
  defaultIdentity: text.optional(),
  // Identities are checked one by one in validate.ts: which schema applies depends on which keys are present.
  identities: section(z.record(z.string(), z.unknown())),
  downstreamApis: section(z.record(z.string(), downstreamApiSchema)),
  compat: section(strict({ agentIdSidecar: flag.optional() })),
})

export type RawFile = z.output<typeof fileSchema>
export type RawManagedIdentity = z.output<typeof managedIdentitySchema>
export type RawConfidentialClient = z.output<typeof confidentialClientSchema>
export type RawCredential = RawConfidentialClient['clientCredentials'][number]
export type RawCallerAllowEntry = z.output<typeof callerAllowEntrySchema>
export type RawDownstreamApi = z.output<typeof downstreamApiSchema>
