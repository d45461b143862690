import { test } from 'node:test'
import assert from 'node:assert/strict'
import type * as Sdk from '../../client-sdk/src/wire.ts'
import type { ErrorBody } from '../../sidecar/src/http/error-response.ts'
import type * as Daemon from '../../sidecar/src/http/wire/responses.ts'

// The SDK carries its own copy of the wire types (it ships without the daemon). These checks are
// made by tsc (`npm test` type-checks first): the copy must name exactly the daemon's fields, and
// every answer the daemon can build must be one the SDK's type accepts.
type SameKeys<A, B> = [keyof A] extends [keyof B] ? ([keyof B] extends [keyof A] ? true : false) : false
type Accepts<Reader, Written> = [Written] extends [Reader] ? true : false

const checks = {
  tokenKeys: true satisfies SameKeys<Sdk.TokenResponseJson, Daemon.TokenResponseJson>,
  tokenAccepted: true satisfies Accepts<Sdk.TokenResponseJson, Daemon.TokenResponseJson>,
  bindingKeys: true satisfies SameKeys<Sdk.BindingCertificateJson, Daemon.BindingCertificateJson>,
  bindingAccepted: true satisfies Accepts<Sdk.BindingCertificateJson, Daemon.BindingCertificateJson>,
  errorKeys: true satisfies SameKeys<Sdk.ErrorBodyJson, ErrorBody>,
  errorAccepted: true satisfies Accepts<Sdk.ErrorBodyJson, ErrorBody>,
}

test("the SDK's wire types match the daemon's (checked by tsc)", () => {
  assert.ok(Object.values(checks).every(Boolean))
})
