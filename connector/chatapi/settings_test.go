package chatapi_test

import (
	"strings"
	"testing"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/connector/chatapi"
)

// Check names the key at fault; New refuses what Check refuses.
func TestSettingsCheck(t *testing.T) {
	t.Parallel()
	f := chatapi.Factory()
	key := connector.NewSecrets(map[string]connector.SecretRef{"api_key": {Value: "k"}}, nil)
	for _, c := range []struct {
		settings connector.Settings
		secrets  connector.Secrets
		want     string
	}{
		{connector.Settings{}, connector.Secrets{}, "settings.api_key_env"},
		{connector.Settings{"base_url": "ftp://x"}, key, "settings.base_url"},
		{connector.Settings{"mark_read": "all"}, key, "settings.mark_read"},
		{connector.Settings{"inbox_agents": []any{"a", "a"}}, key, "settings.inbox_agents[1]"},
		{connector.Settings{"inbox_agents": []any{".."}}, key, "settings.inbox_agents[0]"},
		{connector.Settings{"poll_interval": "1ms"}, key, "settings.poll_interval"},
		{connector.Settings{"rate_limit": -1.0}, key, "settings.rate_limit"},
		{connector.Settings{"nope": "x"}, key, "settings.nope"},
	} {
		cfg := connector.Config{Settings: c.settings, Secrets: c.secrets}
		err := f.Check(cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Check(%v) = %v, want an error naming %s", c.settings, err, c.want)
		}
		if _, err := f.New(cfg, connector.Deps{}); err == nil {
			t.Errorf("New(%v) accepted what Check refuses", c.settings)
		}
	}
	// Strings convert, as from the environment.
	if err := f.Check(connector.Config{Settings: connector.Settings{"poll_interval": "5s", "rate_limit": "2.5", "inbox_agents": "a, b"}, Secrets: key}); err != nil {
		t.Errorf("good settings: %v", err)
	}
}
