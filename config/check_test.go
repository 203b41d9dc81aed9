package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every mistake of a config is reported at once, one line each naming
// its key, environment mistakes included.
func TestParseReportsEveryMistake(t *testing.T) {
	t.Parallel()
	in := `[log]
level = "loud"
[nats]
duplicate_window = "5m"
replicas = 9
[http]
listen = "8080"
[[connection]]
name = "Bad Name"
platform = "band"
[[connection]]
name = "b"
reconnect_initial = "2m"
reconnect_max = "1m"
[[dispatch]]
connection = "nope"
`
	_, err := Parse([]byte(in), []string{"BRIDGE_LEASE_TTL=soon", "BRIDGE_NATS_URL=::::"})
	if err == nil {
		t.Fatal("a broken config parsed")
	}
	lines := strings.Split(err.Error(), "\n")
	for _, want := range []string{
		"log.level", "nats.duplicate_window", "nats.replicas", "http.listen", "connection[0].name",
		`connection "b": platform is missing`, `connection "b": reconnect_initial`, "dispatch[0].connection",
		"BRIDGE_LEASE_TTL", "nats.url",
	} {
		n := 0
		for _, l := range lines {
			if strings.Contains(l, want) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d lines mention %q, want 1:\n%s", n, want, err)
		}
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "config: ") {
			t.Errorf("line %q does not start with \"config: \"", l)
		}
	}
}

func TestNATSURLs(t *testing.T) {
	t.Parallel()
	good := []string{"", "nats://127.0.0.1:4222", "tls://nats.example.com", "localhost:4222", "nats://a:4222, nats://b:4222",
		"nats://[::1]:4222", "ws://nats:8080", "wss://nats.example.com", "nats://user:pw@nats:4222"}
	for _, u := range good {
		if err := checkNATSURLs(u); err != nil {
			t.Errorf("%q: %v", u, err)
		}
	}
	bad := map[string]string{
		"::::":                          "neither a name nor an IP",
		"http://nats:4222":              `scheme "http"`,
		"nats://nats:99999":             "port",
		"nats://nats:x":                 "port",
		"nats://a:4222,,nats://b:4222":  "empty entry",
		"nats://":                       "no host",
		"nats://nats:4222/path":         "no path",
		"nats://us er:s3cret@nats:4222": "entry 1",
		"nats://we*ird:4222":            "characters",
	}
	for u, want := range bad {
		err := checkNATSURLs(u)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "nats.url: ") {
			t.Errorf("%q: err = %v, want nats.url: … %q", u, err, want)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%q: error shows the password: %v", u, err)
		}
	}
	// The case from the field: the environment sets it, Parse refuses it.
	_, err := Parse(nil, []string{"BRIDGE_NATS_URL=::::"})
	if err == nil || !strings.Contains(err.Error(), `config: nats.url: "::::" is not a NATS server URL`) {
		t.Fatalf("BRIDGE_NATS_URL=::::: %v", err)
	}
}

func TestCheckFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ok := filepath.Join(dir, "ok")
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(ok, []byte("s3cret-content"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	c := &Config{NATS: NATS{
		CredsFile: filepath.Join(dir, "missing.creds"), NKeySeedFile: dir, TLSCAFile: ok,
		TLSCertFile: ok, TLSKeyFile: empty, PasswordFile: ok,
	}}
	err := c.CheckFiles()
	if err == nil {
		t.Fatal("missing, directory and empty files passed")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 lines, got:\n%s", err)
	}
	for i, want := range []string{"nats.nkey_seed_file: ", "nats.creds_file: ", "nats.tls_key_file: "} {
		if !strings.HasPrefix(lines[i], want) {
			t.Errorf("line %d = %q, want it to start with %q", i, lines[i], want)
		}
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error shows file content: %v", err)
	}
	if os.Getuid() != 0 { // root reads anything
		unreadable := filepath.Join(dir, "unreadable")
		if err := os.WriteFile(unreadable, []byte("x"), 0o000); err != nil {
			t.Fatal(err)
		}
		c := &Config{NATS: NATS{CredsFile: unreadable}}
		if err := c.CheckFiles(); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("unreadable creds file: %v", err)
		}
	}
	if err := (&Config{NATS: NATS{CredsFile: ok}}).CheckFiles(); err != nil {
		t.Errorf("readable file: %v", err)
	}
}
