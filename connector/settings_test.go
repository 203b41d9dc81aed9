package connector

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type sampleSettings struct {
	URL      string        `toml:"url"`
	Every    time.Duration `toml:"every"`
	N        int           `toml:"n"`
	On       bool          `toml:"on"`
	Rate     float64       `toml:"rate"`
	Rooms    []string      `toml:"rooms"`
	Internal string
}

func TestSettingsDecode(t *testing.T) {
	t.Parallel()
	// As TOML decodes it…
	var s sampleSettings
	err := Settings{"url": "http://x", "every": "30s", "n": int64(3), "on": true, "rate": 1.5, "rooms": []any{"a", "b"}}.Decode(&s)
	if err != nil || s.URL != "http://x" || s.Every != 30*time.Second || s.N != 3 || !s.On || s.Rate != 1.5 || len(s.Rooms) != 2 {
		t.Fatalf("decoded %+v, %v", s, err)
	}
	// …and as the environment gives it: strings.
	var e sampleSettings
	err = Settings{"every": "5m", "n": "7", "on": "false", "rate": "2", "rooms": "a, b ,c"}.Decode(&e)
	if err != nil || e.Every != 5*time.Minute || e.N != 7 || e.On || e.Rate != 2 || len(e.Rooms) != 3 {
		t.Fatalf("decoded from strings %+v, %v", e, err)
	}
	cases := map[string]Settings{
		"settings.bogus: unknown key (known: every, n, on, rate, rooms, url)": {"bogus": 1},
		"settings.every: an integer is not a duration like \"30s\"":           {"every": int64(30)},
		"settings.n: \"many\" is not an integer":                              {"n": "many"},
		"settings.on: \"yes please\" is not true or false":                    {"on": "yes please"},
		"settings.rooms[1]: an integer is not a string":                       {"rooms": []any{"a", int64(2)}},
		"settings.url: an integer is not a string":                            {"url": int64(1)},
	}
	for want, in := range cases {
		var v sampleSettings
		if err := in.Decode(&v); err == nil || err.Error() != want {
			t.Errorf("Decode(%v) = %v, want %q", in, err, want)
		}
	}
}

func TestSplitSettingsAndSecrets(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("tok-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(k string) (string, bool) { return "k3y", k == "KEY" }
	plain, sec, err := SplitSettings(map[string]any{
		"url": "http://x", "api_key_env": "KEY", "token_file": file, "unused_file": "",
	}, []string{"api_key"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if len(plain) != 1 || plain["url"] != "http://x" {
		t.Errorf("plain settings %v: secret keys must leave the table", plain)
	}
	if got := strings.Join(sec.Names(), ","); got != "api_key,token" {
		t.Errorf("secrets %s", got)
	}
	if !sec.Has("api_key") || !sec.Has("token") || sec.Has("unused") || sec.Has("other") {
		t.Errorf("Has: api_key %v, token %v, unused %v, other %v", sec.Has("api_key"), sec.Has("token"), sec.Has("unused"), sec.Has("other"))
	}
	if v, err := sec.Get("api_key"); err != nil || v != "k3y" {
		t.Errorf("api_key: %q %v", v, err)
	}
	// A file is read at every Get: a rotated file is picked up.
	if v, err := sec.Get("token"); err != nil || v != "tok-1" {
		t.Errorf("token: %q %v", v, err)
	}
	if err := os.WriteFile(file, []byte("tok-2"), 0o600); err != nil {
		t.Fatal(err)
	}
	if v, err := sec.Get("token"); err != nil || v != "tok-2" {
		t.Errorf("token after rotation: %q %v", v, err)
	}
	if _, err := sec.Get("other"); err == nil || !strings.Contains(err.Error(), "settings.other_env or settings.other_file") {
		t.Errorf("missing secret: %v", err)
	}

	errs := map[string]map[string]any{
		"settings.api_key: a secret is never written in the config":   {"api_key": "sekrit"},
		"settings.api_key_env and settings.api_key_file are both set": {"api_key_env": "A", "api_key_file": "/f"},
		"settings.token_env: an integer is not a string":              {"token_env": int64(3)},
	}
	for want, in := range errs {
		_, _, err := SplitSettings(in, []string{"api_key"}, env)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("SplitSettings(%v) = %v, want %q", in, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "sekrit") {
			t.Errorf("error shows a secret: %v", err)
		}
	}
	// Unset sources name the key, never a value.
	_, sec, _ = SplitSettings(map[string]any{"api_key_env": "NOPE", "token_file": filepath.Join(t.TempDir(), "none")}, nil, env)
	if _, err := sec.Get("api_key"); err == nil || !strings.Contains(err.Error(), "settings.api_key_env: environment variable NOPE is not set") {
		t.Errorf("unset env: %v", err)
	}
	if _, err := sec.Get("token"); err == nil || !strings.Contains(err.Error(), "settings.token_file") {
		t.Errorf("missing file: %v", err)
	}
}
