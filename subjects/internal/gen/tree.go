package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// obj is a JSON object that keeps its keys in order, so the generated files
// read top-down and diff cleanly. Values are obj, list, string, bool, int or
// nil.
type obj []field

type field struct {
	key string
	val any
}

type list []any

// o builds an obj from alternating keys and values.
func o(kv ...any) obj {
	out := make(obj, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, field{kv[i].(string), kv[i+1]})
	}
	return out
}

// MarshalJSON writes the keys in order.
func (x obj) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range x {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(f.key)
		v, err := marshal(f.val)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// jsonFile renders v as indented JSON with a final newline.
func jsonFile(v any) ([]byte, error) {
	raw, err := marshal(v)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return nil, err
	}
	b.WriteByte('\n')
	return b.Bytes(), nil
}

// plain matches strings written without quotes in YAML: they start with a
// letter or "$" and hold no ':', '#', bracket, quote, backslash or control
// character, so they cannot be read as anything but the string.
var plain = regexp.MustCompile(`^[A-Za-z$](?:[^:#{}\[\]"\\\x00-\x1f\x7f]*[^:#{}\[\]"\\\x00-\x20\x7f])?$`)

// yamlScalar writes strings plain when that is unambiguous and JSON-quoted
// otherwise (a JSON string is a valid YAML double-quoted scalar).
func yamlScalar(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "null", nil
	case bool:
		return fmt.Sprint(x), nil
	case int:
		return fmt.Sprint(x), nil
	case string:
		switch strings.ToLower(x) {
		case "true", "false", "null", "yes", "no", "on", "off", "y", "n", "~":
		default:
			if plain.MatchString(x) {
				return x, nil
			}
		}
		b, err := marshal(x)
		return string(b), err
	}
	return "", fmt.Errorf("yaml: unsupported value %T", v)
}

// yamlFile renders v (an obj) as block-style YAML.
func yamlFile(v obj) ([]byte, error) {
	var b strings.Builder
	if err := writeYAML(&b, v, 0); err != nil {
		return nil, err
	}
	return []byte(b.String()), nil
}

func writeYAML(b *strings.Builder, v any, indent int) error {
	pad := strings.Repeat(" ", indent)
	switch x := v.(type) {
	case obj:
		for _, f := range x {
			k, err := yamlScalar(f.key)
			if err != nil {
				return err
			}
			b.WriteString(pad + k + ":")
			if err := writeValue(b, f.val, indent); err != nil {
				return err
			}
		}
	case list:
		for _, item := range x {
			var sub strings.Builder
			if err := writeYAML(&sub, item, indent+2); err != nil {
				return err
			}
			// "- " takes the place of the item's first indentation.
			b.WriteString(pad + "- " + strings.TrimPrefix(sub.String(), pad+"  "))
		}
	default:
		s, err := yamlScalar(x)
		if err != nil {
			return err
		}
		b.WriteString(pad + s + "\n")
	}
	return nil
}

// writeValue writes what follows "key:".
func writeValue(b *strings.Builder, v any, indent int) error {
	switch x := v.(type) {
	case obj:
		if len(x) == 0 {
			b.WriteString(" {}\n")
			return nil
		}
		b.WriteString("\n")
		return writeYAML(b, x, indent+2)
	case list:
		if len(x) == 0 {
			b.WriteString(" []\n")
			return nil
		}
		b.WriteString("\n")
		return writeYAML(b, x, indent+2)
	}
	s, err := yamlScalar(v)
	if err != nil {
		return err
	}
	b.WriteString(" " + s + "\n")
	return nil
}
