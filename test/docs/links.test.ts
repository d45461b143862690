import { test } from 'node:test'
import assert from 'node:assert/strict'
import { glob, readFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import {
  brokenReason,
  isExternal,
  markdownLinks,
  repositoryTarget,
  repositoryUrl,
} from '../support/markdown.ts'

const root = resolve(import.meta.dirname, '../..')

/** Every Markdown file of the repository: README.md, docs/, each package's README, … */
async function markdownFiles(): Promise<string[]> {
  const files: string[] = []
  const skipped = /(^|\/)(node_modules|dist|\.git)$/
  for await (const file of glob('**/*.md', {
    cwd: root,
    exclude: (entry) => skipped.test(entry),
  })) {
    files.push(file)
  }
  return files.sort()
}

test('the docs are there: README.md, docs/*.md and each package README', async () => {
  const files = await markdownFiles()
  for (const expected of ['README.md', 'docs/configuration.md', 'docs/security.md', 'client-sdk/README.md']) {
    assert.ok(files.includes(expected), `${expected} is missing (found ${files.join(', ')})`)
  }
})

test('every relative link and anchor in the Markdown files resolves', async () => {
  const broken: string[] = []
  let checked = 0
  for (const file of await markdownFiles()) {
    const path = join(root, file)
    for (const link of markdownLinks(await readFile(path, 'utf8'))) {
      if (isExternal(link.target)) continue
      checked++
      const reason = await brokenReason(path, link.target)
      if (reason) broken.push(`${file}:${link.line} (${link.target}): ${reason}`)
    }
  }
  assert.ok(checked > 50, `only ${checked} relative links found: is the parser still reading the docs?`)
  assert.deepEqual(broken, [])
})

test('every absolute link into this repository names a file (and heading) on main', async () => {
  const broken: string[] = []
  const foreign: string[] = []
  for (const file of await markdownFiles()) {
    for (const link of markdownLinks(await readFile(join(root, file), 'utf8'))) {
      if (
        /^https:\/\/github\.com\/credential-sidecar\//i.test(link.target) &&
        !link.target.startsWith(repositoryUrl)
      ) {
        foreign.push(`${file}:${link.line} (${link.target})`)
      }
      const target = repositoryTarget(link.target)
      if (target === undefined) continue
      // Resolved from the root, where the repository's paths start ('…#readme' maps to README.md).
      const reason = await brokenReason(join(root, 'README.md'), target)
      if (reason) broken.push(`${file}:${link.line} (${link.target}): ${reason}`)
    }
  }
  assert.deepEqual(foreign, [], `links into the project must use ${repositoryUrl}`)
  assert.deepEqual(broken, [])
})

test('the README links every page in docs/ (a newcomer finds each topic in one click)', async () => {
  const readme = join(root, 'README.md')
  const linked = new Set(
    markdownLinks(await readFile(readme, 'utf8'))
      .filter((link) => !isExternal(link.target))
      .map((link) => resolve(root, link.target.split('#')[0]!)),
  )
  const pages = (await markdownFiles()).filter((file) => /^docs\/[^/]+\.md$/.test(file))
  assert.ok(pages.length >= 8, `expected the docs/ pages, found ${pages.join(', ')}`)
  const missing = pages.filter((page) => !linked.has(join(root, page)))
  assert.deepEqual(missing, [], 'docs pages the README does not link')
})
