"""Child process for python-identity.test.ts: one token from Debian's unmodified azure-identity.

ManagedIdentityCredential picks its dialect from the environment alone (IDENTITY_ENDPOINT +
IDENTITY_HEADER: App Service 2019-08-01; MSI_ENDPOINT + MSI_SECRET: 2017-09-01; MSI_ENDPOINT:
Cloud Shell POST; AZURE_POD_IDENTITY_AUTHORITY_HOST: IMDS). Prints {"token", "expiresOn",
"credential"} or {"error"} as JSON.

Usage: python3 python-identity.py <resource> [userAssignedClientId]
"""
import json
import sys

from azure.identity import ManagedIdentityCredential


def main() -> int:
    resource = sys.argv[1]
    client_id = sys.argv[2] if len(sys.argv) > 2 else None
    credential = ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()
    try:
        token = credential.get_token(resource + "/.default")
    except Exception as error:  # report every failure the same way, as JSON
        print(json.dumps({"error": "{}: {}".format(type(error).__name__, error)}))
        return 1
    inner = type(credential._credential).__name__
    print(json.dumps({"token": token.token, "expiresOn": token.expires_on, "credential": inner}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
