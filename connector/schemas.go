package connector

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// CommandSchemer is implemented by platforms that describe the arguments of
// their commands (an optional ability, found by type assertion). Each
// schema is a JSON Schema (draft-07) of the command's arguments object, as
// a worker publishes it on P.cmd… (the room is in the subject, not among
// the arguments). The documentation generator writes them into
// docs/asyncapi.yaml and docs/schemas/commands/; [Factory.CommandSchemas]
// gives the same list without a connection.
type CommandSchemer interface {
	// CommandSchemas maps every command name of [CommandNamer] to the
	// schema of its arguments.
	CommandSchemas() map[string]json.RawMessage
}

// CheckSchemas reports what is wrong with a platform's command schemas:
// a command of names without a schema or a schema for no command, a schema
// that is not JSON, not an object schema with properties, or that requires
// a property it does not describe. Every problem is named, not only the
// first.
func CheckSchemas(names []string, schemas map[string]json.RawMessage) error {
	var bad []string
	for _, n := range names {
		if _, ok := schemas[n]; !ok {
			bad = append(bad, fmt.Sprintf("command %s has no schema", n))
		}
	}
	for _, n := range sortedNames(schemas) {
		if !slices.Contains(names, n) {
			bad = append(bad, fmt.Sprintf("schema %s names no command", n))
			continue
		}
		if err := checkSchema(schemas[n]); err != nil {
			bad = append(bad, fmt.Sprintf("schema %s: %v", n, err))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("command schemas: %s", strings.Join(bad, "; "))
	}
	return nil
}

func checkSchema(raw json.RawMessage) error {
	var s struct {
		Type       string                     `json:"type"`
		Properties map[string]json.RawMessage `json:"properties"`
		Required   []string                   `json:"required"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("not a JSON Schema object: %w", err)
	}
	if s.Type != "object" {
		return fmt.Errorf("type is %q, want object", s.Type)
	}
	if s.Properties == nil {
		return fmt.Errorf("has no properties (write {} for a command without arguments)")
	}
	for _, r := range s.Required {
		if _, ok := s.Properties[r]; !ok {
			return fmt.Errorf("requires %s, which is not among its properties", r)
		}
	}
	return nil
}

func sortedNames(m map[string]json.RawMessage) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
