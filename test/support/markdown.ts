/**
 * Markdown links and heading anchors, as GitHub renders them: enough to check that every relative
 * link in the docs points at a file that exists and, for a Markdown target, at a heading it has.
 */
import { readFile, stat } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'

export interface MarkdownLink {
  /** 1-based line of the link in its file. */
  readonly line: number
  readonly target: string
}

/** The text outside fenced code blocks, one entry per line (fenced lines blanked). */
function proseLines(markdown: string): string[] {
  let fence: string | undefined
  return markdown.split('\n').map((line) => {
    const opener = /^\s{0,3}(`{3,}|~{3,})/.exec(line)?.[1]
    if (fence === undefined && opener) {
      fence = opener
      return ''
    }
    if (fence !== undefined) {
      if (line.trim().startsWith(fence)) fence = undefined
      return ''
    }
    return line
  })
}

/** Inline links `[text](target "title")`, images, and reference definitions `[label]: target`. */
export function markdownLinks(markdown: string): MarkdownLink[] {
  const links: MarkdownLink[] = []
  proseLines(markdown).forEach((raw, index) => {
    // Code spans are not links; keep their length out of the way but leave the brackets around them.
    const line = raw.replace(/(`+)[^`]*?\1/g, '')
    for (const match of line.matchAll(/\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+"[^"]*")?\s*\)/g)) {
      links.push({ line: index + 1, target: match[1]!.replace(/^<|>$/g, '') })
    }
    const definition = /^\s{0,3}\[[^\]]+\]:\s*(\S+)/.exec(line)
    if (definition) links.push({ line: index + 1, target: definition[1]! })
  })
  return links
}

/** GitHub's heading ids (github-slugger): plain text, lower case, punctuation dropped, spaces → '-'. */
export function headingAnchors(markdown: string): Set<string> {
  const anchors = new Set<string>()
  const seen = new Map<string, number>()
  for (const line of proseLines(markdown)) {
    for (const explicit of line.matchAll(/<a\s+(?:id|name)="([^"]+)"/g)) anchors.add(explicit[1]!)
    const heading = /^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)?.[1]
    if (heading === undefined) continue
    const text = heading
      .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
      .replace(/<[^>]+>/g, '')
      .replace(/[`*]/g, '')
    const base = text
      .toLowerCase()
      .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
      .replace(/ /g, '-')
    const count = seen.get(base) ?? 0
    seen.set(base, count + 1)
    anchors.add(count === 0 ? base : `${base}-${count}`)
  }
  return anchors
}

/** A link that leaves the page: a scheme (`https:`, `mailto:`) or a protocol-relative `//host`. */
export function isExternal(target: string): boolean {
  return /^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('//')
}

/**
 * Why a relative link from `file` does not resolve (undefined when it does): the path must exist
 * and, when it names a Markdown file (or the page itself) with `#anchor`, that heading must exist.
 * `root`, when given, is a folder the link must not leave (a package's own files).
 */
export async function brokenReason(file: string, target: string, root?: string): Promise<string | undefined> {
  const [pathPart = '', anchor] = target.split('#', 2) as [string, string | undefined]
  const path = pathPart === '' ? file : resolve(dirname(file), decodeURIComponent(pathPart))
  if (root !== undefined && path !== root && !path.startsWith(`${resolve(root)}/`)) {
    return `leaves ${root}`
  }
  const info = await stat(path).catch(() => undefined)
  if (!info) return 'no such file or directory'
  if (anchor === undefined || anchor === '' || !path.endsWith('.md') || info.isDirectory()) return undefined
  const anchors = headingAnchors(await readFile(path, 'utf8'))
  return anchors.has(decodeURIComponent(anchor)) ? undefined : `no heading #${anchor} in it`
}

/** Where this repository's docs live on the web: package READMEs link there (`blob/main/docs/…`). */
export const repositoryUrl = 'https://github.com/credential-sidecar/credential-sidecar'

/**
 * The repository-relative target (`docs/vm.md#anchor`) of an absolute link into this repository
 * (`…/blob/main/docs/vm.md#anchor`, `…/tree/main/deploy/`, `…#readme`), or undefined for any other URL.
 */
export function repositoryTarget(url: string): string | undefined {
  if (url === repositoryUrl || url === `${repositoryUrl}/`) return 'README.md'
  if (url.startsWith(`${repositoryUrl}#`)) return 'README.md'
  const path = /^\/(?:blob|tree)\/main\/(.+)$/.exec(url.slice(repositoryUrl.length))?.[1]
  return url.startsWith(`${repositoryUrl}/`) && path ? path : undefined
}
