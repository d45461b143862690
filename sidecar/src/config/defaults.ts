/** Values used when the file does not set them (contract §2). */
export const defaults = {
  listenHost: '127.0.0.1',
  listenPort: 7780,
  /**
   * Node's default (511) overflows when 1000 callers connect at once at start-up, and a dropped
   * SYN costs the caller a 1 s retransmit; Linux caps this at net.core.somaxconn (4096 by default).
   */
  listenBacklog: 4096,
  /** `listen.ops` exists for kubelet probes and Prometheus on the pod IP, hence all interfaces. */
  opsHost: '0.0.0.0',
  opsPort: 7781,
  imdsEndpoint: 'http://169.254.169.254',
  authorityHost: 'https://login.microsoftonline.com',
  timeoutMs: 10_000,
  requestDeadlineMs: 20_000,
  maxTokens: 10_000,
  shutdownGraceMs: 10_000,
  logLevel: 'info',
  tokenExchangeUrl: 'api://AzureADTokenExchange',
  /** The identity a config without `identities` gets: the machine's system-assigned managed identity. */
  identityName: 'mi',
} as const

/** Environment variables that stand in for a key the file leaves out. */
export const envDefaults = {
  /** Honoured by the Azure SDKs too; pod identity and local emulators set it. */
  imdsEndpoint: 'AZURE_POD_IDENTITY_AUTHORITY_HOST',
  logLevel: 'CREDENTIAL_SIDECAR_LOG_LEVEL',
} as const

export const identityNamePattern = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/
