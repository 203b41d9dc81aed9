package layers

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/bridgeworks/bridge/"

// layer of each production package (directory), lowest first. A package
// may import only packages of a lower layer. Test files, examples, test
// support and the tests' own platforms are not layered; emulators import
// no package of the bridge at all (they are written from the platform's
// documents, never from the code they test), but for emulator/emuhttp,
// their shared stdlib-only HTTP lifecycle.
var layer = map[string]int{
	"subjects": 0, "retry": 0, "internal/redact": 0, "internal/tick": 0,
	"connector": 1, "config": 1, "claimcheck": 1, "internal/phoenix": 1, "tracing": 1,
	"natsbus": 2, "ackflow": 2, "connector/band": 2,
	"consume": 3, "platforms": 3,
	"cmdexec": 4, "dispatch": 4,
	"bridge":     5,
	"cmd/bridge": 6, "cmd/bridge-bench": 7, "cmd/bridge-bench/internal/bench": 6, "subjects/internal/gen": 6,
}

// layerOf is a package's layer; every platform connector (connector/<name>
// and below, but the conformance suite) sits in the connectors' layer, and
// emulators at the bottom.
func layerOf(pkg string) (int, bool) {
	if l, ok := layer[pkg]; ok {
		return l, true
	}
	if strings.HasPrefix(pkg, "emulator/") {
		return 0, true // emulators import nothing of the bridge
	}
	if strings.HasPrefix(pkg, "connector/") && !strings.HasPrefix(pkg, "connector/conntest") {
		return layer["connector/band"], true
	}
	return 0, false
}

// unlayered are directories with Go code that the rule does not cover.
var unlayered = []string{"internal/layers", "internal/testutil", "test/", "examples/", "connector/conntest", "deploy/", "emulator/"}

func TestImportsPointDown(t *testing.T) {
	root := filepath.Join("..", "..")
	seen := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		rel = filepath.ToSlash(rel)
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		emulator := strings.HasPrefix(rel, "emulator/")
		mine, ok := layerOf(rel)
		if !ok && !emulator {
			for _, u := range unlayered {
				if strings.HasPrefix(rel+"/", u) || strings.HasPrefix(rel, u) {
					return nil
				}
			}
			if !seen[rel] {
				seen[rel] = true
				t.Errorf("package %s has no layer: add it to layers_test.go", rel)
			}
			return nil
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			dep, internal := strings.CutPrefix(p, module)
			switch {
			case !internal:
			case emulator && !strings.HasPrefix(dep, rel) && dep != "emulator/emuhttp":
				t.Errorf("%s: emulator imports %s (emulators import nothing of the bridge)", path, dep)
			case emulator:
			default:
				d, known := layerOf(dep)
				switch {
				case dep == rel:
				case !known:
					t.Errorf("%s: imports %s, which has no layer", path, dep)
				case d >= mine:
					t.Errorf("%s (layer %d) imports %s (layer %d): imports must point down", path, mine, dep, d)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("not at the module root: %v", err)
	}
}
