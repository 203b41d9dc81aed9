package band

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/bridgeworks/bridge/connector"
)

// Settings are Band's keys of a connection's [connection.settings] table.
// The API key is a secret: api_key_env or api_key_file, never api_key.
type Settings struct {
	// AgentID is the agent's id; empty means the key's own agent (GET
	// /agent/me tells it). Set, it must match the key's agent.
	AgentID string `toml:"agent_id"`
	// BaseURL is the REST base, default https://app.band.ai (Thenvoi's host
	// for the thenvoi alias).
	BaseURL string `toml:"base_url"`
	// WSURL is the socket URL, default derived from BaseURL
	// (wss://<host>/api/v1/socket/websocket).
	WSURL string `toml:"ws_url"`
	// HeartbeatInterval between socket heartbeats, default 30s (Band closes
	// sockets idle for ~45s; a heartbeat unanswered for one interval
	// reconnects).
	HeartbeatInterval time.Duration `toml:"heartbeat_interval"`
}

// secretAPIKey is the one secret Band needs.
const secretAPIKey = "api_key"

// settings decodes and checks cfg's table; defBase is the platform's
// default host. It does no I/O.
func settings(cfg connector.Config, defBase string) (Settings, error) {
	var s Settings
	if err := cfg.Settings.Decode(&s); err != nil {
		return Settings{}, err
	}
	if !cfg.Secrets.Has(secretAPIKey) {
		return Settings{}, fmt.Errorf("settings.api_key_env or settings.api_key_file is required (the agent's API key)")
	}
	if s.BaseURL == "" {
		s.BaseURL = defBase
	}
	base, err := url.Parse(s.BaseURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return Settings{}, fmt.Errorf("settings.base_url %q is not an http(s) URL", s.BaseURL)
	}
	if s.WSURL == "" {
		u := *base
		u.Scheme = map[string]string{"http": "ws", "https": "wss"}[base.Scheme]
		u.Path = strings.TrimRight(u.Path, "/") + socketPath
		s.WSURL = u.String()
	} else if u, err := url.Parse(s.WSURL); err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return Settings{}, fmt.Errorf("settings.ws_url %q is not a ws(s) URL", s.WSURL)
	}
	if s.HeartbeatInterval < 0 || (s.HeartbeatInterval > 0 && s.HeartbeatInterval < 10*time.Millisecond) {
		return Settings{}, fmt.Errorf("settings.heartbeat_interval %s is shorter than 10ms", s.HeartbeatInterval)
	}
	return s, nil
}

// ConfigFor is the config of a connector built in code (tests, tools):
// base URL, agent id and the API key itself.
func ConfigFor(baseURL, agentID, apiKey string) connector.Config {
	return connector.Config{
		Name: "band", Platform: "band",
		Settings: connector.Settings{"base_url": baseURL, "agent_id": agentID},
		Secrets:  connector.NewSecrets(map[string]connector.SecretRef{secretAPIKey: {Value: apiKey}}, nil),
	}
}

// apiKey reads the key now: a key file rotated since the last read is
// picked up at the next (re)connect or refused REST call.
func (c *Connector) apiKey() (string, error) {
	k, err := c.cfg.Secrets.Get(secretAPIKey)
	if err != nil {
		return "", fmt.Errorf("band: %w", err)
	}
	c.rest.setKey(k)
	return k, nil
}
