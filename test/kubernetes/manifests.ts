import { parseAllDocuments } from 'yaml'
import { podLocation } from '../../sidecar/src/cli/inject/workload-kinds.ts'

export type KubeObject = Record<string, any>

/** Every document of a YAML stream as kubectl reads it (YAML 1.1); empty documents dropped. */
export function readObjects(text: string): KubeObject[] {
  return parseAllDocuments(text, { version: '1.1' })
    .map((document) => {
      if (document.errors.length) throw document.errors[0]
      return document.toJS() as KubeObject | null
    })
    .filter((object): object is KubeObject => object !== null)
}

/** The objects of a stream, with `List` items flattened. */
export function flatten(objects: KubeObject[]): KubeObject[] {
  return objects.flatMap((object) =>
    object['apiVersion'] === 'v1' && String(object['kind']).endsWith('List')
      ? flatten(object['items'] ?? [])
      : [object],
  )
}

/** The pod an object runs (metadata and spec), for the kinds `inject` handles. */
export function podOf(object: KubeObject): { metadata: KubeObject; spec: KubeObject } | undefined {
  const location = podLocation(object['apiVersion'], object['kind'])
  if (!location) return undefined
  const at = (path: string[]) => path.reduce<any>((node, key) => node?.[key], object)
  return { metadata: at(location.metadata) ?? {}, spec: at(location.spec) }
}

/** Apply `inject`'s documented command line (minus the program and redirection) as an argv. */
export function injectArgs(commentLine: string): string[] {
  const match = /^# credential-sidecar inject (.*?) > \S+$/.exec(commentLine)
  if (!match) throw new Error(`no "# credential-sidecar inject … > …" line: ${commentLine}`)
  return match[1]!.split(/\s+/)
}
