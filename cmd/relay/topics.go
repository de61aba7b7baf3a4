package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	goio "io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pulsar-relay/relay/policy"
)

// topicsCmd is `relay topics [--output table|json]`: the admin topic table
// (GET /api/v1/admin/topics, shape policy.TopicsView). On a terminal it
// prints a table; piped, one JSON object per topic per line.
func topicsCmd(ctx context.Context, args []string, io cliIO) int {
	return finish(io.stderr, "topics", topics(ctx, args, io))
}

func topics(ctx context.Context, args []string, io cliIO) error {
	fs := flag.NewFlagSet("relay topics", flag.ContinueOnError)
	fs.SetOutput(io.stderr)
	cf := addClientFlags(fs, io)
	output := fs.String("output", "", "table or json (default: table on a terminal, json lines when piped)")
	if _, err := parseArgs(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	c, err := newClient(cf)
	if err != nil {
		return usageError{err}
	}
	defer c.close()
	var view policy.TopicsView
	if err := c.getJSON(ctx, "/api/v1/admin/topics", &view); err != nil {
		return err
	}
	sort.Slice(view.Topics, func(i, j int) bool { return view.Topics[i].Topic < view.Topics[j].Topic })
	if !wantTable(*output, io) {
		enc := json.NewEncoder(io.stdout)
		for _, t := range view.Topics {
			if err := enc.Encode(t); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(io.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tSUBSCRIBERS\tPUB/S\tDELIVER/S\tLAST ID\tRESTARTS\tMAILBOX\tQUEUE\tSLOW CONSUMER")
	for _, t := range view.Topics {
		fmt.Fprintf(tw, "%s\t%s\t%.1f\t%.1f\t%s\t%d\t%s\t%s\t%s\n", t.Topic, subscriberSummary(t.Subscribers),
			t.PublishesPerSec, t.DeliveriesPerSec, orDash(t.LastID), t.Restarts,
			orDash(t.Policy.Value("mailbox_size")), orDash(t.Policy.Value("connection_queue_size")),
			orDash(strings.Trim(t.Policy.Value("slow_consumer"), `"`)))
	}
	return tw.Flush()
}

func wantTable(output string, io cliIO) bool {
	switch output {
	case "table":
		return true
	case "json":
		return false
	}
	f, ok := io.stdout.(*os.File)
	return ok && isTerminal(f)
}

// subscriberSummary is "3 (websocket 2, sse 1)".
func subscriberSummary(by map[string]int) string {
	total := 0
	var parts []string
	for transport, n := range by {
		total += n
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", transport, n))
		}
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%s)", total, strings.Join(parts, ", "))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// policiesCmd is `relay policies [--topic T | --apply FILE | --check FILE]`:
// show the policy set in force (GET /api/v1/admin/policies), one topic's
// effective policy (?topic=T), replace the set (PUT, after checking the
// file locally: a bad file never leaves the machine), or only check a file.
func policiesCmd(ctx context.Context, args []string, io cliIO) int {
	return finish(io.stderr, "policies", policies(ctx, args, io))
}

func policies(ctx context.Context, args []string, io cliIO) error {
	fs := flag.NewFlagSet("relay policies", flag.ContinueOnError)
	fs.SetOutput(io.stderr)
	cf := addClientFlags(fs, io)
	topic := fs.String("topic", "", "show this topic's effective policy")
	apply := fs.String("apply", "", "replace the relay's policies with this YAML or JSON file")
	check := fs.String("check", "", "only validate this file (no relay needed); with --topic, show what that topic would get under it and this machine's serve configuration")
	if _, err := parseArgs(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if *check != "" {
		set, err := policy.LoadFile(*check)
		if err != nil {
			return usageError{err}
		}
		if *topic == "" {
			fmt.Fprintf(io.stdout, "%s: %d rules, valid\n", *check, set.Len())
			return nil
		}
		// What the topic would run with: this file over the configuration
		// `relay serve` would read here (.env, environment).
		var dotenv goio.Reader
		if data, err := os.ReadFile(".env"); err == nil {
			dotenv = bytes.NewReader(data)
		}
		cfg, err := parseConfig(nil, io.env, dotenv, io.stderr)
		if err != nil {
			return usageError{err}
		}
		view := policy.TopicPolicyView{Topic: *topic, Matched: []string{}, Policy: set.Resolve(*topic, basePolicy(cfg))}
		for _, r := range set.Match(*topic) {
			view.Matched = append(view.Matched, r.Pattern)
		}
		enc := json.NewEncoder(io.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(view)
	}
	c, err := newClient(cf)
	if err != nil {
		return usageError{err}
	}
	defer c.close()
	var out any
	switch {
	case *apply != "":
		data, err := os.ReadFile(*apply)
		if err != nil {
			return usageError{err}
		}
		format := policy.FormatOf(*apply)
		if _, err := policy.Parse(data, format); err != nil {
			return usageError{fmt.Errorf("%s: %w", *apply, err)}
		}
		ct := "application/yaml"
		if format == policy.JSON || (format == policy.Auto && strings.HasPrefix(strings.TrimSpace(string(data)), "{")) {
			ct = "application/json"
		}
		_, body, err := c.doRetry(ctx, retryPolicy{attempts: 3, first: 200 * time.Millisecond, max: 2 * time.Second},
			request{method: http.MethodPut, path: "/api/v1/admin/policies", contentType: ct, body: data}, nil)
		if err != nil {
			return err
		}
		var view policy.SetView
		if err := json.Unmarshal(body, &view); err != nil {
			return fmt.Errorf("unexpected answer: %w", err)
		}
		out = view
	case *topic != "":
		var view policy.TopicPolicyView
		if err := c.getJSON(ctx, "/api/v1/admin/policies?topic="+url.QueryEscape(*topic), &view); err != nil {
			return err
		}
		out = view
	default:
		var view policy.SetView
		if err := c.getJSON(ctx, "/api/v1/admin/policies", &view); err != nil {
			return err
		}
		out = view
	}
	enc := json.NewEncoder(io.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
