package main

import (
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/connector/band"
	"github.com/bridgeworks/bridge/dispatch"
	"github.com/bridgeworks/bridge/subjects"
)

const docsDir = "../../../docs"

// TestGeneratedFilesUpToDate regenerates in memory and compares with docs/.
func TestGeneratedFilesUpToDate(t *testing.T) {
	t.Parallel()
	files, err := generate()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range sortedKeys(files) {
		disk, err := os.ReadFile(filepath.Join(docsDir, filepath.FromSlash(name)))
		if err != nil {
			t.Errorf("docs/%s: %v (run go generate ./...)", name, err)
			continue
		}
		if !bytes.Equal(disk, files[name]) {
			t.Errorf("docs/%s is stale: run go generate ./...", name)
		}
	}
}

// kindConstants reads the Kind constants declared in package subjects.
func kindConstants(t *testing.T) []subjects.Kind {
	t.Helper()
	fset := token.NewFileSet()
	paths, err := filepath.Glob("../../*.go")
	if err != nil {
		t.Fatal(err)
	}
	var kinds []subjects.Kind
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			for _, s := range g.Specs {
				vs := s.(*ast.ValueSpec)
				if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Kind" {
					continue
				}
				for _, v := range vs.Values {
					lit, ok := v.(*ast.BasicLit)
					if !ok {
						t.Fatalf("%s: Kind constant that is not a literal", p)
					}
					s, _ := strconv.Unquote(lit.Value)
					kinds = append(kinds, subjects.Kind(s))
				}
			}
		}
	}
	if len(kinds) == 0 {
		t.Fatal("no Kind constants found in package subjects")
	}
	return kinds
}

var placeholder = regexp.MustCompile(`\{([a-z]+)\}`)

// TestAsyncAPIMatchesSubjects parses docs/asyncapi.yaml and checks it
// against the subjects package: one channel per Kind, addresses that build
// the same subjects as Subject.String, parameters that match the address,
// and references that resolve.
func TestAsyncAPIMatchesSubjects(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile(filepath.Join(docsDir, "asyncapi.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := parseYAML(string(src))
	if err != nil {
		t.Fatalf("docs/asyncapi.yaml does not parse: %v", err)
	}
	var want any
	b, _ := json.Marshal(asyncAPI())
	_ = json.Unmarshal(b, &want)
	if !reflect.DeepEqual(parsed, want) {
		t.Fatal("docs/asyncapi.yaml does not hold the generator's document (run go generate ./...)")
	}
	doc := parsed.(map[string]any)
	if doc["asyncapi"] != "3.0.0" {
		t.Errorf("asyncapi version %v", doc["asyncapi"])
	}
	chans := doc["channels"].(map[string]any)
	ops := doc["operations"].(map[string]any)
	sample := map[string]string{"prefix": "acme.prod", "platform": "band", "conn": "support-bot", "room": subjects.EscapeToken("a.b~c"),
		"event": "message_created", "command": "send_message", "name": "send_message"}
	for _, k := range kindConstants(t) {
		ch, ok := chans[string(k)].(map[string]any)
		if !ok {
			t.Errorf("no channel for subject kind %q", k)
			continue
		}
		addr := ch["address"].(string)
		var inAddr []string
		for _, m := range placeholder.FindAllStringSubmatch(addr, -1) {
			inAddr = append(inAddr, m[1])
		}
		var params []string
		for p := range ch["parameters"].(map[string]any) {
			params = append(params, p)
		}
		if slices.Sort(params); !slices.Equal(params, slices.Sorted(slices.Values(inAddr))) {
			t.Errorf("channel %s: parameters %v, address %q", k, params, addr)
		}
		built := placeholder.ReplaceAllStringFunc(addr, func(p string) string { return sample[p[1:len(p)-1]] })
		s, err := subjects.Parse("acme.prod", built)
		if err != nil {
			t.Errorf("channel %s: address %q gives %q, which subjects.Parse rejects: %v", k, addr, built, err)
			continue
		}
		if s.Kind != k || s.String() != built || (k.HasRoom() && s.Room != "a.b~c") {
			t.Errorf("channel %s: %q parsed as %+v", k, built, s)
		}
		used := false
		for _, op := range ops {
			if op.(map[string]any)["channel"].(map[string]any)["$ref"] == "#/channels/"+string(k) {
				used = true
			}
		}
		if !used {
			t.Errorf("channel %s has no operation", k)
		}
	}
	if n := len(kindConstants(t)) + len(replies); len(chans) != n {
		t.Errorf("%d channels, want %d (one per kind and reply)", len(chans), n)
	}
	checkRefs(t, doc, doc)
}

// checkRefs resolves every $ref: local pointers in doc, files beside it.
func checkRefs(t *testing.T, doc, v any) {
	t.Helper()
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			checkRefs(t, doc, e)
		}
	case map[string]any:
		for k, e := range x {
			r, ok := e.(string)
			if k != "$ref" || !ok {
				checkRefs(t, doc, e)
				continue
			}
			if file, ok := strings.CutPrefix(r, "./"); ok {
				b, err := os.ReadFile(filepath.Join(docsDir, file))
				if err != nil || !json.Valid(b) {
					t.Errorf("$ref %s: not a JSON file: %v", r, err)
				}
				continue
			}
			cur := doc
			for _, part := range strings.Split(strings.TrimPrefix(r, "#/"), "/") {
				m, _ := cur.(map[string]any)
				if cur, ok = m[part]; !ok {
					t.Errorf("$ref %s does not resolve", r)
					break
				}
			}
		}
	}
}

// TestSchemasCoverTheTypes marshals filled-in values of each type: every
// key they produce is a schema property, and every required property is
// there.
func TestSchemasCoverTheTypes(t *testing.T) {
	t.Parallel()
	ev := subjects.NewEvent("band", "c1", "r", "message_created", "k", time.Now(), json.RawMessage(`{"id":"k"}`))
	ev.DataRef, ev.DataBucket, ev.DataObject, ev.DataSize, ev.DataSHA256 = "u", "b", "o", 1, "s" // never with data, but every field filled in
	seq := int64(0)
	ev.CommandID, ev.Seq = "cmd", &seq
	ev.Transient = true
	cases := map[string]any{
		"event.schema.json": ev,
		"result.schema.json": subjects.Result{CommandID: "i", Command: "send_message", OK: false, Status: 422, Data: json.RawMessage(`{}`),
			Error: &subjects.Error{Code: "x", Message: "y", Retryable: true, RetryAfterMs: 5}, Attempts: 1},
		"work-reply.schema.json": subjects.WorkReply{Status: "processed", Commands: []subjects.CommandSpec{{Command: "c", Args: json.RawMessage(`{}`)}}, Error: "e", Retry: true},
	}
	for file, v := range cases {
		b, err := os.ReadFile(filepath.Join(docsDir, "schemas", file))
		if err != nil {
			t.Fatal(err)
		}
		var s struct {
			Properties map[string]any
			Required   []string
		}
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		var got map[string]any
		vb, _ := json.Marshal(v)
		_ = json.Unmarshal(vb, &got)
		for k := range got {
			if _, ok := s.Properties[k]; !ok {
				t.Errorf("%s: %T has %q, the schema does not", file, v, k)
			}
		}
		for _, k := range s.Required {
			if _, ok := got[k]; !ok {
				t.Errorf("%s: required %q missing from a marshalled %T", file, k, v)
			}
		}
		if len(got) != len(s.Properties) {
			t.Errorf("%s: %d properties, a filled-in %T has %d", file, len(s.Properties), v, len(got))
		}
	}
}

func TestHeaderAttemptMatchesDispatch(t *testing.T) {
	t.Parallel()
	if headerAttempt != dispatch.HeaderAttempt {
		t.Errorf("headerAttempt %q, dispatch.HeaderAttempt %q", headerAttempt, dispatch.HeaderAttempt)
	}
}

// TestWorkersDocListsBandCommands keeps docs/workers.md's command list in
// step with the Band connector.
func TestWorkersDocListsBandCommands(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join(docsDir, "workers.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range band.Commands() {
		if !bytes.Contains(b, []byte("| `"+c+"`")) {
			t.Errorf("docs/workers.md does not list the Band command %s (a table row starting | `%s`)", c, c)
		}
	}
}

// TestYAMLScalars: strings that YAML would read as something else are quoted.
func TestYAMLScalars(t *testing.T) {
	t.Parallel()
	var vals list
	for _, s := range []string{"true", "No", "null", "~", "1", "3.0.0", "-x", "a: b", "a #b", "#x", "{a}", "[a]", "", " lead", "trail ",
		"it's", "tab\there", "line\nbreak", "ünï", "$ref", `back\slash`, `"q"`, "- item", "plain words", "P.evt…"} {
		vals = append(vals, s)
	}
	doc := o("strings", vals, "n", 42, "b", false, "nil", nil, "empty", obj{}, "none", list{},
		"nested", list{o("a", 1, "b", list{"x", o("c", "d")}), "y"})
	y, err := yamlFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseYAML(string(y))
	if err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	var want any
	b, _ := json.Marshal(doc)
	_ = json.Unmarshal(b, &want)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n%s\ngot  %v\nwant %v", y, got, want)
	}
}
