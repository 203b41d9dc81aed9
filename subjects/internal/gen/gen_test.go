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

	"github.com/bridgeworks/bridge/bridge"
	"github.com/bridgeworks/bridge/cmdexec"
	"github.com/bridgeworks/bridge/connector/band"
	"github.com/bridgeworks/bridge/dispatch"
	"github.com/bridgeworks/bridge/natsbus"
	"github.com/bridgeworks/bridge/subjects"
)

const (
	rootDir = "../../.."
	docsDir = rootDir + "/docs"
)

// TestGeneratedFilesUpToDate regenerates in memory and compares with the
// files on disk: the schemas, the AsyncAPI document and the generated
// blocks of docs/contract.md, docs/workers.md and README.md.
func TestGeneratedFilesUpToDate(t *testing.T) {
	t.Parallel()
	files, err := generate(rootDir)
	if err != nil {
		t.Fatal(err)
	}
	for name := range markdownFiles {
		if _, ok := files[name]; !ok {
			t.Errorf("%s is not checked", name)
		}
	}
	for _, name := range sortedKeys(files) {
		disk, err := os.ReadFile(filepath.Join(rootDir, filepath.FromSlash(name)))
		if err != nil {
			t.Errorf("%s: %v (run go generate ./subjects)", name, err)
			continue
		}
		if !bytes.Equal(disk, files[name]) {
			t.Errorf("%s is stale: run go generate ./subjects", name)
		}
	}
	// A command schema whose command is gone is stale too.
	disk, err := filepath.Glob(filepath.Join(rootDir, "docs", "schemas", "commands", "*", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range disk {
		rel, _ := filepath.Rel(rootDir, p)
		if _, ok := files[filepath.ToSlash(rel)]; !ok {
			t.Errorf("%s names no platform command: delete it", rel)
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
	cmds, err := platformCommands()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(asyncAPI(cmds))
	_ = json.Unmarshal(b, &want)
	if !reflect.DeepEqual(parsed, want) {
		t.Fatal("docs/asyncapi.yaml does not hold the generator's document (run go generate ./subjects)")
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
	if subjects.HeaderAttempt != dispatch.HeaderAttempt {
		t.Errorf("subjects.HeaderAttempt %q, dispatch.HeaderAttempt %q", subjects.HeaderAttempt, dispatch.HeaderAttempt)
	}
}

// TestStoresMatchTheCode: subjects.Stores names every stream and bucket
// the bridge creates, as the packages that create them name them.
func TestStoresMatchTheCode(t *testing.T) {
	t.Parallel()
	const prefix = "acme-prod"
	var listed []string
	for _, s := range subjects.Stores() {
		listed = append(listed, s.Name(prefix))
	}
	var made []string
	for _, c := range natsbus.StreamConfigs(natsbus.StreamOptions{Prefix: prefix}) {
		made = append(made, c.Name)
	}
	made = append(made, strings.Replace(subjects.PayloadBucket(prefix, "c"), "_c", "_<conn>", 1),
		cmdexec.BucketName(prefix), bridge.PublishedBucket(prefix), dispatch.DoneBucket(prefix),
		dispatch.StartBucket(prefix), bridge.LeaseBucket(prefix), bridge.StateBucket(prefix), bridge.MembersBucket(prefix))
	slices.Sort(listed)
	slices.Sort(made)
	if !slices.Equal(listed, made) {
		t.Errorf("subjects.Stores names %v, the code creates %v", listed, made)
	}
}

// TestFillBlocks: blocks are replaced between their markers, the rest is
// kept, and bad markers are errors naming the block.
func TestFillBlocks(t *testing.T) {
	t.Parallel()
	all := map[string]string{"a": "A1\nA2\n", "b": "B\n"}
	src := "head\n<!-- gen:a:begin -->\nold\n<!-- gen:a:end -->\nmid\n<!-- gen:b:begin --><!-- gen:b:end -->\ntail\n"
	got, err := fill([]byte(src), []string{"a", "b"}, all)
	if err != nil {
		t.Fatal(err)
	}
	want := "head\n<!-- gen:a:begin -->\n\nA1\nA2\n\n<!-- gen:a:end -->\nmid\n<!-- gen:b:begin -->\n\nB\n\n<!-- gen:b:end -->\ntail\n"
	if string(got) != want {
		t.Errorf("fill:\n%s\nwant\n%s", got, want)
	}
	again, err := fill(got, []string{"a", "b"}, all)
	if err != nil || !bytes.Equal(again, got) {
		t.Errorf("fill is not idempotent: %v\n%s", err, again)
	}
	for src, msg := range map[string]string{
		"<!-- gen:zz:begin --><!-- gen:zz:end -->": "gen:zz: no such block",
		"<!-- gen:a:begin -->\nx\n":                "gen:a has no end marker",
		"<!-- gen:a:end -->":                       "want gen:<name>:begin",
		"<!-- gen:a:begin --><!-- gen:a:end --><!-- gen:a:begin --><!-- gen:a:end -->": "appears twice",
		"<!-- gen:a:begin --><!-- gen:b:begin --><!-- gen:b:end --><!-- gen:a:end -->": "another marker before its end",
		"<!-- gen:a:begin --><!-- gen:a:end -->":                                       "gen:b is missing",
	} {
		_, err := fill([]byte(src), []string{"a", "b"}, all)
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("fill(%q) = %v, want an error containing %q", src, err, msg)
		}
	}
}

// TestDocsPromiseNoTracing: no document promises what the bridge does not
// do (an error code it never produces, tracing "when on" without saying
// how it is turned on).
func TestDocsPromiseNoTracing(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"README.md", "docs/contract.md", "docs/workers.md", "docs/asyncapi.yaml"} {
		b, err := os.ReadFile(filepath.Join(rootDir, name))
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range []string{"worker_error", "when tracing is on"} {
			if bytes.Contains(b, []byte(w)) {
				t.Errorf("%s mentions %s, which the bridge does not have", name, w)
			}
		}
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

// TestREADMELayoutListsEveryPackage: the README's layout table names every
// Go package of the repository, and nothing else.
func TestREADMELayoutListsEveryPackage(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile(filepath.Join(rootDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, layout, ok := strings.Cut(string(readme), "\n## Layout\n")
	if !ok {
		t.Fatal("README.md has no ## Layout section")
	}
	if i := strings.Index(layout, "\n## "); i >= 0 {
		layout = layout[:i]
	}
	listed := map[string]bool{}
	for line := range strings.Lines(layout) {
		first, _, _ := strings.Cut(strings.TrimPrefix(line, "|"), "|")
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(first, -1) {
			listed[m[1]] = true
		}
	}
	pkgs := map[string]bool{}
	err = filepath.WalkDir(rootDir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != rootDir && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".go") {
			rel, _ := filepath.Rel(rootDir, filepath.Dir(p))
			pkgs[filepath.ToSlash(rel)] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for p := range pkgs {
		if !listed[p] {
			t.Errorf("README.md's layout table does not list package %s", p)
		}
	}
	for p := range listed {
		if !pkgs[p] {
			t.Errorf("README.md's layout table lists %s, which is not a package", p)
		}
	}
}
