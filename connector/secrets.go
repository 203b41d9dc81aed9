package connector

import (
	"fmt"
	"os"
	"slices"
	"strings"
)

// SecretRef says where one secret comes from: an environment variable or a
// file. Value holds the secret itself for programs that build a [Config]
// in code (tests, an embedded bridge); the bridge's config never sets it,
// since secrets are never written in config text.
type SecretRef struct {
	Env   string // the name of an environment variable holding it
	File  string // the path of a file holding it, read again at every Get
	Value string
}

// Secrets are a connection's secrets by name ("api_key"). The bridge fills
// them from the settings table: every <name>_env and <name>_file key
// becomes the secret <name>. The zero value holds none.
type Secrets struct {
	// refs are sorted by name: a connection has one or two secrets, and a
	// map would cost it half a KiB for as long as it runs.
	refs      []namedRef
	lookupEnv func(string) (string, bool)
}

type namedRef struct {
	name string
	SecretRef
}

// NewSecrets returns secrets resolved through lookupEnv (nil means
// os.LookupEnv).
func NewSecrets(refs map[string]SecretRef, lookupEnv func(string) (string, bool)) Secrets {
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	s := Secrets{refs: make([]namedRef, 0, len(refs)), lookupEnv: lookupEnv}
	for n, r := range refs {
		s.refs = append(s.refs, namedRef{name: n, SecretRef: r})
	}
	slices.SortFunc(s.refs, func(a, b namedRef) int { return strings.Compare(a.name, b.name) })
	return s
}

// ref returns secret name's source.
func (s Secrets) ref(name string) (SecretRef, bool) {
	i, ok := slices.BinarySearchFunc(s.refs, name, func(r namedRef, n string) int { return strings.Compare(r.name, n) })
	if !ok {
		return SecretRef{}, false
	}
	return s.refs[i].SecretRef, true
}

// Has reports whether secret name is configured.
func (s Secrets) Has(name string) bool {
	_, ok := s.ref(name)
	return ok
}

// Names lists the configured secrets, sorted.
func (s Secrets) Names() []string {
	out := make([]string, 0, len(s.refs))
	for _, r := range s.refs {
		out = append(out, r.name)
	}
	return out
}

// Get resolves secret name now. A file is read at every call, so a
// connector that calls Get at each (re)connect picks up a rotated key
// without a restart. The error names the key, never the value.
func (s Secrets) Get(name string) (string, error) {
	r, ok := s.ref(name)
	switch {
	case !ok:
		return "", fmt.Errorf("settings.%[1]s_env or settings.%[1]s_file is not set", name)
	case r.Value != "":
		return r.Value, nil
	case r.Env != "":
		lookup := s.lookupEnv
		if lookup == nil {
			lookup = os.LookupEnv
		}
		v, ok := lookup(r.Env)
		if !ok || v == "" {
			return "", fmt.Errorf("settings.%s_env: environment variable %s is not set", name, r.Env)
		}
		return v, nil
	case r.File != "":
		b, err := os.ReadFile(r.File)
		if err != nil {
			return "", fmt.Errorf("settings.%s_file: %w", name, err)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", fmt.Errorf("settings.%s_file: %s is empty", name, r.File)
		}
		return v, nil
	}
	return "", fmt.Errorf("settings.%s: no source", name)
}

// SplitSettings separates a connection's platform table into plain
// settings and secrets: every string key <name>_env or <name>_file
// becomes the secret <name> (an empty string counts as unset). A plain key
// named in secret (the secrets the platform declares) is refused: secrets
// never come from config text. Errors name the key as settings.<key>.
func SplitSettings(table map[string]any, secret []string, lookupEnv func(string) (string, bool)) (Settings, Secrets, error) {
	plain := Settings{}
	refs := map[string]SecretRef{}
	keys := make([]string, 0, len(table))
	for k := range table {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := table[k]
		name, kind := "", ""
		switch {
		case strings.HasSuffix(k, "_env") && len(k) > len("_env"):
			name, kind = strings.TrimSuffix(k, "_env"), "env"
		case strings.HasSuffix(k, "_file") && len(k) > len("_file"):
			name, kind = strings.TrimSuffix(k, "_file"), "file"
		}
		if kind == "" {
			if slices.Contains(secret, k) {
				return nil, Secrets{}, fmt.Errorf("settings.%[1]s: a secret is never written in the config; set %[1]s_env (an environment variable) or %[1]s_file (a file) instead", k)
			}
			plain[k] = v
			continue
		}
		s, ok := v.(string)
		if !ok {
			return nil, Secrets{}, fmt.Errorf("settings.%s: %s is not a string", k, describe(v))
		}
		if s == "" {
			continue
		}
		r := refs[name]
		if r.Env != "" || r.File != "" {
			return nil, Secrets{}, fmt.Errorf("settings.%[1]s_env and settings.%[1]s_file are both set; choose one", name)
		}
		if kind == "env" {
			r.Env = s
		} else {
			r.File = s
		}
		refs[name] = r
	}
	return plain, NewSecrets(refs, lookupEnv), nil
}
