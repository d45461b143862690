// Command adal-token gets one managed identity token with Go adal (Debian's
// golang-github-azure-go-autorest-dev), exactly as an unmodified Go app does:
// the managed identity environment (App Service 2017-09-01, Cloud Shell, IMDS)
// comes from MSI_ENDPOINT / MSI_SECRET alone. It prints
// {"token","expiresOn","endpoint"} or {"error"} as JSON on stdout.
//
// Usage: adal-token <resource> [userAssignedClientId]; or adal-token --endpoint,
// which only prints the endpoint adal.GetMSIEndpoint chose.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/Azure/go-autorest/autorest/adal"
)

type result struct {
	Token     string `json:"token,omitempty"`
	ExpiresOn int64  `json:"expiresOn,omitempty"`
	Endpoint  string `json:"endpoint,omitempty"`
	Error     string `json:"error,omitempty"`
}

func run() (result, error) {
	if len(os.Args) < 2 {
		return result{}, fmt.Errorf("usage: adal-token <resource> [userAssignedClientId]")
	}
	endpoint, err := adal.GetMSIEndpoint()
	if err != nil {
		return result{}, err
	}
	if os.Args[1] == "--endpoint" {
		return result{Endpoint: endpoint}, nil
	}
	options := &adal.ManagedIdentityOptions{}
	if len(os.Args) > 2 {
		options.ClientID = os.Args[2]
	}
	spt, err := adal.NewServicePrincipalTokenFromManagedIdentity(os.Args[1], options)
	if err != nil {
		return result{}, err
	}
	// One attempt (a public knob of adal): a refusal is reported at once instead of after adal's
	// back-off, which retries 404, 410 and 5xx up to 5 times over about two minutes.
	spt.MaxMSIRefreshAttempts = 1
	if err := spt.Refresh(); err != nil {
		return result{}, err
	}
	token := spt.Token()
	return result{Token: token.AccessToken, ExpiresOn: token.Expires().Unix(), Endpoint: endpoint}, nil
}

func main() {
	r, err := run()
	if err != nil {
		r = result{Error: err.Error()}
	}
	out, _ := json.Marshal(r)
	os.Stdout.Write(out)
	if err != nil {
		os.Exit(1)
	}
}
