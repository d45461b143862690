import { isMap, isSeq, parseDocument, type Document, type YAMLMap } from 'yaml'
import { configFileName, opsPort, secretKey, secretMountPath, tokenPort } from './layout.ts'
import type { InjectOptions } from './options.ts'
import { InjectRefusal } from './refusal.ts'

/**
 * `--config-map NAME` with NAME in the input: its `config.yaml` must open what the injected pod
 * relies on, or the pod never works: the ops listener on the pod IP at 7781 (the kubelet's probes),
 * the token listener on TCP 7780 (the app containers' environment), and the caller secret exactly
 * when `--secret` mounts one (the apps send it; without it every request is refused). The file is
 * read as YAML, not validated as a whole: the daemon reports its own errors, and a `${VAR}` there
 * may be set only in the cluster. A ConfigMap that is not in the input is not checked.
 */
export function checkConfigMaps(documents: Document.Parsed[], options: InjectOptions, source: string): void {
  const name = options.configMap
  if (!name) return
  documents.forEach((document, index) => {
    const where = `${source}: document ${index + 1}`
    for (const { object, at } of objectsOf(document.contents, where)) {
      if (object.get('apiVersion') !== 'v1' || object.get('kind') !== 'ConfigMap') continue
      if (object.getIn(['metadata', 'name']) !== name) continue
      checkConfig(object.getIn(['data', configFileName]), options, `${at} (ConfigMap ${name})`)
    }
  })
}

function* objectsOf(node: unknown, where: string): Generator<{ object: YAMLMap; at: string }> {
  if (!isMap(node)) return
  const items = node.get('items', true)
  if (node.get('apiVersion') === 'v1' && String(node.get('kind')).endsWith('List') && isSeq(items)) {
    for (const [index, item] of items.items.entries()) yield* objectsOf(item, `${where} item ${index + 1}`)
    return
  }
  yield { object: node, at: where }
}

function checkConfig(text: unknown, options: InjectOptions, what: string): void {
  const refuse = (problem: string) =>
    new InjectRefusal(`${what}: ${problem} (the sidecar reads it with --config-map ${options.configMap})`)
  if (typeof text !== 'string') throw refuse(`has no data.${configFileName}`)
  const document = parseDocument(text, { prettyErrors: false })
  if (document.errors.length > 0) throw refuse(`${configFileName} is not valid YAML`)
  const config = (document.toJS() ?? {}) as Record<string, any>
  const listen = (config['listen'] ?? {}) as Record<string, unknown>
  const ops = listen['ops'] as Record<string, unknown> | undefined
  const unresolved = (value: unknown) => typeof value === 'string' && value.includes('${')
  const opsHost = ops?.['host'] ?? '0.0.0.0'
  if (
    !ops ||
    (!unresolved(ops['port']) && Number(ops['port']) !== opsPort) ||
    (!unresolved(opsHost) && !['0.0.0.0', '::'].includes(String(opsHost)))
  )
    throw refuse(
      `${configFileName} does not open the ops listener the injected probes ask (the kubelet probes the pod IP on port ${opsPort}): add listen.ops: {host: 0.0.0.0, port: ${opsPort}}`,
    )
  const port = listen['port'] ?? tokenPort
  if (listen['socket'] !== undefined || (!unresolved(port) && Number(port) !== tokenPort))
    throw refuse(
      `${configFileName} moves the token listener off 127.0.0.1:${tokenPort}, where the app containers' environment points: remove listen.port/listen.socket`,
    )
  const secretFile = (config['callers'] as Record<string, unknown> | undefined)?.['secretFile']
  const mounted = `${secretMountPath}/${secretKey}`
  if (options.secret && secretFile !== mounted && !unresolved(secretFile))
    throw refuse(
      `${configFileName} does not read the caller secret --secret ${options.secret} mounts and the app containers send: set callers.secretFile: ${mounted}`,
    )
  if (!options.secret && secretFile !== undefined)
    throw refuse(
      `${configFileName} sets callers.secretFile, so the sidecar refuses every request without the secret, and the app containers get none: run inject with --secret NAME (a Secret with key ${secretKey}), or remove callers.secretFile`,
    )
}
