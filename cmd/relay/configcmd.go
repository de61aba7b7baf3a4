package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/pulsar-relay/relay/policy"
)

// configCmd is `relay config [--json] [serve flags]`: the configuration
// `relay serve` would run with, from the same sources (defaults, .env in the
// working directory, environment, flags) and the same validation
// (parseConfig): one KEY=VALUE line per setting with its source, or a JSON
// object with --json. Secrets are redacted: RELAY_VALKEY_PASSWORD, any
// setting whose name holds SECRET, PASSWORD, TOKEN or CREDENTIAL or has the
// word KEY or KEYS (RELAY_API_KEYS, not RELAY_VALKEY_ADDR), and the password
// of a URL-like value. A bad value exits 2 naming the setting, as serve
// would.
func configCmd(args []string, io cliIO) int {
	return finish(io.stderr, "config", showConfig(args, io))
}

// effectiveSetting is one line of `relay config`.
type effectiveSetting struct {
	Name   string `json:"name"`
	Flag   string `json:"flag"`
	Value  string `json:"value"`
	Source string `json:"source"` // default, .env, env or flag
}

func showConfig(args []string, cio cliIO) error {
	asJSON := false
	var serveArgs []string
	for _, a := range args {
		switch a {
		case "--json", "-json":
			asJSON = true
		default:
			serveArgs = append(serveArgs, a)
		}
	}
	var dotenvData []byte
	if data, err := os.ReadFile(".env"); err == nil {
		dotenvData = data
	}
	dotenv := func() io.Reader {
		if dotenvData == nil {
			return nil
		}
		return strings.NewReader(string(dotenvData))
	}
	if _, err := parseConfig(serveArgs, cio.env, dotenv(), cio.stderr); err != nil {
		if errors.Is(err, flagHelp) {
			return flag.ErrHelp
		}
		return usageError{err}
	}
	settings, err := effectiveSettings(serveArgs, cio.env, dotenv())
	if err != nil {
		return usageError{err}
	}
	if asJSON {
		enc := json.NewEncoder(cio.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(settings)
	}
	for _, s := range settings {
		fmt.Fprintf(cio.stdout, "%s=%s  # %s\n", s.Name, quoteIfNeeded(s.Value), s.Source)
	}
	return nil
}

// effectiveSettings resolves each setting's text with parseConfig's
// precedence (default < .env < environment < flag), redacted. Call it only
// after parseConfig accepted the same inputs.
func effectiveSettings(args []string, environ func(string) (string, bool), dotenv io.Reader) ([]effectiveSetting, error) {
	var c config
	settings := c.settings()
	fileVals := map[string]string{}
	if dotenv != nil {
		var err error
		if fileVals, err = readDotenv(dotenv); err != nil {
			return nil, err
		}
	}
	fs := flag.NewFlagSet("relay config", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	flagVals := make([]*string, len(settings))
	for i, s := range settings {
		flagVals[i] = fs.String(s.flagName(), "", "")
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	out := make([]effectiveSetting, len(settings))
	for i, s := range settings {
		e := effectiveSetting{Name: s.env, Flag: "--" + s.flagName(), Value: s.def, Source: "default"}
		if v, ok := fileVals[s.env]; ok {
			e.Value, e.Source = v, ".env"
		}
		if v, ok := environ(s.env); ok {
			e.Value, e.Source = v, "env"
		}
		if given[s.flagName()] {
			e.Value, e.Source = *flagVals[i], "flag"
		}
		e.Value = redact(s.env, strings.TrimSpace(e.Value))
		out[i] = e
	}
	return out, nil
}

// redacted replaces a secret's value.
const redacted = "<redacted>"

// redact hides a secret setting's value (an empty one stays empty, so one
// can see it is unset) and the password in URL-like values.
func redact(name, value string) string {
	if value == "" {
		return ""
	}
	upper := strings.ToUpper(name)
	for _, part := range []string{"SECRET", "PASSWORD", "TOKEN", "CREDENTIAL"} {
		if strings.Contains(upper, part) {
			return redacted
		}
	}
	for _, word := range strings.Split(upper, "_") { // KEY as a word: not VALKEY
		if word == "KEY" || word == "KEYS" {
			return redacted
		}
	}
	parts := strings.Split(value, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			if _, hasPassword := u.User.Password(); hasPassword {
				u.User = url.UserPassword(u.User.Username(), "xxxxx")
				parts[i] = strings.Replace(u.String(), "xxxxx", redacted, 1)
			}
		}
	}
	return strings.Join(parts, ",")
}

// quoteIfNeeded quotes values with spaces or # so the output reads back as
// a .env file.
func quoteIfNeeded(v string) string {
	if strings.ContainsAny(v, " \t#\"'") {
		return `"` + strings.ReplaceAll(v, `"`, `'`) + `"`
	}
	return v
}

// basePolicy is the process-wide policy of cfg: what a topic gets for every
// field no rule of the policy file sets (policy.Set.Resolve's base). Every
// field is set. AnonymousRead is what the server's base holds: false with
// auth on (a read needs a credential unless a rule allows it), true without
// it (every read is anonymous then).
func basePolicy(cfg *config) policy.Policy {
	a := cfg.Actors // parseConfig set every field from the settings table
	retention, maxMessages := cfg.Store.Retention, cfg.Store.MaxMessages
	slow := policy.SlowConsumer(a.SlowConsumerPolicy)
	anonymous := !cfg.Auth.Enabled()
	hot := a.HotTierRetention
	if retention > 0 && retention < hot { // as actors.Config's defaults cap it
		hot = retention
	}
	return policy.Policy{
		Retention:             &retention,
		MaxMessages:           &maxMessages,
		HotRetention:          &hot,
		MailboxSize:           &a.TopicMailboxSize,
		MaxBatch:              &a.MaxBatch,
		ConnectionQueueSize:   &a.ConnectionQueueSize,
		ConnectionQueueBytes:  &a.ConnectionQueueBytes,
		SlowConsumer:          &slow,
		SupervisorMaxRestarts: &a.Supervisor.MaxRestarts,
		SupervisorWindow:      &a.Supervisor.Window,
		SupervisorBackoff:     &a.Supervisor.Backoff,
		AnonymousRead:         &anonymous,
	}
}
