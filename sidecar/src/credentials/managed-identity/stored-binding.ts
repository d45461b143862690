import type { ManagedIdentitySelector } from '../../config/types.ts'
import { describeError } from '../../core/errors.ts'
import type { Runtime } from '../../core/runtime.ts'
import { BindingStore } from '../../pki/binding-store.ts'
import { softwareKeyFromPrivatePem } from '../../pki/key-provider.ts'
import { certificateInfo, publicKeysMatch, type CertificateInfo } from '../../pki/x509.ts'
import { LONG_LIVED_MS } from '../certificate-lifetime.ts'
import type { ValueStore } from '../renewing.ts'
import { toBinding, type ImdsV2Binding } from './mint-binding.ts'

/** Stable key of a selector, stored with a binding so a changed config never reuses it. */
export function selectorKey(selector: ManagedIdentitySelector): string {
  return selector.kind === 'system' ? 'system' : `${selector.kind}:${selector.value.toLowerCase()}`
}

export interface StoredBindingOptions {
  /** The 0600 file (`managedIdentity.bindingStore`). */
  path: string
  /** Its config key, for log lines (`identities.mi.bindingStore`). */
  key?: string
  selector: ManagedIdentitySelector
  runtime: Runtime
  /** Identity name, for logs. */
  identity: string
}

/**
 * The binding store as the renewal engine's store: what is reused after a restart (this selector's
 * certificate, with its own key, and more than 24 h left), what is refused and why.
 */
export function storedBinding(options: StoredBindingOptions): ValueStore<ImdsV2Binding> {
  const { runtime, identity, selector } = options
  const store = new BindingStore(options.path, options.key)
  return {
    async load() {
      const { logger, clock } = runtime
      const log = { identity, path: store.path, key: store.key }
      let stored
      try {
        stored = await store.load()
      } catch (error) {
        // Refused (another uid's, group-readable, a FIFO…) or unreadable: never use that key. The
        // next mint replaces the file with the daemon's own 0600 one.
        logger.error(
          { ...log, error: describeError(error) },
          'binding store refused; minting a new binding certificate',
        )
        return undefined
      }
      if (!stored) return undefined
      let why: string | undefined
      let info: CertificateInfo | undefined
      try {
        info = certificateInfo(stored.certificatePem)
        if (stored.selector !== selectorKey(selector)) why = 'it belongs to another managed identity selector'
        else if (!publicKeysMatch(stored.certificatePem, stored.privateKeyPem))
          why = 'its key does not match its certificate'
        else if (info.notAfter - clock.now() <= LONG_LIVED_MS) why = 'its certificate has 24 h or less left'
        else if (info.notBefore > clock.now()) why = 'its certificate is not valid yet'
      } catch {
        why = 'it does not hold a readable certificate and key'
      }
      if (why || !info) {
        logger.info({ ...log, why }, 'stored IMDS v2 binding not reused')
        return undefined
      }
      return toBinding(info, softwareKeyFromPrivatePem(stored.privateKeyPem), stored)
    },
    save(value) {
      return store.save({
        selector: selectorKey(selector),
        clientId: value.clientId,
        tenantId: value.tenantId,
        tokenEndpoint: value.tokenEndpoint,
        identityType: value.identityType,
        certificatePem: value.binding.certificatePem,
        privateKeyPem: value.binding.privateKeyPem,
        keyProtection: value.binding.keyProtection,
      })
    },
    remove() {
      return store.remove()
    },
    updateFailed(error) {
      // A read-only or full filesystem: the binding in memory is served all the same.
      runtime.logger.warn(
        { identity, path: store.path, key: store.key, error: describeError(error) },
        'binding store update failed; serving from memory, not persisted',
      )
    },
  }
}
