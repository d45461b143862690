import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, posix } from 'node:path'
import { fileURLToPath } from 'node:url'
import { npm } from '../support/installed.ts'
import { headingAnchors, isExternal, markdownLinks, repositoryUrl } from '../support/markdown.ts'

const repo = fileURLToPath(new URL('../..', import.meta.url))

interface PackResult {
  readonly name: string
  readonly files: readonly { readonly path: string }[]
}

/**
 * What `npm pack` puts in each tarball, without building: `--dry-run` lists the same files a real
 * pack writes (installed-packages.test.ts packs for real), and `--ignore-scripts` skips prepack's
 * build, which only adds dist/. Each package is listed from a copy without dist/: other test files
 * build (and so delete and rewrite) the checkout's dist/ meanwhile, and npm fails on a file that
 * vanishes while it lists them.
 */
async function packLists(t: TestContext): Promise<Map<string, { dir: string; files: Set<string> }>> {
  const scratch = await mkdtemp(join(tmpdir(), 'tarball-contents-'))
  t.after(() => rm(scratch, { recursive: true, force: true }))
  const dirs: Record<string, string> = {
    'credential-sidecar': 'sidecar',
    'credential-sidecar-client': 'client-sdk',
  }
  const lists = new Map<string, { dir: string; files: Set<string> }>()
  for (const dir of Object.values(dirs)) {
    const copy = join(scratch, dir)
    await cp(join(repo, dir), copy, {
      recursive: true,
      filter: (source) => !/[/\\](dist|node_modules)$/.test(source),
    })
    const { stdout } = await npm(['pack', '--dry-run', '--json', '--ignore-scripts'], copy)
    for (const packed of JSON.parse(stdout) as PackResult[]) {
      assert.equal(dirs[packed.name], dir, `unexpected package ${packed.name} in ${dir}`)
      lists.set(packed.name, { dir: join(repo, dir), files: new Set(packed.files.map((file) => file.path)) })
    }
  }
  assert.deepEqual([...lists.keys()].sort(), Object.keys(dirs).sort())
  return lists
}

test('each tarball carries its README, the MIT licence, and package.json metadata naming both', async (t) => {
  const licence = await readFile(join(repo, 'LICENSE'), 'utf8')
  assert.match(licence, /^MIT License\n\nCopyright \(c\) 2026 credential-sidecar contributors\n/)
  const root = JSON.parse(await readFile(join(repo, 'package.json'), 'utf8'))
  assert.equal(root.license, 'MIT')

  for (const [name, { dir, files }] of await packLists(t)) {
    for (const file of ['README.md', 'LICENSE', 'package.json'])
      assert.ok(files.has(file), `${name}: no ${file}`)
    assert.equal(
      await readFile(join(dir, 'LICENSE'), 'utf8'),
      licence,
      `${name}: LICENSE differs from the root's`,
    )
    const pkg = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8'))
    assert.equal(pkg.license, 'MIT', name)
    assert.equal(pkg.repository?.url, `git+${repositoryUrl}.git`, name)
    assert.equal(pkg.repository?.directory, posix.basename(dir), name)
    assert.ok(String(pkg.homepage).startsWith(repositoryUrl), `${name}: homepage ${pkg.homepage}`)
    const readme = await readFile(join(dir, 'README.md'), 'utf8')
    assert.match(readme, new RegExp(`^# ${name}\\n`), `${name}: the README is about another package`)
  }
})

test('relative links in each packaged README resolve inside its tarball', async (t) => {
  const broken: string[] = []
  for (const [name, { dir, files }] of await packLists(t)) {
    const readme = await readFile(join(dir, 'README.md'), 'utf8')
    const links = markdownLinks(readme).filter((link) => !isExternal(link.target))
    assert.ok(links.length > 0, `${name}: expected at least the link to LICENSE`)
    for (const { line, target } of links) {
      const [pathPart = '', anchor] = target.split('#', 2) as [string, string | undefined]
      const path =
        pathPart === '' ? 'README.md' : posix.normalize(decodeURIComponent(pathPart)).replace(/\/$/, '')
      const where = `${name} README.md:${line} (${target})`
      if (path.startsWith('..')) {
        broken.push(`${where}: leaves the package; link ${repositoryUrl}/blob/main/… instead`)
      } else if (!files.has(path) && ![...files].some((file) => file.startsWith(`${path}/`))) {
        broken.push(`${where}: not in the tarball`)
      } else if (
        anchor &&
        path.endsWith('.md') &&
        !headingAnchors(await readFile(join(dir, path), 'utf8')).has(anchor)
      ) {
        broken.push(`${where}: no heading #${anchor}`)
      }
    }
  }
  assert.deepEqual(broken, [])
})
