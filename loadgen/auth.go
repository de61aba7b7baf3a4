package loadgen

import "net/url"

// withToken makes the driver authenticate with a bearer token (--token):
// publishes carry `Authorization: Bearer <token>` and subscribers connect
// with `/ws?token=<token>`. An empty token changes nothing.
func (d *relayDriver) withToken(token string) *relayDriver {
	if token == "" {
		return d
	}
	d.authName, d.authValue = "Authorization", "Bearer "+token
	d.wsURL += "?token=" + url.QueryEscape(token)
	return d
}
