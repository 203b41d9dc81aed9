package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestExampleLoads(t *testing.T) {
	t.Parallel()
	c, err := Load(filepath.Join("..", "config.example.toml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.NATS.Prefix != "bridge" || len(c.Connection) != 1 || c.Dispatch[0].Timeout.D() != 120*time.Second {
		t.Fatalf("unexpected config: %+v", c)
	}
}

// The example documents every key: a key added to a struct but not to the
// example fails here.
func TestExampleDocumentsEveryKey(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("..", "config.example.toml"))
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	collectKeys(&keys, Config{})
	for _, k := range keys {
		if !strings.Contains(string(b), "\n"+k+" =") {
			t.Errorf("config.example.toml does not document key %q", k)
		}
	}
}

// The settings table keeps what TOML wrote (the platform decodes it); env
// overrides of its keys win over the file.
func TestConnectionSettings(t *testing.T) {
	t.Parallel()
	in := "[[connection]]\nname = \"a\"\nplatform = \"band\"\n[connection.settings]\nagent_id = \"x\"\nheartbeat_interval = \"30s\"\nn = 3\n"
	c, err := Parse([]byte(in), []string{"BRIDGE_CONNECTION_A_SETTINGS_AGENT_ID=y"})
	if err != nil {
		t.Fatal(err)
	}
	s := c.Connection[0].Settings
	if s["agent_id"] != "y" || s["heartbeat_interval"] != "30s" || s["n"] != int64(3) {
		t.Fatalf("settings: %#v", s)
	}
	cn := c.Connection[0]
	if cn.ReconnectInitial.D() != 500*time.Millisecond || cn.ReconnectMax.D() != 30*time.Second {
		t.Fatalf("reconnect defaults: %s %s", cn.ReconnectInitial.D(), cn.ReconnectMax.D())
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	c, err := Parse([]byte(""), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.NATS.URL != "" || c.NATS.Embedded.Listen != "127.0.0.1:4222" || c.HTTP.Listen != "127.0.0.1:8080" || c.NATS.DuplicateWindow.D() != 20*time.Minute {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestErrorsNameTheKey(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"[nats]\nurll = \"x\"\n":                                     "unknown key nats.urll",
		"bogus = 1\n":                                                "unknown key bogus",
		"[nats]\nduplicate_window = \"5m\"\n":                        "nats.duplicate_window",
		"[nats]\nduplicate_window = \"soon\"\n":                      "duplicate_window",
		"[log]\nlevel = \"loud\"\n":                                  "log.level",
		"[http]\nlisten = \"8080\"\n":                                "http.listen",
		"[[connection]]\nname = \"Bad Name\"\nplatform = \"band\"\n": "connection[0].name",
		"[[connection]]\nname = \"a\"\n":                             "platform is missing",
		"[[connection]]\nname = \"a\"\nplatform = \"band\"\n[[connection]]\nname = \"a\"\nplatform = \"band\"\n":       "used twice",
		"[[connection]]\nname = \"a\"\nplatform = \"band\"\napi_key = \"sekrit\"\n":                                    "unknown key connection.api_key",
		"[[dispatch]]\nconnection = \"nope\"\n":                                                                        "dispatch[0].connection",
		"[nats]\nreplicas = \"three\"\n":                                                                               "replicas",
		"[[connection]]\nname = \"a\"\nplatform = \"band\"\n[[dispatch]]\nconnection = \"a\"\nstart = \"yesterday\"\n": "dispatch[0].start",
		"[nats.embedded]\nmax_store = \"lots\"\n":                                                                      "nats.embedded.max_store",
		"[nats.embedded]\nmax_store = \"1KiB\"\n":                                                                      "nats.embedded.max_store",
		"[[connection]]\nname = \"a\"\nplatform = \"band\"\nagent_id = \"x\"\n":                                        `connection "a": agent_id moved to [connection.settings]`,
		"[[connection]]\nplatform = \"band\"\napi_key_env = \"K\"\n":                                                   "connection[0]: api_key_env moved to [connection.settings]",
		"[[connection]]\nname = \"a\"\nplatform = \"band\"\nreconnect_initial = \"2m\"\nreconnect_max = \"1m\"\n":      "reconnect_initial 2m0s and reconnect_max 1m0s",
	}
	for in, want := range cases {
		_, err := Parse([]byte(in), nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want mention of %q", in, err, want)
			continue
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error is not one line: %q", in, err)
		}
		if strings.Contains(err.Error(), "sekrit") {
			t.Errorf("error leaks a value: %v", err)
		}
	}
}

func TestEnvOverrides(t *testing.T) {
	t.Parallel()
	in := "[[connection]]\nname = \"support-bot\"\nplatform = \"band\"\n[[dispatch]]\nconnection = \"support-bot\"\n"
	env := []string{
		"BRIDGE_NATS_URL=nats://a:4222,nats://b:4222",
		"BRIDGE_NATS_EMBEDDED_STORE_DIR=/tmp/x",
		"BRIDGE_HTTP_LISTEN=0.0.0.0:9090",
		"BRIDGE_CONNECTION_SUPPORT_BOT_SETTINGS_BASE_URL=http://127.0.0.1:4000",
		"BRIDGE_CONNECTION_SUPPORT_BOT_SETTINGS_HEARTBEAT_INTERVAL=5s",
		"BRIDGE_CONNECTION_SUPPORT_BOT_RECONNECT_MAX=10s",
		"BRIDGE_CONNECTION_SUPPORT_BOT_ENABLED=false",
		"BRIDGE_DISPATCH_0_TIMEOUT=5s",
		"BRIDGE_DISPATCH_0_EVENTS=message_created, room_added",
		"BRIDGE_API_KEY=ignored-secret",
		"OTHER=1",
	}
	c, err := Parse([]byte(in), env)
	if err != nil {
		t.Fatal(err)
	}
	if c.NATS.URL != "nats://a:4222,nats://b:4222" || c.NATS.Embedded.StoreDir != "/tmp/x" || c.HTTP.Listen != "0.0.0.0:9090" {
		t.Errorf("nats/http not overridden: %+v %+v", c.NATS, c.HTTP)
	}
	cn := c.Connection[0]
	if cn.Settings["base_url"] != "http://127.0.0.1:4000" || cn.Settings["heartbeat_interval"] != "5s" || cn.ReconnectMax.D() != 10*time.Second || cn.IsEnabled() {
		t.Errorf("connection not overridden: %+v", cn)
	}
	d := c.Dispatch[0]
	if d.Timeout.D() != 5*time.Second || len(d.Events) != 2 || d.Events[1] != "room_added" {
		t.Errorf("dispatch not overridden: %+v", d)
	}
	// A variable of a key that moved into the settings table says where.
	_, err = Parse([]byte(in), []string{"BRIDGE_CONNECTION_SUPPORT_BOT_AGENT_ID=x"})
	if err == nil || !strings.Contains(err.Error(), "BRIDGE_CONNECTION_SUPPORT_BOT_SETTINGS_AGENT_ID") {
		t.Errorf("moved env key: err = %v", err)
	}
	_, err = Parse([]byte(in), []string{"BRIDGE_DISPATCH_0_MAX_ATTEMPTS=many"})
	if err == nil || !strings.Contains(err.Error(), "BRIDGE_DISPATCH_0_MAX_ATTEMPTS") {
		t.Errorf("bad env value: err = %v", err)
	}
}

func TestSecret(t *testing.T) {
	t.Parallel()
	env := func(k string) (string, bool) {
		if k == "KEY" {
			return "s3cret", true
		}
		return "", false
	}
	if v, err := Secret("api_key", "KEY", "", env); err != nil || v != "s3cret" {
		t.Fatalf("env secret: %q %v", v, err)
	}
	if _, err := Secret("api_key", "MISSING", "", env); err == nil || !strings.Contains(err.Error(), "api_key_env") {
		t.Fatalf("missing env: %v", err)
	}
	f := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(f, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if v, err := Secret("api_key", "", f, env); err != nil || v != "from-file" {
		t.Fatalf("file secret: %q %v", v, err)
	}
}
