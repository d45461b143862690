/**
 * Child process for azure-sdk.test.ts: gets one token with an unmodified Azure SDK and prints
 * `{"token", "expiresOn"}` (or `{"error"}`) as JSON. A process per case because msal-node keeps
 * the managed identity source and its token cache in static fields (ManagedIdentityClient.
 * identitySource, ManagedIdentityApplication.nodeStorage), chosen from the environment on first use.
 *
 * Usage: node sdk-client.ts <identity|msal|msal-cae|default> <resource> [userAssignedClientId]
 */
const [sdk, resource, clientId] = process.argv.slice(2)

async function getToken(): Promise<{ token: string; expiresOn: number; firstToken?: string }> {
  if (!resource) throw new Error('resource missing')
  if (sdk === 'identity') {
    const { ManagedIdentityCredential } = await import('@azure/identity')
    const credential = clientId
      ? new ManagedIdentityCredential({ clientId })
      : new ManagedIdentityCredential()
    const t = await credential.getToken(`${resource}/.default`)
    return { token: t.token, expiresOn: t.expiresOnTimestamp }
  }
  if (sdk === 'default') {
    const { DefaultAzureCredential } = await import('@azure/identity')
    const credential = new DefaultAzureCredential(clientId ? { managedIdentityClientId: clientId } : {})
    const t = await credential.getToken(`${resource}/.default`)
    return { token: t.token, expiresOn: t.expiresOnTimestamp }
  }
  if (sdk === 'msal-cae') {
    // msal-node with client capabilities, then a claims challenge (what an app does after a 401
    // with claims): msal-node skips its cache and sends xms_cc (and, to Service Fabric only, the
    // refused token's hash).
    const { ManagedIdentityApplication } = await import('@azure/msal-node')
    const app = new ManagedIdentityApplication({ clientCapabilities: ['cp1'] })
    const first = await app.acquireToken({ resource })
    const claims = JSON.stringify({ access_token: { nbf: { essential: true, value: '1763720000' } } })
    const r = await app.acquireToken({ resource, claims })
    return { token: r.accessToken, expiresOn: r.expiresOn?.getTime() ?? 0, firstToken: first.accessToken }
  }
  if (sdk === 'msal') {
    const { ManagedIdentityApplication } = await import('@azure/msal-node')
    const app = new ManagedIdentityApplication(
      clientId ? { managedIdentityIdParams: { userAssignedClientId: clientId } } : {},
    )
    const r = await app.acquireToken({ resource })
    return { token: r.accessToken, expiresOn: r.expiresOn?.getTime() ?? 0 }
  }
  throw new Error(`unknown sdk ${sdk}`)
}

try {
  process.stdout.write(JSON.stringify(await getToken()))
} catch (error) {
  process.stdout.write(JSON.stringify({ error: error instanceof Error ? error.message : String(error) }))
  process.exitCode = 1
}
