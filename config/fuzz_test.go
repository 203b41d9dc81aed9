package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary TOML and one arbitrary environment entry to
// Parse. It must never panic; an error is one line starting "config: "; a
// config it accepts validates again and keeps its defaults filled.
// Seeds: testdata/fuzz/FuzzParse and the example config.
func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("..", "config.example.toml")); err == nil {
		f.Add(b, "BRIDGE_NATS_URL=nats://a:4222")
	}
	f.Add([]byte("[nats]\nurl = \"\"\n"), "")
	f.Add([]byte("[[connection]]\nname = \"a\"\nplatform = \"band\"\n[[dispatch]]\nconnection = \"a\"\n"), "BRIDGE_DISPATCH_0_TIMEOUT=5s")
	f.Add([]byte("[[connection]]\nname = \"a-b\"\nplatform = \"band\"\n"), "BRIDGE_CONNECTION_A_B_ENABLED=maybe")
	f.Fuzz(func(t *testing.T, b []byte, envEntry string) {
		var env []string
		if envEntry != "" {
			env = []string{envEntry}
		}
		c, err := Parse(b, env)
		if err != nil {
			msg := err.Error()
			if strings.ContainsAny(msg, "\n\r") {
				t.Fatalf("error is not one line: %q", msg)
			}
			if !strings.HasPrefix(msg, "config: ") {
				t.Fatalf("error does not start with \"config: \": %q", msg)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted config does not validate again: %v", err)
		}
		if c.NATS.Prefix == "" || c.Log.Level == "" || c.HTTP.Listen == "" || c.NATS.DuplicateWindow == 0 {
			t.Fatalf("defaults not filled: %+v", c)
		}
		for _, cn := range c.Connection {
			if cn.MaxParallelRooms < 1 || cn.CommandMaxAttempts < 1 {
				t.Fatalf("connection %q: limits below 1: %+v", cn.Name, cn)
			}
		}
	})
}
