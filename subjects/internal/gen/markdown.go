package main

import (
	"bytes"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/bridgeworks/bridge/platforms"
	"github.com/bridgeworks/bridge/subjects"
)

// Hand-written Markdown files hold generated tables between markers:
//
//	<!-- gen:NAME:begin -->
//
//	… written by the generator …
//
//	<!-- gen:NAME:end -->
//
// The text between a pair is replaced by block NAME; everything else is
// left as written. A marker naming no block, a pair out of order, or a
// block a file must hold (markdownFiles) and does not, is an error.

// markdownFiles are the files with generated blocks, by slash path under
// the repository root, with the blocks each must hold.
var markdownFiles = map[string][]string{
	"docs/contract.md": {"kinds", "platforms", "envelope", "lifecycle", "headers", "result", "errors", "workreply", "stores"},
	"README.md":        {"kinds", "lifecycle-names"},
	"docs/workers.md":  {"lifecycle-names", "errors"},
}

const markerOpen, markerClose = "<!-- gen:", " -->"

// blocks renders every block, by name.
func blocks() map[string]string {
	return map[string]string{
		"kinds":           kindsTable(),
		"platforms":       platformsTable(),
		"envelope":        fieldsTable(reflect.TypeFor[subjects.Event]()),
		"lifecycle":       lifecycleTable(),
		"lifecycle-names": lifecycleNames(),
		"headers":         headersTable(),
		"result":          fieldsTable(reflect.TypeFor[subjects.Result]()) + "\n" + fieldsTable(reflect.TypeFor[subjects.Error]()),
		"errors":          errorsTable(),
		"workreply":       fieldsTable(reflect.TypeFor[subjects.WorkReply]()) + "\n" + fieldsTable(reflect.TypeFor[subjects.CommandSpec]()),
		"stores":          storesTable(),
	}
}

// fill replaces the blocks of src; want are the blocks it must hold.
func fill(src []byte, want []string, all map[string]string) ([]byte, error) {
	var out bytes.Buffer
	seen := map[string]bool{}
	rest := src
	for {
		i := bytes.Index(rest, []byte(markerOpen))
		if i < 0 {
			out.Write(rest)
			break
		}
		name, end, err := marker(rest[i:], "begin")
		if err != nil {
			return nil, err
		}
		block, ok := all[name]
		if !ok {
			return nil, fmt.Errorf("marker gen:%s: no such block (known: %s)", name, strings.Join(slices.Sorted(maps.Keys(all)), ", "))
		}
		if seen[name] {
			return nil, fmt.Errorf("block gen:%s appears twice", name)
		}
		seen[name] = true
		closing := []byte(markerOpen + name + ":end" + markerClose)
		j := bytes.Index(rest[i+end:], closing)
		if j < 0 {
			return nil, fmt.Errorf("block gen:%s has no end marker", name)
		}
		if k := bytes.Index(rest[i+end:i+end+j], []byte(markerOpen)); k >= 0 {
			return nil, fmt.Errorf("block gen:%s: another marker before its end", name)
		}
		out.Write(rest[:i+end])
		out.WriteString("\n\n" + block + "\n") // blank lines: Markdown ends the block before a marker
		out.Write(closing)
		rest = rest[i+end+j+len(closing):]
	}
	for _, w := range want {
		if !seen[w] {
			return nil, fmt.Errorf("block gen:%s is missing (add <!-- gen:%s:begin --> and <!-- gen:%s:end -->)", w, w, w)
		}
	}
	return out.Bytes(), nil
}

// marker reads the marker at the start of b, which must be of kind, and
// returns its name and length.
func marker(b []byte, kind string) (string, int, error) {
	end := bytes.Index(b, []byte(markerClose))
	if end < 0 {
		return "", 0, fmt.Errorf("marker %.40q is not closed", b)
	}
	inner := string(b[len(markerOpen):end])
	name, k, ok := strings.Cut(inner, ":")
	if !ok || k != kind {
		return "", 0, fmt.Errorf("marker %q: want gen:<name>:%s", inner, kind)
	}
	return name, end + len(markerClose), nil
}

// table renders a Markdown table.
func table(head []string, rows [][]string) string {
	var b strings.Builder
	line := func(cells []string) {
		b.WriteString("|")
		for _, c := range cells {
			b.WriteString(" " + cell(c) + " |")
		}
		b.WriteString("\n")
	}
	line(head)
	sep := make([]string, len(head))
	for i := range sep {
		sep[i] = "---"
	}
	line(sep)
	for _, r := range rows {
		line(r)
	}
	return b.String()
}

// cell escapes text for a table cell: "|" everywhere, and "<", ">" outside
// code spans, so "<platform>" is not taken for an HTML tag.
func cell(s string) string {
	var b strings.Builder
	code := false
	for _, r := range s {
		switch {
		case r == '|':
			b.WriteString(`\|`)
		case r == '`':
			code = !code
			b.WriteRune(r)
		case !code && r == '<':
			b.WriteString("&lt;")
		case !code && r == '>':
			b.WriteString("&gt;")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func code(s string) string { return "`" + s + "`" }

func kindsTable() string {
	var rows [][]string
	for _, k := range subjects.Kinds() {
		rows = append(rows, []string{code(k.Kind.Pattern()), k.Direction, k.Transport, k.What})
	}
	return table([]string{"subject", "direction", "transport", "what"}, rows)
}

func platformsTable() string {
	reg := platforms.All()
	var rows [][]string
	for _, name := range slices.Sorted(maps.Keys(reg)) {
		f := reg[name]
		var secrets []string
		for _, s := range f.Secrets {
			secrets = append(secrets, code(s+"_env")+" / "+code(s+"_file"))
		}
		if len(secrets) == 0 {
			secrets = []string{"—"}
		}
		rows = append(rows, []string{code(name), code(f.Platform), strings.Join(secrets, ", ")})
	}
	return table([]string{"config `platform`", "subject token", "secrets"}, rows)
}

func lifecycleTable() string {
	var rows [][]string
	for _, l := range subjects.Lifecycles() {
		rows = append(rows, []string{code(string(l.Name)), l.Description})
	}
	return table([]string{"event", "meaning"}, rows)
}

// lifecycleNames is the list of lifecycle names as one line.
func lifecycleNames() string {
	var names []string
	for _, l := range subjects.Lifecycles() {
		names = append(names, code(string(l.Name)))
	}
	return strings.Join(names, ", ") + ".\n"
}

func headersTable() string {
	var rows [][]string
	for _, h := range subjects.Headers() {
		rows = append(rows, []string{code(h.Name), h.On, h.What})
	}
	return table([]string{"header", "on", "meaning"}, rows)
}

func errorsTable() string {
	var rows [][]string
	for _, c := range subjects.ErrorCodes() {
		rows = append(rows, []string{code(c.Code), c.Retryable, c.What})
	}
	return table([]string{"`error.code`", "`retryable`", "meaning"}, rows)
}

func storesTable() string {
	var rows [][]string
	for _, s := range subjects.Stores() {
		rows = append(rows, []string{code(s.Name(subjects.DefaultPrefix)), s.Type, s.What, s.Kept})
	}
	return table([]string{"name (default prefix)", "type", "holds", "kept for"}, rows)
}

// fieldsTable lists the JSON fields of a subjects type with their
// descriptions from docs (the same text as the JSON Schemas).
func fieldsTable(t reflect.Type) string {
	var rows [][]string
	for f := range t.Fields() {
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		presence := "always"
		if strings.Contains(opts, "omitempty") {
			presence = "when set"
		}
		rows = append(rows, []string{code(name), jsonType(f.Type), presence, docs[t.Name()+"."+name].text})
	}
	return table([]string{"`" + t.Name() + "` field", "type", "present", "meaning"}, rows)
}

func jsonType(t reflect.Type) string {
	switch {
	case t == timeType:
		return "string (RFC 3339)"
	case t == rawType:
		return "JSON"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int32, reflect.Int64:
		return "integer"
	case reflect.Pointer:
		return jsonType(t.Elem())
	case reflect.Slice:
		return "array of " + jsonType(t.Elem())
	case reflect.Struct:
		return "object (" + t.Name() + ")"
	}
	return t.String()
}
