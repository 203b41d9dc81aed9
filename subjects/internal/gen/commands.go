package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/platforms"
)

// platformCommand is one command of a shipped platform with the JSON Schema
// of its arguments (connector.Factory.CommandSchemas).
type platformCommand struct {
	platform, command string
	schema            json.RawMessage
	description       string // the schema's own, if any
}

// id is the command's key under components.messages.
func (c platformCommand) id() string { return c.platform + "." + c.command }

// file is the command's schema file, by slash path under docs/.
func (c platformCommand) file() string {
	return "schemas/commands/" + c.platform + "/" + c.command + ".json"
}

// platformCommands lists the described commands of every platform (aliases
// once, under their subject token), by platform then command.
func platformCommands() ([]platformCommand, error) {
	reg := platforms.All()
	seen := map[string]bool{}
	var out []platformCommand
	for _, name := range slices.Sorted(maps.Keys(reg)) {
		f := reg[name]
		if f.CommandSchemas == nil || seen[f.Platform] {
			continue
		}
		seen[f.Platform] = true
		schemas := f.CommandSchemas()
		names := slices.Sorted(maps.Keys(schemas))
		if err := connector.CheckSchemas(names, schemas); err != nil {
			return nil, fmt.Errorf("platform %s: %w", f.Platform, err)
		}
		for _, n := range names {
			var d struct {
				Description string `json:"description"`
			}
			_ = json.Unmarshal(schemas[n], &d)
			out = append(out, platformCommand{platform: f.Platform, command: n, schema: schemas[n], description: d.Description})
		}
	}
	return out, nil
}

// commandSchemaFile is a command's schema as a file: $schema and title,
// then the connector's schema as written.
func commandSchemaFile(c platformCommand) ([]byte, error) {
	var b bytes.Buffer
	if err := json.Compact(&b, c.schema); err != nil {
		return nil, err
	}
	body := b.Bytes()
	if len(body) < 2 || body[0] != '{' {
		return nil, fmt.Errorf("not an object schema")
	}
	head, err := marshal(o("$schema", "http://json-schema.org/draft-07/schema#", "title", c.platform+" "+c.command+" arguments"))
	if err != nil {
		return nil, err
	}
	joined := append(bytes.TrimSuffix(head, []byte("}")), ',')
	if string(body) == "{}" {
		joined = append(joined[:len(joined)-1], '}')
	} else {
		joined = append(joined, body[1:]...)
	}
	return jsonFile(json.RawMessage(joined))
}

// commandMessage is a command's message under components.messages.
func commandMessage(c platformCommand) obj {
	summary := "The arguments of " + c.platform + "'s " + c.command + "."
	if c.description != "" {
		summary = c.description
	}
	return o("name", c.command, "title", c.platform+" "+c.command, "contentType", "application/json",
		"summary", summary,
		"headers", ref("#/components/schemas/commandHeaders"),
		"payload", ref("./"+c.file()))
}
