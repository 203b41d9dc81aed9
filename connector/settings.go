package connector

import (
	"encoding"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Settings is a connection's platform table ([connection.settings] in the
// bridge's config) without its secret keys: plain values as TOML decoded
// them, or strings when they came from the environment. The connector
// decodes it into its own struct with [Settings.Decode].
type Settings map[string]any

// Decode fills the fields of the struct v points to from s, by each
// field's toml tag. It is strict: a key no field names is an error, and so
// is a value of the wrong type. Strings convert to what the field needs
// (durations like "30s", integers, true/false), since environment
// overrides are always strings. Every error names the key as
// settings.<key>.
func (s Settings) Decode(v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("settings: Decode needs a pointer to a struct, not %T", v)
	}
	return decodeTable(s, rv.Elem(), "settings")
}

func decodeTable(m map[string]any, sv reflect.Value, path string) error {
	fields := map[string]reflect.Value{}
	t := sv.Type()
	for i := 0; i < t.NumField(); i++ {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
		if tag != "" && tag != "-" && t.Field(i).IsExported() {
			fields[tag] = sv.Field(i)
		}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the first error is the same on every run
	for _, k := range keys {
		key := path + "." + k
		fv, ok := fields[k]
		if !ok {
			known := make([]string, 0, len(fields))
			for n := range fields {
				known = append(known, n)
			}
			slices.Sort(known)
			return fmt.Errorf("%s: unknown key (known: %s)", key, strings.Join(known, ", "))
		}
		if err := setValue(fv, m[k], key); err != nil {
			return err
		}
	}
	return nil
}

var (
	durationType    = reflect.TypeFor[time.Duration]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func setValue(fv reflect.Value, val any, key string) error {
	bad := func(want string) error {
		return fmt.Errorf("%s: %s is not %s", key, describe(val), want)
	}
	if fv.CanAddr() && fv.Addr().Type().Implements(textUnmarshaler) {
		s, ok := val.(string)
		if !ok {
			return bad("a string")
		}
		if err := fv.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		return nil
	}
	if fv.Type() == durationType {
		s, ok := val.(string)
		if !ok {
			return bad(`a duration like "30s"`)
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return bad(`a duration like "30s"`)
		}
		fv.SetInt(int64(d))
		return nil
	}
	switch fv.Kind() {
	case reflect.String:
		s, ok := val.(string)
		if !ok {
			return bad("a string")
		}
		fv.SetString(s)
	case reflect.Bool:
		switch b := val.(type) {
		case bool:
			fv.SetBool(b)
		case string:
			p, err := strconv.ParseBool(b)
			if err != nil {
				return bad("true or false")
			}
			fv.SetBool(p)
		default:
			return bad("true or false")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var n int64
		switch x := val.(type) {
		case int64:
			n = x
		case int:
			n = int64(x)
		case string:
			p, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64)
			if err != nil {
				return bad("an integer")
			}
			n = p
		default:
			return bad("an integer")
		}
		if fv.OverflowInt(n) {
			return fmt.Errorf("%s: %d is out of range", key, n)
		}
		fv.SetInt(n)
	case reflect.Float32, reflect.Float64:
		switch x := val.(type) {
		case float64:
			fv.SetFloat(x)
		case int64:
			fv.SetFloat(float64(x))
		case string:
			p, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
			if err != nil {
				return bad("a number")
			}
			fv.SetFloat(p)
		default:
			return bad("a number")
		}
	case reflect.Slice:
		if fv.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("%s: lists of %s are not supported", key, fv.Type().Elem())
		}
		var out []string
		switch x := val.(type) {
		case []any:
			for i, e := range x {
				s, ok := e.(string)
				if !ok {
					return fmt.Errorf("%s[%d]: %s is not a string", key, i, describe(e))
				}
				out = append(out, s)
			}
		case []string:
			out = append(out, x...)
		case string: // from the environment: comma-separated
			for _, p := range strings.Split(x, ",") {
				if p = strings.TrimSpace(p); p != "" {
					out = append(out, p)
				}
			}
		default:
			return bad("a list of strings")
		}
		fv.Set(reflect.ValueOf(out))
	case reflect.Struct:
		m, ok := val.(map[string]any)
		if !ok {
			return bad("a table")
		}
		return decodeTable(m, fv, key)
	default:
		return fmt.Errorf("%s: fields of type %s are not supported", key, fv.Type())
	}
	return nil
}

// describe names a value for an error: a string quoted (cut at 40 bytes;
// secrets never reach a plain setting, they are split off before), other
// values by their kind.
func describe(v any) string {
	switch x := v.(type) {
	case string:
		if len(x) > 40 {
			x = x[:40] + "…"
		}
		return fmt.Sprintf("%q", x)
	case bool:
		return "a boolean"
	case int64, int:
		return "an integer"
	case float64:
		return "a number"
	case []any:
		return "a list"
	case map[string]any:
		return "a table"
	case nil:
		return "empty"
	}
	return fmt.Sprintf("a %T", v)
}
