package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// Format is the syntax of a policy document.
type Format int

// Formats. Auto takes a document whose first non-blank character is "{" as
// JSON and anything else as YAML.
const (
	Auto Format = iota
	JSON
	YAML
)

// MaxDocumentSize bounds a policy document (file or admin PUT body).
const MaxDocumentSize = 1 << 20

// FormatOf picks the format from a file name (.json, .yaml, .yml) or a
// Content-Type (application/json, application/yaml, text/yaml, ...); Auto
// when it cannot tell.
func FormatOf(nameOrContentType string) Format {
	s := strings.ToLower(nameOrContentType)
	if mt, _, ok := strings.Cut(s, ";"); ok {
		s = strings.TrimSpace(mt)
	}
	switch {
	case strings.HasSuffix(s, ".json"), s == "application/json", strings.HasSuffix(s, "+json"):
		return JSON
	case strings.HasSuffix(s, ".yaml"), strings.HasSuffix(s, ".yml"), strings.HasSuffix(s, "/yaml"),
		strings.HasSuffix(s, "/x-yaml"), strings.HasSuffix(s, "+yaml"):
		return YAML
	}
	return Auto
}

// LoadFile reads and parses the policy file at path (format from its
// extension, else sniffed). On any error it returns no Set: the caller keeps
// the one it has. Errors in the document wrap messages.ErrInvalid and name
// the file, line and field.
func LoadFile(path string) (*Set, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policies: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxDocumentSize+1))
	if err != nil {
		return nil, fmt.Errorf("policies: read %s: %w", path, err)
	}
	set, err := Parse(data, FormatOf(filepath.Base(path)))
	if err != nil {
		return nil, fmt.Errorf("policies %s: %w", path, err)
	}
	return set, nil
}

// Parse validates a whole policy document and returns its Set, or every
// problem found (up to 20, each a *FieldError naming the line and field,
// joined; they wrap messages.ErrInvalid) and no Set. An empty document is an
// empty Set.
//
// The document is an object with "topics", a map of topic pattern to policy
// (file keys in FieldNames), and optionally "version": 1.
func Parse(data []byte, format Format) (*Set, error) {
	if len(data) > MaxDocumentSize {
		return nil, joinErrors([]*FieldError{{Msg: fmt.Sprintf("document is over %d bytes", MaxDocumentSize)}})
	}
	data = bytes.TrimPrefix(data, []byte("\ufeff")) // a byte-order mark (Windows editors)
	if format == Auto {
		format = YAML
		if t := bytes.TrimLeft(data, " \t\r\n"); len(t) > 0 && t[0] == '{' {
			format = JSON
		}
	}
	var doc rawDoc
	if format == JSON {
		doc = parseJSONDoc(data)
	} else {
		doc = parseYAMLDoc(data)
	}
	if len(doc.errs) > 0 {
		return nil, joinErrors(doc.errs)
	}
	set, errs := build(doc.rules)
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	return set, nil
}

// rawDoc is a document before validation: its rules with the line of each
// pattern and field, whichever syntax it came in.
type rawDoc struct {
	rules []rawRule
	errs  []*FieldError
}

type rawRule struct {
	pattern string
	line    int
	fields  []rawField
}

type rawField struct {
	name string
	line int
	val  scalar
}

func (d *rawDoc) fail(line int, pattern, field, format string, args ...any) {
	d.errs = append(d.errs, &FieldError{Line: line, Pattern: pattern, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// build validates the patterns and fields of every rule.
func build(rules []rawRule) (*Set, []*FieldError) {
	var errs []*FieldError
	set := newSet()
	seen := map[string]int{}
	for _, r := range rules {
		kind, err := checkPattern(r.pattern)
		if err != nil {
			errs = append(errs, &FieldError{Line: r.line, Pattern: r.pattern, Msg: err.Error()})
			continue
		}
		if first, dup := seen[r.pattern]; dup {
			errs = append(errs, &FieldError{Line: r.line, Pattern: r.pattern, Msg: fmt.Sprintf("pattern already defined on line %d", first)})
			continue
		}
		seen[r.pattern] = r.line
		var p Policy
		given := map[string]bool{}
		for _, f := range r.fields {
			spec, ok := fieldNamed(f.name)
			switch {
			case !ok:
				errs = append(errs, &FieldError{Line: f.line, Pattern: r.pattern, Field: f.name,
					Msg: "unknown field; known: " + strings.Join(FieldNames(), ", ")})
				continue
			case given[f.name]:
				errs = append(errs, &FieldError{Line: f.line, Pattern: r.pattern, Field: f.name, Msg: "field given twice"})
				continue
			}
			given[f.name] = true
			if err := spec.assign(&p, f.val); err != nil {
				errs = append(errs, &FieldError{Line: f.val.line, Pattern: r.pattern, Field: f.name, Msg: err.Error()})
			}
		}
		set.add(Rule{Pattern: r.pattern, Line: r.line, Policy: p}, kind)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	set.sort()
	return set, nil
}

// ---- YAML ----

func parseYAMLDoc(data []byte) rawDoc {
	var doc rawDoc
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		doc.fail(yamlErrorLine(err), "", "", "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		return doc
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		return doc // empty document: no rules
	}
	top := deref(root.Content[0])
	if top.Kind == yaml.ScalarNode && top.ShortTag() == "!!null" {
		return doc
	}
	if top.Kind != yaml.MappingNode {
		doc.fail(top.Line, "", "", "the document must be a mapping with \"topics\"")
		return doc
	}
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], deref(top.Content[i+1])
		switch k.Value {
		case "version":
			if v.Kind != yaml.ScalarNode || v.Value != "1" {
				doc.fail(v.Line, "", "version", "want 1")
			}
		case "topics":
			doc.yamlTopics(v)
		default:
			doc.fail(k.Line, "", k.Value, "unknown key; want \"topics\" (and optionally \"version\")")
		}
	}
	return doc
}

func (doc *rawDoc) yamlTopics(v *yaml.Node) {
	if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!null" {
		return
	}
	if v.Kind != yaml.MappingNode {
		doc.fail(v.Line, "", "topics", "want a mapping of topic pattern to policy")
		return
	}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, rv := v.Content[i], deref(v.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			doc.fail(k.Line, "", "topics", "a topic pattern must be a string")
			continue
		}
		rule := rawRule{pattern: k.Value, line: k.Line}
		switch {
		case rv.Kind == yaml.ScalarNode && rv.ShortTag() == "!!null":
		case rv.Kind != yaml.MappingNode:
			doc.fail(rv.Line, k.Value, "", "want a mapping of policy fields")
			continue
		case len(rv.Content)/2 > len(fields):
			// More than a valid rule can hold. Checked before the fields
			// are copied: aliases of one large mapping would otherwise
			// grow a small document quadratically.
			doc.fail(rv.Line, k.Value, "", "at most %d fields per pattern", len(fields))
			continue
		default:
			for j := 0; j+1 < len(rv.Content); j += 2 {
				fk, fv := rv.Content[j], deref(rv.Content[j+1])
				if fk.ShortTag() == "!!merge" {
					doc.fail(fk.Line, k.Value, "<<", "YAML merge keys are not supported; repeat the fields")
					continue
				}
				if fk.Kind != yaml.ScalarNode {
					doc.fail(fk.Line, k.Value, "", "a field name must be a string")
					continue
				}
				if fv.Kind != yaml.ScalarNode {
					doc.fail(fv.Line, k.Value, fk.Value, "want a single value, not a list or mapping")
					continue
				}
				rule.fields = append(rule.fields, rawField{name: fk.Value, line: fk.Line, val: yamlScalar(fv)})
			}
		}
		doc.rules = append(doc.rules, rule)
	}
}

func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func yamlScalar(n *yaml.Node) scalar {
	s := scalar{text: n.Value, line: n.Line}
	switch n.ShortTag() {
	case "!!int", "!!float":
		s.typ = scalarNumber
	case "!!bool":
		s.typ = scalarBool
		s.text = strings.ToLower(n.Value)
	case "!!null":
		s.typ = scalarNull
	default:
		s.typ = scalarString
	}
	return s
}

// yamlErrorLine finds "line N" in a yaml.v3 error (its only line report).
func yamlErrorLine(err error) int {
	var te *yaml.TypeError
	msg := err.Error()
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	if _, after, ok := strings.Cut(msg, "line "); ok {
		n := 0
		for _, c := range after {
			if c < '0' || c > '9' {
				break
			}
			n = n*10 + int(c-'0')
			if n > 1<<30 {
				return 0
			}
		}
		return n
	}
	return 0
}

// ---- JSON ----

// jsonReader walks a JSON document token by token, so each key and value is
// known with its line (computed from the decoder's offset).
type jsonReader struct {
	data     []byte
	newlines []int // offsets of '\n', ascending
	dec      *json.Decoder
	doc      *rawDoc
}

func newJSONReader(data []byte, doc *rawDoc) *jsonReader {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	r := &jsonReader{data: data, dec: dec, doc: doc}
	for i, c := range data {
		if c == '\n' {
			r.newlines = append(r.newlines, i)
		}
	}
	return r
}

// line is the 1-based line of byte offset off.
func (r *jsonReader) line(off int64) int {
	return 1 + sort.SearchInts(r.newlines, int(min(max(off, 0), int64(len(r.data)))))
}

// token reads the next token and the line it ends on; a syntax error is
// recorded with its line and ok is false.
func (r *jsonReader) token() (tok json.Token, line int, ok bool) {
	tok, err := r.dec.Token()
	if err != nil {
		off := r.dec.InputOffset()
		var se *json.SyntaxError
		if errors.As(err, &se) {
			off = se.Offset
		}
		msg := err.Error()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			msg, off = "unexpected end of JSON", int64(len(r.data))
		}
		r.doc.fail(r.line(off), "", "", "%s", msg)
		return nil, 0, false
	}
	end := r.dec.InputOffset()
	if end > 0 {
		end-- // the token's last byte, not the byte after it
	}
	return tok, r.line(end), true
}

// skip consumes the rest of a value whose first token was tok.
func (r *jsonReader) skip(tok json.Token) bool {
	d, ok := tok.(json.Delim)
	if !ok || (d != '{' && d != '[') {
		return true
	}
	for depth := 1; depth > 0; {
		t, _, ok := r.token()
		if !ok {
			return false
		}
		if d, isDelim := t.(json.Delim); isDelim {
			if d == '{' || d == '[' {
				depth++
			} else {
				depth--
			}
		}
	}
	return true
}

// object calls fn for each key of an object whose '{' was just read; fn
// must consume the value. It returns false after a syntax error. Repeated
// keys are passed on: build reports repeated patterns and fields.
func (r *jsonReader) object(fn func(key string, keyLine int) bool) bool {
	for r.dec.More() {
		t, line, ok := r.token()
		if !ok {
			return false
		}
		key, _ := t.(string)
		if !fn(key, line) {
			return false
		}
	}
	_, _, ok := r.token() // '}'
	return ok
}

func jsonScalar(tok json.Token, line int) (scalar, bool) {
	switch v := tok.(type) {
	case string:
		return scalar{text: v, typ: scalarString, line: line}, true
	case json.Number:
		return scalar{text: v.String(), typ: scalarNumber, line: line}, true
	case bool:
		return scalar{text: fmt.Sprint(v), typ: scalarBool, line: line}, true
	case nil:
		return scalar{typ: scalarNull, line: line}, true
	}
	return scalar{line: line}, false
}

func parseJSONDoc(data []byte) rawDoc {
	var doc rawDoc
	r := newJSONReader(data, &doc)
	t, line, ok := r.token()
	if !ok {
		return doc
	}
	if t != json.Delim('{') {
		doc.fail(line, "", "", "the document must be an object with \"topics\"")
		return doc
	}
	ok = r.object(func(key string, keyLine int) bool {
		t, line, ok := r.token()
		if !ok {
			return false
		}
		switch key {
		case "version":
			if n, isNum := t.(json.Number); !isNum || n.String() != "1" {
				doc.fail(line, "", "version", "want 1")
			}
			return r.skip(t)
		case "topics":
			if t == nil {
				return true
			}
			if t != json.Delim('{') {
				doc.fail(line, "", "topics", "want an object of topic pattern to policy")
				return r.skip(t)
			}
			return r.object(func(pattern string, patLine int) bool {
				return r.rule(pattern, patLine)
			})
		default:
			doc.fail(keyLine, "", key, "unknown key; want \"topics\" (and optionally \"version\")")
			return r.skip(t)
		}
	})
	if !ok {
		return doc
	}
	if _, err := r.dec.Token(); !errors.Is(err, io.EOF) {
		doc.fail(r.line(r.dec.InputOffset()), "", "", "unexpected data after the document")
	}
	return doc
}

// rule reads one pattern's policy object.
func (r *jsonReader) rule(pattern string, line int) bool {
	rule := rawRule{pattern: pattern, line: line}
	t, vline, ok := r.token()
	if !ok {
		return false
	}
	switch {
	case t == nil:
	case t != json.Delim('{'):
		r.doc.fail(vline, pattern, "", "want an object of policy fields")
		return r.skip(t)
	default:
		ok = r.object(func(name string, nameLine int) bool {
			t, vl, ok := r.token()
			if !ok {
				return false
			}
			v, isScalar := jsonScalar(t, vl)
			if !isScalar {
				r.doc.fail(vl, pattern, name, "want a single value, not a list or object")
				return r.skip(t)
			}
			rule.fields = append(rule.fields, rawField{name: name, line: nameLine, val: v})
			return true
		})
		if !ok {
			return false
		}
	}
	r.doc.rules = append(r.doc.rules, rule)
	return true
}

// parseJSONRule decodes one policy object (Policy.UnmarshalJSON).
func parseJSONRule(data []byte) (Policy, []*FieldError) {
	var doc rawDoc
	r := newJSONReader(data, &doc)
	if !r.rule("", 1) {
		return Policy{}, doc.errs
	}
	if _, err := r.dec.Token(); !errors.Is(err, io.EOF) {
		doc.fail(r.line(r.dec.InputOffset()), "", "", "unexpected data after the policy")
	}
	if len(doc.errs) > 0 {
		return Policy{}, doc.errs
	}
	var p Policy
	var errs []*FieldError
	for _, f := range doc.rules[0].fields {
		spec, ok := fieldNamed(f.name)
		if !ok {
			errs = append(errs, &FieldError{Line: f.line, Field: f.name, Msg: "unknown field"})
			continue
		}
		if err := spec.assign(&p, f.val); err != nil {
			errs = append(errs, &FieldError{Line: f.val.line, Field: f.name, Msg: err.Error()})
		}
	}
	return p, errs
}
