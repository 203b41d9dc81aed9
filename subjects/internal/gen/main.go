// Command gen writes the documentation generated from package subjects:
// docs/asyncapi.yaml (AsyncAPI 3.0) and the JSON Schemas of the event
// envelope, the command result and the dispatch reply in docs/schemas/.
// Run it with go generate ./... (see subjects/gen.go); a test fails when the
// files on disk differ from what it would write.
//
// It uses the standard library only: schemas come from reflection over the
// types' json tags plus the descriptions in docs (schema.go); the YAML is
// written by a small emitter for the subset it needs (tree.go).
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
	out := flag.String("out", "docs", "directory to write asyncapi.yaml and schemas/ into")
	flag.Parse()
	if err := write(*out); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

// write writes every generated file under dir.
func write(dir string) error {
	files, err := generate()
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

// generate renders every file, keyed by its slash path under docs/.
func generate() (map[string][]byte, error) {
	types := map[string]any{
		"schemas/event.schema.json":      subjects.Event{},
		"schemas/result.schema.json":     subjects.Result{},
		"schemas/work-reply.schema.json": subjects.WorkReply{},
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
	y, err := yamlFile(asyncAPI())
	if err != nil {
		return nil, fmt.Errorf("asyncapi.yaml: %w", err)
	}
	files["asyncapi.yaml"] = append([]byte(header), y...)
	return files, nil
}

const header = "# Generated from package subjects by go generate ./... (subjects/internal/gen). DO NOT EDIT.\n"

func sortedKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
