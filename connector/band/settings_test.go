package band

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/emulator/bandemu"
	"github.com/bridgeworks/bridge/internal/phoenix"
	"github.com/bridgeworks/bridge/internal/testutil"
)

func keyRef(v string) connector.Secrets {
	return connector.NewSecrets(map[string]connector.SecretRef{"api_key": {Value: v}}, nil)
}

// Band's settings are checked by its factory: errors name settings.<key>.
func TestSettingsErrorsNameTheKey(t *testing.T) {
	t.Parallel()
	f := Factory(false, Options{})
	cases := map[string]connector.Config{
		"settings.bogus: unknown key":                   {Settings: connector.Settings{"bogus": "x"}, Secrets: keyRef("k")},
		"settings.heartbeat_interval":                   {Settings: connector.Settings{"heartbeat_interval": "soon"}, Secrets: keyRef("k")},
		"settings.base_url":                             {Settings: connector.Settings{"base_url": "app.band.ai"}, Secrets: keyRef("k")},
		"settings.ws_url":                               {Settings: connector.Settings{"ws_url": "http://x"}, Secrets: keyRef("k")},
		"settings.api_key_env or settings.api_key_file": {Settings: connector.Settings{}},
	}
	for want, cfg := range cases {
		err := f.Check(cfg)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check(%v): %v, want mention of %q", cfg.Settings, err, want)
		}
		if _, err := f.New(cfg, connector.Deps{Log: zerolog.Nop()}); err == nil {
			t.Errorf("New(%v) accepted what Check refuses", cfg.Settings)
		}
	}
	// Strings convert, as from the environment.
	if err := f.Check(connector.Config{Settings: connector.Settings{"heartbeat_interval": "5s", "agent_id": "a"}, Secrets: keyRef("k")}); err != nil {
		t.Errorf("good settings: %v", err)
	}
}

// config.example.toml documents every Band setting under [connection.settings].
func TestExampleDocumentsEverySetting(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("..", "..", "config.example.toml"))
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(b), "[connection.settings]")
	if !ok {
		t.Fatal("config.example.toml has no [connection.settings]")
	}
	keys := []string{"api_key_env", "api_key_file"}
	st := reflect.TypeFor[Settings]()
	for i := range st.NumField() {
		keys = append(keys, st.Field(i).Tag.Get("toml"))
	}
	for _, k := range keys {
		if !strings.Contains(table, "\n"+k+" =") {
			t.Errorf("config.example.toml does not document settings.%s", k)
		}
	}
}

// A key read from a file heals after rotation without a new connector:
// the socket's redial and a refused REST call both read the file again.
func TestKeyFileRotation(t *testing.T) {
	t.Parallel()
	emu := bandemu.New(bandemu.Options{HeartbeatTimeout: 2 * time.Second})
	url, err := emu.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	file := filepath.Join(t.TempDir(), "key")
	write := func(k string) {
		if err := os.WriteFile(file, []byte(k+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(emu.APIKey())
	cfg := connector.Config{Name: "rot", Platform: "band",
		Settings: connector.Settings{"base_url": url, "agent_id": emu.AgentID()},
		Secrets:  connector.NewSecrets(map[string]connector.SecretRef{"api_key": {File: file}}, nil)}
	c, err := New(cfg, connector.Deps{Log: testutil.Logger(t)}, Options{
		Backoff: phoenix.Backoff{Base: 5 * time.Millisecond, Max: 20 * time.Millisecond, RapidFirst: 5 * time.Millisecond,
			RapidSecond: 5 * time.Millisecond, HoldDownBase: 20 * time.Millisecond, HoldDownMax: 20 * time.Millisecond, Refused: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testutil.Context(t, 30*time.Second)
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	go func() { // drain events so the session never blocks
		for {
			if _, _, err := c.Receive(ctx); err != nil {
				return
			}
		}
	}()

	// The socket: rotate, drop; the redial uses the new key.
	if !emu.RotateKey(emu.AgentID(), "rotated-key-1") {
		t.Fatal("rotate")
	}
	write("rotated-key-1")
	emu.DropSockets()
	testutil.Eventually(t, 20*time.Second, func() bool {
		return c.Stats().Reconnects > 0 && emu.Connected(emu.AgentID())
	}, "socket reconnected with the rotated key")

	// REST: rotate again without a socket drop; the command is refused
	// with 401 once, then made with the key read again.
	if !emu.RotateKey(emu.AgentID(), "rotated-key-2") {
		t.Fatal("rotate")
	}
	write("rotated-key-2")
	resp, err := c.Execute(ctx, connector.Command{ID: "1", Name: "me", Args: []byte(`{}`)})
	if err != nil || resp.Status != 200 {
		t.Fatalf("me after rotation: %+v %v", resp, err)
	}
}
