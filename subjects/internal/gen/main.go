// Command gen writes the documentation generated from package subjects:
// docs/asyncapi.yaml (AsyncAPI 3.0), the JSON Schemas of the event
// envelope, the command result and the dispatch reply in docs/schemas/, the
// schema of each platform command's arguments in docs/schemas/commands/
// (from connector.Factory.CommandSchemas, commands.go), and
// the tables between gen markers in docs/contract.md, docs/workers.md and
// README.md (markdown.go). Run it with go generate ./subjects (see
// subjects/gen.go); a test fails when the files on disk differ from what it
// would write.
//
// Schemas come from reflection over the types' json tags plus the
// descriptions in docs (schema.go); the tables from the lists in package
// subjects (Kinds, Lifecycles, Headers, ErrorCodes, Stores) and the
// platform registry (package platforms); the YAML is written by a small
// emitter for the subset it needs (tree.go).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/bridgeworks/bridge/subjects"
)

func main() {
	root := flag.String("root", ".", "the repository's root: docs/ and README.md are under it")
	flag.Parse()
	if err := write(*root); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

// write writes every generated file under the repository root dir.
func write(dir string) error {
	files, err := generate(dir)
	if err != nil {
		return err
	}
	for _, name := range sortedKeys(files) {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, files[name], 0o644); err != nil {
			return err
		}
	}
	return nil
}

// generate renders every file, keyed by its slash path under the
// repository root; files with gen markers are read from under root.
func generate(root string) (map[string][]byte, error) {
	types := map[string]any{
		"docs/schemas/event.schema.json":      subjects.Event{},
		"docs/schemas/result.schema.json":     subjects.Result{},
		"docs/schemas/work-reply.schema.json": subjects.WorkReply{},
	}
	if err := checkDocs(subjects.Event{}, subjects.Result{}, subjects.WorkReply{}); err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	for name, v := range types {
		s, err := schemaFile(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if files[name], err = jsonFile(s); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	cmds, err := platformCommands()
	if err != nil {
		return nil, err
	}
	for _, c := range cmds {
		if files["docs/"+c.file()], err = commandSchemaFile(c); err != nil {
			return nil, fmt.Errorf("%s: %w", c.file(), err)
		}
	}
	y, err := yamlFile(asyncAPI(cmds))
	if err != nil {
		return nil, fmt.Errorf("asyncapi.yaml: %w", err)
	}
	files["docs/asyncapi.yaml"] = append([]byte(header), y...)
	all := blocks()
	for name, want := range markdownFiles {
		src, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(name)))
		if err != nil {
			return nil, err
		}
		if files[name], err = fill(src, want, all); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	return files, nil
}

const header = "# Generated from package subjects by go generate ./subjects (subjects/internal/gen). DO NOT EDIT.\n"

func sortedKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
