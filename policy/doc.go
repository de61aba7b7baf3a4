// Package policy is per-topic tuning as plain data: a Set of rules, loaded
// from a YAML or JSON file (RELAY_POLICIES_FILE) or an admin PUT, maps topic
// patterns to a Policy whose unset fields fall back to the process-wide
// settings.
//
// Patterns are exact topic names ("jobs.urgent"), prefix patterns ending in
// one "*" ("jobs.*"), or "*" alone. For each field the most specific matching
// rule that sets it wins (exact > longest prefix > "*"), and a field no
// matching rule sets takes the base (process-wide) value: see Set.Resolve.
//
// A Set is validated as a whole when it is parsed: a bad document yields
// errors naming the line and field (see FieldError) and no Set, so a caller
// that keeps its old Set on error never runs half a file. A Set is immutable
// and safe for concurrent use.
//
// The package is pure data: it imports messages, the standard library and a
// YAML parser, never actors, gateway or net/http. The shapes of the admin
// routes that show and replace policies are in admin.go.
package policy
