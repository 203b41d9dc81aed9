package conntest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/connector"
)

// CommandSchemas checks a connector's [connector.CommandSchemer] ability
// against its [connector.CommandNamer] one: one schema per command name,
// each an object schema whose required fields it describes. It returns,
// per command, an example arguments object built from each schema's
// required fields ([ExampleArgs]), for the platform's test to execute
// where that needs no platform.
func CommandSchemas(t *testing.T, c connector.Connector) map[string]json.RawMessage {
	t.Helper()
	n, ok := c.(connector.CommandNamer)
	if !ok {
		t.Fatalf("%T is not a connector.CommandNamer", c)
	}
	s, ok := c.(connector.CommandSchemer)
	if !ok {
		t.Fatalf("%T is not a connector.CommandSchemer", c)
	}
	schemas := s.CommandSchemas()
	if err := connector.CheckSchemas(n.CommandNames(), schemas); err != nil {
		t.Fatal(err)
	}
	out := map[string]json.RawMessage{}
	for name, sc := range schemas {
		ex, err := ExampleArgs(sc)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = ex
	}
	return out
}

// schema is the part of JSON Schema ExampleArgs reads.
type schema struct {
	Type                 json.RawMessage    `json:"type"`
	Const                json.RawMessage    `json:"const"`
	Enum                 []json.RawMessage  `json:"enum"`
	Properties           map[string]*schema `json:"properties"`
	Required             []string           `json:"required"`
	AnyOf                []schema           `json:"anyOf"`
	Items                *schema            `json:"items"`
	MinItems             int                `json:"minItems"`
	MinProperties        int                `json:"minProperties"`
	AdditionalProperties json.RawMessage    `json:"additionalProperties"`
	Minimum              *float64           `json:"minimum"`
}

// ExampleArgs builds the smallest value a JSON Schema asks for: an
// object's required properties (and those of its first anyOf branch), an
// array's minItems items, the first enum value, a non-blank string, true,
// the minimum or 1.
func ExampleArgs(raw json.RawMessage) (json.RawMessage, error) {
	var s schema
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, err
	}
	v, err := example(&s, 0)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

func example(s *schema, depth int) (any, error) {
	if depth > 8 {
		return nil, fmt.Errorf("schema nests too deep")
	}
	switch {
	case s.Const != nil:
		return s.Const, nil
	case len(s.Enum) > 0:
		return s.Enum[0], nil
	}
	var types []string
	if len(s.Type) > 0 && s.Type[0] == '[' {
		if err := json.Unmarshal(s.Type, &types); err != nil {
			return nil, err
		}
	} else if len(s.Type) > 0 {
		var t string
		if err := json.Unmarshal(s.Type, &t); err != nil {
			return nil, err
		}
		types = []string{t}
	}
	if len(types) == 0 {
		return map[string]any{}, nil // any value
	}
	switch types[0] {
	case "string":
		return "example", nil
	case "boolean":
		return true, nil
	case "integer", "number":
		if s.Minimum != nil {
			return *s.Minimum, nil
		}
		return 1, nil
	case "array":
		items := []any{}
		for range s.MinItems {
			if s.Items == nil {
				items = append(items, "example")
				continue
			}
			v, err := example(s.Items, depth+1)
			if err != nil {
				return nil, err
			}
			items = append(items, v)
		}
		return items, nil
	case "object":
		out := map[string]any{}
		required := slices.Clone(s.Required)
		if len(s.AnyOf) > 0 {
			required = append(required, s.AnyOf[0].Required...)
		}
		for _, r := range required {
			p := s.Properties[r]
			if p == nil {
				return nil, fmt.Errorf("required %s has no schema", r)
			}
			v, err := example(p, depth+1)
			if err != nil {
				return nil, err
			}
			out[r] = v
		}
		if len(out) < s.MinProperties {
			var extra schema
			if len(s.AdditionalProperties) > 0 && s.AdditionalProperties[0] == '{' {
				if err := json.Unmarshal(s.AdditionalProperties, &extra); err != nil {
					return nil, err
				}
			}
			for i := 1; len(out) < s.MinProperties; i++ {
				v, err := example(&extra, depth+1)
				if err != nil {
					return nil, err
				}
				out[fmt.Sprintf("example%d", i)] = v
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("no example for type %q", types[0])
}

// SchemaExamples checks each command's schema against the connector's own
// argument checks, on x, a connector whose platform is unreachable (its
// base URL a closed port), so nothing is executed: the example built from
// the schema's required fields is not refused as bad input (a
// [connector.RequestError]), and the example without any one of its
// required fields is. Commands whose checks need the platform (an open
// session) are named in skip. room is the room given to every command.
func SchemaExamples(t *testing.T, x connector.Executor, examples map[string]json.RawMessage, room string, skip ...string) {
	t.Helper()
	var req *connector.RequestError
	for name, ex := range examples {
		if slices.Contains(skip, name) {
			continue
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		_, err := x.Execute(ctx, connector.Command{Name: name, Room: room, Args: ex})
		if errors.As(err, &req) {
			t.Errorf("%s: the schema's example %s is refused: %v", name, ex, err)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(ex, &m); err != nil {
			t.Fatalf("%s: example %s: %v", name, ex, err)
		}
		var s struct {
			Required []string `json:"required"`
		}
		_ = json.Unmarshal(x.(connector.CommandSchemer).CommandSchemas()[name], &s)
		for _, r := range s.Required {
			less := maps.Clone(m)
			delete(less, r)
			args, _ := json.Marshal(less)
			_, err := x.Execute(ctx, connector.Command{Name: name, Room: room, Args: args})
			if !errors.As(err, &req) {
				t.Errorf("%s: without its required %s (%s): %v, want a connector.RequestError", name, r, args, err)
			}
		}
		cancel()
	}
}

// ClosedURL returns an http URL on a loopback port nothing listens on.
func ClosedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr
}
