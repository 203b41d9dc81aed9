package config

import (
	"reflect"
	"strings"
)

// collectKeys lists the leaf TOML key names (last path element) of v.
func collectKeys(keys *[]string, v any) {
	walkKeys(keys, reflect.TypeOf(v))
}

func walkKeys(keys *[]string, t reflect.Type) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		ft := f.Type
		switch {
		case ft.Kind() == reflect.Struct && ft != reflect.TypeFor[Duration]():
			walkKeys(keys, ft)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			walkKeys(keys, ft.Elem())
		case ft.Kind() == reflect.Map: // a platform's table: its keys are the platform's (tested there)
		default:
			*keys = append(*keys, tag)
		}
	}
}
