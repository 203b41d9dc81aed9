package polyai

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/bridgeworks/bridge/connector"
)

// DefaultBaseURL is the REST base of PolyAI's US cluster; other clusters
// (uk-1, euw-1) are set with base_url.
const DefaultBaseURL = "https://messaging.us-1.poly.ai"

// secretConnectorToken is the one secret PolyAI needs: the connector token
// sent as X-Token when minting access tokens.
const secretConnectorToken = "connector_token"

// Settings are PolyAI's keys of a connection's [connection.settings]
// table. The connector token is a secret: connector_token_env or
// connector_token_file.
type Settings struct {
	// BaseURL is the REST base, default DefaultBaseURL.
	BaseURL string `toml:"base_url"`
	// WSURL is the socket URL, default derived from BaseURL (wss://<host>/ws).
	WSURL string `toml:"ws_url"`
	// Host is the host identifier registered with the connector token,
	// sent as X-Host (a web origin or an app id). Required.
	Host string `toml:"host"`
	// Platform is the platform field of new sessions (web, ios, android,
	// ios-web, android-web, custom); empty leaves the server's default.
	Platform string `toml:"platform"`
	// Streaming is the default of create_session's streaming argument,
	// default false.
	Streaming bool `toml:"streaming"`
	// ManualJoin stops the bridge asking the PolyAI agent to join a new
	// session; workers then send the join command. Default false.
	ManualJoin bool `toml:"manual_join"`
	// HeartbeatInterval overrides the interval SESSION_START advertises
	// (default: the advertised one, 30s when none is).
	HeartbeatInterval time.Duration `toml:"heartbeat_interval"`
	// EchoTimeout is how long send_message waits for the echo before it
	// sends the message again (with the same client_event_id), growing
	// with each resend; default 5s.
	EchoTimeout time.Duration `toml:"echo_timeout"`
	// MaxResends bounds the resends of one message, default 3; after
	// them the command ends with an unknown outcome.
	MaxResends int `toml:"max_resends"`
	// StreamTimeout is how long a streamed reply may stay incomplete
	// before what arrived is assembled, default 30s.
	StreamTimeout time.Duration `toml:"stream_timeout"`
	// StateFlush is how often cursors are written to the state store,
	// default 1s (a session's creation, replacement and end are written
	// at once).
	StateFlush time.Duration `toml:"state_flush"`
}

// settings decodes and checks cfg's table; it does no I/O.
func settings(cfg connector.Config) (Settings, error) {
	var s Settings
	if err := cfg.Settings.Decode(&s); err != nil {
		return Settings{}, err
	}
	if !cfg.Secrets.Has(secretConnectorToken) {
		return Settings{}, fmt.Errorf("settings.connector_token_env or settings.connector_token_file is required (the connector token PolyAI provisioned)")
	}
	if strings.TrimSpace(s.Host) == "" {
		return Settings{}, fmt.Errorf("settings.host is required (the host identifier registered with the connector token, e.g. https://www.example.com)")
	}
	if s.BaseURL == "" {
		s.BaseURL = DefaultBaseURL
	}
	base, err := url.Parse(s.BaseURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return Settings{}, fmt.Errorf("settings.base_url %q is not an http(s) URL", s.BaseURL)
	}
	s.BaseURL = strings.TrimRight(s.BaseURL, "/")
	if s.WSURL == "" {
		u := *base
		u.Scheme = map[string]string{"http": "ws", "https": "wss"}[base.Scheme]
		u.Path = strings.TrimRight(u.Path, "/") + "/ws"
		s.WSURL = u.String()
	} else if u, err := url.Parse(s.WSURL); err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return Settings{}, fmt.Errorf("settings.ws_url %q is not a ws(s) URL", s.WSURL)
	}
	switch s.Platform {
	case "", "web", "ios", "android", "ios-web", "android-web", "custom":
	default:
		return Settings{}, fmt.Errorf("settings.platform %q is not one of web, ios, android, ios-web, android-web, custom", s.Platform)
	}
	for _, d := range []struct {
		key string
		v   *time.Duration
		def time.Duration
	}{
		{"heartbeat_interval", &s.HeartbeatInterval, 0},
		{"echo_timeout", &s.EchoTimeout, 5 * time.Second},
		{"stream_timeout", &s.StreamTimeout, 30 * time.Second},
		{"state_flush", &s.StateFlush, time.Second},
	} {
		if *d.v < 0 || (*d.v > 0 && *d.v < 10*time.Millisecond) {
			return Settings{}, fmt.Errorf("settings.%s %s is shorter than 10ms", d.key, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if s.MaxResends < 0 || s.MaxResends > 100 {
		return Settings{}, fmt.Errorf("settings.max_resends %d is not between 0 and 100", s.MaxResends)
	}
	if _, ok := cfg.Settings["max_resends"]; !ok {
		s.MaxResends = 3
	}
	return s, nil
}

// ConfigFor is the config of a connector built in code (tests, tools):
// the emulator's or platform's base URL, the host identifier and the
// connector token itself, plus extra settings.
func ConfigFor(baseURL, host, connectorToken string, extra connector.Settings) connector.Config {
	st := connector.Settings{"base_url": baseURL, "host": host}
	for k, v := range extra {
		st[k] = v
	}
	return connector.Config{
		Name: "polyai", Platform: "polyai", Settings: st,
		Secrets: connector.NewSecrets(map[string]connector.SecretRef{secretConnectorToken: {Value: connectorToken}}, nil),
	}
}
