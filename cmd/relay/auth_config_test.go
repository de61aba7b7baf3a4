package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestAuthSettings(t *testing.T) {
	env := map[string]string{
		"RELAY_JWT_SECRET": "s3cret", "RELAY_JWT_PUBLIC_KEYS": "a.pem, b.pem", "RELAY_JWT_ISSUER": "iss",
		"RELAY_JWT_AUDIENCE": "aud", "RELAY_JWT_LEEWAY": "5s", "RELAY_ACCESS_TOKEN_TTL": "120",
		"RELAY_RATE_PUBLISH": "50", "RELAY_RATE_PUBLISH_BURST": "60", "RELAY_RATE_WS_FRAMES": "2.5",
		"RELAY_RATE_CONNECTIONS": "3", "RELAY_RATE_LOGIN": "0",
	}
	c, err := parseConfig(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	a := c.Auth
	if string(a.JWTSecret) != "s3cret" || len(a.PublicKeyFiles) != 2 || a.Issuer != "iss" || a.Audience != "aud" ||
		a.Leeway != 5*time.Second || a.AccessTokenTTL != 2*time.Minute || a.RefreshTokenTTL != 168*time.Hour ||
		a.Rates.Publish != 50 || a.Rates.PublishBurst != 60 || a.Rates.WSFrames != 2.5 || a.Rates.Connections != 3 ||
		a.Rates.LoginPerMinute != -1 || !a.Enabled() {
		t.Fatalf("auth config: %+v", a)
	}
	d, err := parseConfig(nil, func(string) (string, bool) { return "", false }, nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if d.Auth.Enabled() || d.Auth.Leeway != 0 || d.Auth.Rates.Publish != 0 || d.Auth.Rates.LoginPerMinute != 30 {
		t.Fatalf("defaults: %+v", d.Auth)
	}
	_, err = parseConfig([]string{"--rate-publish", "-1"}, func(string) (string, bool) { return "", false }, nil, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "RELAY_RATE_PUBLISH") {
		t.Fatalf("bad rate: %v", err)
	}
}

// TestProcessAuthAdminLogin runs the binary with a bootstrap admin: /health
// says auth is on, an anonymous publish is 401, a login's token publishes.
func TestProcessAuthAdminLogin(t *testing.T) {
	p := startProcess(t, "RELAY_JWT_SECRET=process-secret", "RELAY_ADMIN_USERNAME=admin", "RELAY_ADMIN_PASSWORD=admin-password")
	base := "http://" + p.addr
	resp, err := http.Get(base + "/health")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"auth":"on"`) {
		t.Fatalf("/health: %s", body)
	}
	publish := func(token string) int {
		req, _ := http.NewRequest("POST", base+"/api/v1/messages", strings.NewReader(`{"topic":"t","payload":{}}`))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := publish(""); code != 401 {
		t.Fatalf("anonymous publish: %d", code)
	}
	resp, err = http.PostForm(base+"/auth/login", url.Values{"username": {"admin"}, "password": {"admin-password"}, "grant_type": {"password"}})
	if err != nil {
		t.Fatal(err)
	}
	var pair struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&pair)
	resp.Body.Close()
	if resp.StatusCode != 200 || pair.AccessToken == "" {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	if code := publish(pair.AccessToken); code != 201 {
		t.Fatalf("publish with the admin's token: %d", code)
	}
	if strings.Contains(p.logs.String(), "admin-password") || strings.Contains(p.logs.String(), pair.AccessToken) {
		t.Fatal("a secret reached the log")
	}
}
