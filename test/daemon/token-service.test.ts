import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { ManagedIdentityConfig } from '../../sidecar/src/config/types.ts'
import { SidecarError } from '../../sidecar/src/core/errors.ts'
import type { CredentialSource } from '../../sidecar/src/credentials/source.ts'
import { CredentialChain } from '../../sidecar/src/identities/chain.ts'
import { Identity } from '../../sidecar/src/identities/identity.ts'
import type { CredentialBundle } from '../../sidecar/src/model/bundle.ts'
import { normaliseScope } from '../../sidecar/src/tokens/scope.ts'
import { TokenCache } from '../../sidecar/src/cache/token-cache.ts'
import { TokenService } from '../../sidecar/src/tokens/token-service.ts'
import type { AcquiredToken } from '../../sidecar/src/model/token.ts'
import type { BindingCertificate } from '../../sidecar/src/model/binding.ts'
import { FakeClock } from '../support/fake-clock.ts'
import { testRuntime } from '../support/runtime.ts'

/** A source whose certificate is part of its cache key but whose answers carry no binding (private_key_jwt). */
class CertificateAssertionSource implements CredentialSource {
  readonly label = 'certificate (test)'
  readonly canBind = true
  acquired = 0
  invalidated: string[] = []
  rejectNext: SidecarError | undefined
  binding: BindingCertificate = {
    x5tS256: 'cert-1',
    certificatePem: '',
    privateKeyPem: '',
    notAfter: 0,
    keyProtection: 'software',
  }
  readonly clock: FakeClock
  constructor(clock: FakeClock) {
    this.clock = clock
  }
  bindingIfKnown() {
    return { binding: this.binding }
  }
  loads = 0
  async load() {
    this.loads++
    return this.binding
  }
  async acquireToken(): Promise<AcquiredToken> {
    this.acquired++
    const rejection = this.rejectNext
    this.rejectNext = undefined
    if (rejection) throw rejection
    return {
      tokenType: 'Bearer',
      accessToken: `token-${this.acquired}-${this.binding.x5tS256}`,
      expiresOn: this.clock.now() + 3600_000,
    }
  }
  invalidate(binding: BindingCertificate) {
    this.invalidated.push(binding.x5tS256)
    this.binding = { ...this.binding, x5tS256: 'cert-2' }
  }
  async bundle(): Promise<CredentialBundle> {
    throw new SidecarError('no_bound_credential', 'none')
  }
}

function setup() {
  const clock = new FakeClock()
  const source = new CertificateAssertionSource(clock)
  const runtime = testRuntime({ clock, timeoutMs: 1000 })
  const { logger, metrics } = runtime
  const cache = new TokenCache({ clock, random: () => 0.5, logger, metrics, maxTokens: 10 })
  const identity = new Identity({ name: 'app' } as ManagedIdentityConfig, CredentialChain.of(source), {
    cache,
    runtime,
  })
  const service = new TokenService({
    runtime,
    identities: new Map([['app', identity]]),
    defaultIdentity: 'app',
    requestDeadlineMs: 5000,
  })
  return { identity, source, service }
}

test('invalidate drops the entry a token came from, even when the answer carried no binding', async () => {
  const { identity, source, service } = setup()
  const scope = normaliseScope({ resource: 'https://graph.microsoft.com' })
  const first = await service.getToken(identity, scope)
  assert.equal((await service.getToken(identity, scope)).token.accessToken, first.token.accessToken)
  identity.refused(first)
  const second = await service.getToken(identity, scope)
  assert.notEqual(second.token.accessToken, first.token.accessToken)
  assert.equal(source.acquired, 2)
  identity.refused(first) // a stale report leaves the newer token alone
  assert.equal((await service.getToken(identity, scope)).token.accessToken, second.token.accessToken)
})

test('a rejected binding is invalidated and the request retried once with the new one', async () => {
  const { identity, source, service } = setup()
  source.rejectNext = new SidecarError('upstream_error', 'invalid_client', { reason: 'invalid_client' })
  const served = await service.getToken(identity, normaliseScope({ resource: 'https://x' }))
  assert.deepEqual(source.invalidated, ['cert-1'])
  assert.match(served.token.accessToken, /cert-2$/)
  assert.equal(source.acquired, 2)
})

test('a cold request loads the credential once and fetches once; a warm one does neither', async () => {
  const { identity, source, service } = setup()
  const scope = normaliseScope({ resource: 'https://x' })
  await service.getToken(identity, scope)
  assert.equal(source.loads, 1, 'binding and source come from one load')
  assert.equal(source.acquired, 1)
  await service.getToken(identity, scope)
  assert.equal(source.loads, 1)
  assert.equal(source.acquired, 1)
})
