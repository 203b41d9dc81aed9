package subjects

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// constants returns the values of the package's constants whose name
// starts with prefix, read from the source: a constant added without a row
// in its table fails the tests below.
func constants(t *testing.T, prefix string) []string {
	t.Helper()
	paths, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var out []string
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
				for i, n := range vs.Names {
					if !strings.HasPrefix(n.Name, prefix) || i >= len(vs.Values) {
						continue
					}
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok {
						t.Fatalf("%s: constant %s is not a literal", p, n.Name)
					}
					v, err := strconv.Unquote(lit.Value)
					if err != nil {
						t.Fatalf("%s: constant %s: %v", p, n.Name, err)
					}
					out = append(out, v)
				}
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("no constants named %s… in package subjects", prefix)
	}
	slices.Sort(out)
	return out
}

// sameSet fails unless the table lists exactly the constants, once each.
func sameSet(t *testing.T, table string, listed, consts []string) {
	t.Helper()
	sorted := slices.Sorted(slices.Values(listed))
	if len(slices.Compact(slices.Clone(sorted))) != len(sorted) {
		t.Errorf("%s lists a name twice: %v", table, sorted)
	}
	if !slices.Equal(slices.Compact(sorted), consts) {
		t.Errorf("%s lists %v, the package declares %v", table, sorted, consts)
	}
}

func TestKindsListEveryKind(t *testing.T) {
	t.Parallel()
	var listed []string
	sample := strings.NewReplacer("<platform>", "band", "<conn>", "support-bot", "<room>", "a~2Eb",
		"<command or event>", "send_message", "<command>", "send_message", "<event>", "message_created")
	for _, k := range Kinds() {
		listed = append(listed, string(k.Kind))
		if k.Direction == "" || k.Transport == "" || k.What == "" {
			t.Errorf("%s: empty column in %+v", k.Kind, k)
		}
		subj := sample.Replace(k.Kind.Pattern())
		s, err := Parse("P", subj)
		if err != nil {
			t.Errorf("%s: pattern %q gives %q: %v", k.Kind, k.Kind.Pattern(), subj, err)
			continue
		}
		if s.Kind != k.Kind || s.String() != subj {
			t.Errorf("%s: %q parsed as %+v", k.Kind, subj, s)
		}
	}
	sameSet(t, "Kinds", listed, constants(t, "Kind"))
}

func TestHeadersListEveryHeader(t *testing.T) {
	t.Parallel()
	var listed []string
	for _, h := range Headers() {
		listed = append(listed, h.Name)
		if h.On == "" || h.What == "" || strings.Contains(h.What, "\n") {
			t.Errorf("%s: %+v", h.Name, h)
		}
	}
	sameSet(t, "Headers", listed, constants(t, "Header"))
}

func TestErrorCodesListEveryCode(t *testing.T) {
	t.Parallel()
	var listed []string
	for _, c := range ErrorCodes() {
		listed = append(listed, c.Code)
		if c.What == "" || (c.Retryable != "true" && c.Retryable != "false") {
			t.Errorf("%s: %+v", c.Code, c)
		}
	}
	sameSet(t, "ErrorCodes", listed, constants(t, "ErrCode"))
}

func TestStores(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, s := range Stores() {
		if seen[s.Base] || s.Type == "" || s.What == "" || s.Kept == "" {
			t.Errorf("store %+v: listed twice or empty column", s)
		}
		seen[s.Base] = true
	}
	for _, base := range []string{StreamEvents, StreamCommands, StreamDLQ} {
		if !seen[base] {
			t.Errorf("stream %s is not in Stores", base)
		}
	}
	if got := (StoreInfo{Base: StreamEvents}).Name("acme-prod"); got != "ACME_PROD_EVENTS" {
		t.Errorf("Name = %q", got)
	}
}
