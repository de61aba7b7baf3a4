package loadgen

import (
	"net/http"
	"net/url"
)

// withToken makes the driver authenticate with a bearer token (--token):
// publishes, polls and SSE streams carry `Authorization: Bearer <token>`
// (authorize) and WebSocket subscribers connect with `/ws?token=<token>`.
// An empty token changes nothing.
func (d *relayDriver) withToken(token string) *relayDriver {
	if token == "" {
		return d
	}
	d.authName, d.authValue = "Authorization", "Bearer "+token
	d.wsURL += "?token=" + url.QueryEscape(token)
	return d
}

// authorize sets the --token header on req, if any.
func (d *relayDriver) authorize(req *http.Request) {
	if d.authName != "" {
		req.Header.Set(d.authName, d.authValue)
	}
}
