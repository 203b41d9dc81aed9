package config

import (
	"encoding"
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// EnvPrefix starts every environment override.
const EnvPrefix = "BRIDGE_"

// ApplyEnv overrides config keys from environment entries ("K=V", as from
// os.Environ). The variable for a key is BRIDGE_ followed by its TOML path,
// upper-cased, with "." written as "_":
//
//	nats.url                    BRIDGE_NATS_URL
//	nats.embedded.store_dir     BRIDGE_NATS_EMBEDDED_STORE_DIR
//	http.listen                 BRIDGE_HTTP_LISTEN
//	connection "support-bot"    BRIDGE_CONNECTION_SUPPORT_BOT_ENABLED   (by name, "-" as "_")
//	  its settings.base_url     BRIDGE_CONNECTION_SUPPORT_BOT_SETTINGS_BASE_URL
//	dispatch #0                 BRIDGE_DISPATCH_0_TIMEOUT               (by position)
//
// Lists take comma-separated values. A platform setting's variable sets the
// key (lower-cased) to the string as it is; the platform converts it. Variables that name no key are ignored
// (BRIDGE_* is a natural prefix for secrets too); a value that does not parse
// is an error naming the variable.
func ApplyEnv(c *Config, env []string) error {
	vars := map[string]string{}
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if ok && strings.HasPrefix(k, EnvPrefix) {
			vars[k] = v
		}
	}
	if len(vars) == 0 {
		return nil
	}
	return walk(reflect.ValueOf(c).Elem(), strings.TrimSuffix(EnvPrefix, "_"), vars)
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

func walk(v reflect.Value, name string, vars map[string]string) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		fname := name + "_" + envToken(tag)
		fv := v.Field(i)
		switch {
		case fv.Kind() == reflect.Struct && !reflect.PointerTo(fv.Type()).Implements(textUnmarshaler):
			if err := walk(fv, fname, vars); err != nil {
				return err
			}
		case fv.Kind() == reflect.Map && fv.Type().Key().Kind() == reflect.String && fv.Type().Elem().Kind() == reflect.Interface:
			// A platform table: BRIDGE_…_SETTINGS_<KEY> sets key (lower-cased)
			// to the string; the platform's decoder converts it.
			for k, val := range vars {
				key, ok := strings.CutPrefix(k, fname+"_")
				if !ok || key == "" {
					continue
				}
				if fv.IsNil() {
					fv.Set(reflect.MakeMap(fv.Type()))
				}
				fv.SetMapIndex(reflect.ValueOf(strings.ToLower(key)), reflect.ValueOf(val))
			}
		case fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.Struct:
			for j := 0; j < fv.Len(); j++ {
				el := fv.Index(j)
				id := strconv.Itoa(j)
				if nf := el.FieldByName("Name"); nf.IsValid() && nf.Kind() == reflect.String && nf.String() != "" {
					id = envToken(nf.String())
				}
				if err := walk(el, fname+"_"+id, vars); err != nil {
					return err
				}
				if tag == "connection" {
					for _, k := range movedToSettings {
						if _, ok := vars[fname+"_"+id+"_"+envToken(k)]; ok {
							return fmt.Errorf("environment %s_%s_%s: %s moved to [connection.settings]; set %s_%s_SETTINGS_%s", fname, id, envToken(k), k, fname, id, envToken(k))
						}
					}
				}
			}
		default:
			val, ok := vars[fname]
			if !ok {
				continue
			}
			if err := setScalar(fv, val); err != nil {
				return fmt.Errorf("environment %s: %w", fname, err)
			}
		}
	}
	return nil
}

func envToken(s string) string {
	return strings.NewReplacer("-", "_", ".", "_").Replace(strings.ToUpper(s))
}

func setScalar(fv reflect.Value, val string) error {
	if fv.CanAddr() && fv.Addr().Type().Implements(textUnmarshaler) {
		return fv.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(val))
	}
	switch fv.Kind() {
	case reflect.String:
		fv.SetString(val)
	case reflect.Int, reflect.Int64, reflect.Int32:
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not an integer", val)
		}
		fv.SetInt(n)
	case reflect.Bool:
		b, err := strconv.ParseBool(val)
		if err != nil {
			return fmt.Errorf("%q is not true or false", val)
		}
		fv.SetBool(b)
	case reflect.Pointer:
		nv := reflect.New(fv.Type().Elem())
		if err := setScalar(nv.Elem(), val); err != nil {
			return err
		}
		fv.Set(nv)
	case reflect.Slice:
		if fv.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("cannot set a list of %s from the environment", fv.Type().Elem())
		}
		var parts []string
		for _, p := range strings.Split(val, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		fv.Set(reflect.ValueOf(parts))
	default:
		return fmt.Errorf("cannot set a %s from the environment", fv.Type())
	}
	return nil
}
