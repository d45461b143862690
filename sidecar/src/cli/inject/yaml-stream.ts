import { LineCounter, parseAllDocuments, type Document } from 'yaml'
import { InjectRefusal } from './refusal.ts'

/*
 * kubectl reads YAML 1.1 (sigs.k8s.io/yaml → go-yaml): `on`, `yes`, `no` are booleans there and
 * `0440` is octal. Parsing as YAML 1.1 reads the input as kubectl will, and writing with the same
 * schema quotes every string that YAML 1.1 would misread ("on", "yes", "0440"…), so what we write is
 * what kubectl reads. Documents stay `Document`s so comments and key order survive.
 */
const yamlVersion = '1.1'

/** Every document of a YAML stream; a syntax error anywhere refuses the whole stream. */
export function parseYamlStream(text: string, source: string): Document.Parsed[] {
  const lineCounter = new LineCounter()
  const documents = parseAllDocuments(text, { version: yamlVersion, lineCounter, prettyErrors: false })
  if (!Array.isArray(documents)) return [] // an empty stream
  for (const document of documents) {
    const error = document.errors[0]
    if (error) {
      const { line, col } = lineCounter.linePos(error.pos[0])
      throw new InjectRefusal(`${source}:${line}:${col}: not valid YAML: ${firstLine(error.message)}`)
    }
  }
  return documents
}

/** The stream back as text: one `---` between documents, comments and key order kept. */
export function stringifyYamlStream(documents: Document.Parsed[]): string {
  return documents
    .map((document, index) => {
      // The first document keeps its own choice; later ones need the separator.
      if (index > 0) document.directives.docStart = true
      return document.toString({ lineWidth: 0 })
    })
    .join('')
}

function firstLine(message: string): string {
  return message.split('\n')[0]!
}
