/**
 * Validation of a Kubernetes object against the API's own schema: the ajv validators that the
 * `kubernetes-models` package compiles from the Kubernetes OpenAPI document (types, enums,
 * required fields, int-or-string, quantities), made strict as `kubectl apply` (server-side field
 * validation "Strict") is: a field the schema does not name is an error too. The OpenAPI schemas
 * do not say `additionalProperties: false`, so strictness comes from watching which fields the
 * compiled validator reads: it reads every property its schema declares (and every entry of a
 * map), so a field it never reads is one the API does not know.
 */

type CompiledValidator = ((data: unknown) => boolean) & {
  errors?: { instancePath: string; message?: string; keyword: string; params: unknown }[] | null
}

/**
 * The schema module for apiVersion/kind: IoK8sApi{Group}{Version}{Kind}, as kubernetes-models names
 * them, or cert-manager's from @kubernetes-models/cert-manager (compiled from its CRDs).
 */
function schemaModule(apiVersion: string, kind: string): string {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['core', apiVersion]
  const capital = (s: string) => s.charAt(0).toUpperCase() + s.slice(1)
  // The package exports its models, not its _schemas/ folder: the file is imported by its path.
  if (group === 'cert-manager.io')
    return new URL(
      `./_schemas/ComGithubCertManagerCertManagerPkgApisCertmanager${capital(version!)}${kind}.js`,
      import.meta.resolve('@kubernetes-models/cert-manager'),
    ).href
  const groupName = group!.split('.')[0]!
  return `kubernetes-models/_schemas/IoK8sApi${capital(groupName)}${capital(version!)}${kind}`
}

/** The problems in one object: schema errors, then unknown fields; empty when it validates. */
export async function apiSchemaProblems(object: unknown): Promise<string[]> {
  if (!object || typeof object !== 'object') return ['not an object']
  const { apiVersion, kind } = object as { apiVersion?: unknown; kind?: unknown }
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') return ['no apiVersion/kind']
  let validate: CompiledValidator
  try {
    ;({ validate } = (await import(schemaModule(apiVersion, kind))) as {
      validate: CompiledValidator
    })
  } catch {
    return [`no schema for ${apiVersion} ${kind}`]
  }
  const read = new WeakMap<object, Set<PropertyKey>>()
  const valid = validate(watched(object, read))
  const problems = valid
    ? []
    : (validate.errors ?? []).map(
        (e) => `${e.instancePath || '/'}: ${e.message ?? e.keyword} ${JSON.stringify(e.params)}`,
      )
  return [...problems, ...unreadFields(object, read, '')]
}

/** A view of `value` that records, per object, which properties were read through it. */
function watched(value: unknown, read: WeakMap<object, Set<PropertyKey>>): unknown {
  if (!value || typeof value !== 'object') return value
  const target = value as object
  if (!read.has(target)) read.set(target, new Set())
  return new Proxy(target, {
    get(object, key, receiver) {
      read.get(object)!.add(key)
      return watched(Reflect.get(object, key, receiver), read)
    },
  })
}

// Free-form by definition (FieldsV1 is "an opaque JSON object" the API server does not validate).
const freeForm = /^\/metadata\/managedFields\/\d+\/fieldsV1$/

function unreadFields(value: unknown, read: WeakMap<object, Set<PropertyKey>>, path: string): string[] {
  if (!value || typeof value !== 'object' || freeForm.test(path)) return []
  const seen = read.get(value)
  // An object the validator never reached sits under a field already reported (or is free-form).
  if (!seen) return []
  const problems: string[] = []
  for (const [key, child] of Object.entries(value)) {
    const childPath = `${path}/${key}`
    if (!Array.isArray(value) && !seen.has(key)) problems.push(`${childPath}: unknown field "${key}"`)
    else problems.push(...unreadFields(child, read, childPath))
  }
  return problems
}
