import { test } from 'node:test'
import assert from 'node:assert/strict'
import { SidecarError } from '../../sidecar/src/core/errors.ts'
import { normaliseScope } from '../../sidecar/src/tokens/scope.ts'

function refusal(input: { resource?: string; scope?: string }): SidecarError {
  try {
    normaliseScope(input)
  } catch (error) {
    assert.ok(error instanceof SidecarError)
    return error
  }
  assert.fail(`${JSON.stringify(input)} was accepted`)
}

test('a resource that is already a scope ("…/.default") is refused with a pointer to scope=', () => {
  for (const resource of ['https://x/.default', 'https://x/.default/', 'api://app/.DEFAULT']) {
    const e = refusal({ resource })
    assert.equal(e.code, 'invalid_request')
    assert.equal(e.status, 400)
    assert.match(e.message, /scope=/)
  }
})

test('a scope without "/.default" is refused clearly', () => {
  for (const scope of ['https://x', 'https://x/user.read', 'https://x/.default https://y/.default']) {
    const e = refusal({ scope })
    assert.equal(e.code, 'invalid_request')
    assert.match(e.message, /\/\.default/)
  }
  assert.equal(refusal({ scope: '/.default' }).code, 'invalid_request')
})

test('resource=R and scope=R/.default still name the same entry', () => {
  assert.deepEqual(normaliseScope({ resource: 'https://x' }), normaliseScope({ scope: 'https://x/.default' }))
})

test('a trailing "/" is kept, as MSAL.NET keeps it for IMDS: another audience, another entry', () => {
  assert.deepEqual(normaliseScope({ resource: 'https://x/' }), {
    resource: 'https://x/',
    scope: 'https://x//.default',
  })
  assert.deepEqual(
    normaliseScope({ scope: 'https://x//.default' }),
    normaliseScope({ resource: 'https://x/' }),
  )
  assert.notDeepEqual(normaliseScope({ resource: 'https://x/' }), normaliseScope({ resource: 'https://x' }))
})
