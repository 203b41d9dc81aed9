package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// parseYAML reads the block-style YAML subset the generator writes (block
// mappings and sequences, plain and double-quoted scalars, {} and []) into
// the values encoding/json would produce. It rejects anything else, so a
// file it accepts has exactly the structure it returns.
func parseYAML(src string) (any, error) {
	p := &yamlParser{}
	for i, l := range strings.Split(src, "\n") {
		t := strings.TrimLeft(l, " ")
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		if strings.HasPrefix(t, "\t") {
			return nil, fmt.Errorf("line %d: tab indentation", i+1)
		}
		p.lines = append(p.lines, yamlLine{indent: len(l) - len(t), text: t, n: i + 1})
	}
	if len(p.lines) == 0 {
		return nil, fmt.Errorf("empty document")
	}
	v, err := p.block(0)
	if err != nil {
		return nil, err
	}
	if p.i < len(p.lines) {
		return nil, fmt.Errorf("line %d: unexpected indentation", p.lines[p.i].n)
	}
	return v, nil
}

type yamlLine struct {
	indent int
	text   string
	n      int
}

type yamlParser struct {
	lines []yamlLine
	i     int
}

func isItem(text string) bool { return text == "-" || strings.HasPrefix(text, "- ") }

func (p *yamlParser) block(indent int) (any, error) {
	if isItem(p.lines[p.i].text) {
		return p.list(indent)
	}
	return p.mapping(indent)
}

func (p *yamlParser) mapping(indent int) (map[string]any, error) {
	m := map[string]any{}
	for p.i < len(p.lines) && p.lines[p.i].indent == indent && !isItem(p.lines[p.i].text) {
		l := p.lines[p.i]
		key, rest, ok, err := splitKey(l.text)
		if err != nil || !ok {
			return nil, fmt.Errorf("line %d: not a key: value line: %q %v", l.n, l.text, err)
		}
		if _, dup := m[key]; dup {
			return nil, fmt.Errorf("line %d: duplicate key %q", l.n, key)
		}
		p.i++
		if rest != "" {
			if m[key], err = yamlValue(rest); err != nil {
				return nil, fmt.Errorf("line %d: %w", l.n, err)
			}
			continue
		}
		if p.i >= len(p.lines) || p.lines[p.i].indent <= indent {
			return nil, fmt.Errorf("line %d: key %q has no value", l.n, key)
		}
		if m[key], err = p.block(p.lines[p.i].indent); err != nil {
			return nil, err
		}
	}
	if p.i < len(p.lines) && p.lines[p.i].indent > indent {
		return nil, fmt.Errorf("line %d: unexpected indentation", p.lines[p.i].n)
	}
	return m, nil
}

func (p *yamlParser) list(indent int) ([]any, error) {
	out := []any{}
	for p.i < len(p.lines) && p.lines[p.i].indent == indent && isItem(p.lines[p.i].text) {
		l := &p.lines[p.i]
		rest := strings.TrimPrefix(strings.TrimPrefix(l.text, "-"), " ")
		if _, _, isMap, _ := splitKey(rest); isMap {
			// "- key: v" opens a mapping whose keys sit two columns in.
			l.indent, l.text = indent+2, rest
			m, err := p.mapping(indent + 2)
			if err != nil {
				return nil, err
			}
			out = append(out, m)
			continue
		}
		v, err := yamlValue(rest)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", l.n, err)
		}
		out = append(out, v)
		p.i++
	}
	return out, nil
}

// splitKey splits `key: rest` or `key:`; ok is false when text is not a
// mapping entry.
func splitKey(text string) (key, rest string, ok bool, err error) {
	var after string
	if strings.HasPrefix(text, `"`) {
		end := quotedEnd(text)
		if end < 0 {
			return "", "", false, fmt.Errorf("unterminated string")
		}
		if err := json.Unmarshal([]byte(text[:end]), &key); err != nil {
			return "", "", false, err
		}
		after = text[end:]
	} else {
		i := strings.Index(text, ":")
		if i < 0 {
			return "", "", false, nil
		}
		key, after = text[:i], text[i:]
	}
	switch {
	case after == ":":
		return key, "", true, nil
	case strings.HasPrefix(after, ": "):
		return key, after[2:], true, nil
	}
	return "", "", false, nil
}

// quotedEnd returns the index just past the double-quoted string that
// starts text, or -1.
func quotedEnd(text string) int {
	for i := 1; i < len(text); i++ {
		switch text[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return -1
}

var yamlInt = regexp.MustCompile(`^-?[0-9]+$`)

func yamlValue(s string) (any, error) {
	switch {
	case strings.HasPrefix(s, `"`):
		if quotedEnd(s) != len(s) {
			return nil, fmt.Errorf("text after a quoted string: %q", s)
		}
		var v string
		err := json.Unmarshal([]byte(s), &v)
		return v, err
	case s == "{}":
		return map[string]any{}, nil
	case s == "[]":
		return []any{}, nil
	case s == "null":
		return nil, nil
	case s == "true" || s == "false":
		return s == "true", nil
	case yamlInt.MatchString(s):
		var f float64
		err := json.Unmarshal([]byte(s), &f)
		return f, err
	case !plain.MatchString(s):
		return nil, fmt.Errorf("%q is not a scalar the generator writes", s)
	}
	return s, nil
}
