package bridge

import (
	"strings"
	"testing"

	"github.com/bridgeworks/bridge/config"
	"github.com/bridgeworks/bridge/internal/testutil"
)

// New (and so check-config) reports a bad platform setting or secret of
// any connection in one line naming the connection and the key, and never
// shows a secret's value.
func TestNewChecksSettings(t *testing.T) {
	t.Parallel()
	head := "[[connection]]\nname = \"a\"\nplatform = \"band\"\n[connection.settings]\n"
	cases := map[string]string{
		"agent_id = \"x\"\nbogus = 1\napi_key_env = \"K\"\n":   `connection "a": settings.bogus: unknown key`,
		"heartbeat_interval = \"soon\"\napi_key_env = \"K\"\n": `connection "a": settings.heartbeat_interval: "soon" is not a duration`,
		"api_key = \"sekrit\"\n":                               `connection "a": settings.api_key: a secret is never written in the config`,
		"agent_id = \"x\"\n":                                   `connection "a": settings.api_key_env or settings.api_key_file is required`,
		"api_key_env = \"MISSING\"\n":                          `connection "a": settings.api_key_env: environment variable MISSING is not set`,
		"api_key_file = \"/nonexistent/key\"\n":                `connection "a": settings.api_key_file: open /nonexistent/key`,
		"api_key_env = \"K\"\napi_key_file = \"/f\"\n":         `connection "a": settings.api_key_env and settings.api_key_file are both set`,
		"base_url = \"app.band.ai\"\napi_key_env = \"K\"\n":    `connection "a": settings.base_url "app.band.ai" is not an http(s) URL`,
	}
	env := func(k string) (string, bool) { return "sekrit", k == "K" }
	for in, want := range cases {
		c, err := config.Parse([]byte(head+in), nil)
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		_, err = New(c, Options{Log: testutil.Logger(t), Registry: fastBand(), LookupEnv: env})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want mention of %q", in, err, want)
			continue
		}
		if strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "sekrit") {
			t.Errorf("%q: error is not one line or shows the secret: %q", in, err)
		}
	}
	c, err := config.Parse([]byte(head+"agent_id = \"x\"\napi_key_env = \"K\"\nheartbeat_interval = \"5s\"\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(c, Options{Log: testutil.Logger(t), Registry: fastBand(), LookupEnv: env}); err != nil {
		t.Errorf("good settings: %v", err)
	}
}
