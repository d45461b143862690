import { isMap, isSeq, type Document, type YAMLMap } from 'yaml'
import { checkConfigMaps } from './config-map-check.ts'
import type { InjectOptions } from './options.ts'
import { injectPod } from './pod-injection.ts'
import { parseYamlStream, stringifyYamlStream } from './yaml-stream.ts'
import { podLocation } from './workload-kinds.ts'

/**
 * `credential-sidecar inject`: the same YAML stream, with the sidecar in every workload's pod.
 * Documents of other kinds pass through unchanged, and so does an empty document; a `List`
 * (what `kubectl get -o yaml` prints) has each of its items handled the same way. No document is
 * added. Throws `InjectRefusal` for what cannot be injected, naming the document.
 */
export function injectYaml(text: string, options: InjectOptions, source = '<stdin>'): string {
  const documents = parseYamlStream(text, source)
  checkConfigMaps(documents, options, source)
  documents.forEach((document, index) => {
    if (isMap(document.contents))
      injectObject(document, document.contents, options, `${source}: document ${index + 1}`)
  })
  return stringifyYamlStream(documents)
}

function injectObject(
  document: Document.Parsed,
  object: YAMLMap,
  options: InjectOptions,
  where: string,
): void {
  const kind = object.get('kind')
  const apiVersion = object.get('apiVersion')
  if (apiVersion === 'v1' && typeof kind === 'string' && kind.endsWith('List')) {
    const items = object.get('items', true)
    if (isSeq(items))
      items.items.forEach((item, index) => {
        if (isMap(item)) injectObject(document, item, options, `${where} item ${index + 1}`)
      })
    return
  }
  const location = podLocation(apiVersion, kind)
  if (!location) return
  const name = object.getIn(['metadata', 'name'])
  injectPod(
    document,
    object,
    location,
    options,
    `${where} (${String(kind)} ${typeof name === 'string' ? name : '<no name>'})`,
  )
}
