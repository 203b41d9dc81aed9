package agentconnect

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/bridgeworks/bridge/connector"
)

// DefaultBaseURL is where the AgentConnect demo API listens by default.
const DefaultBaseURL = "http://127.0.0.1:8000"

// The secrets of a connection: the account's login, each from
// <name>_env or <name>_file, read again at every login.
const (
	secretUsername = "username"
	secretPassword = "password"
)

// Settings are AgentConnect's keys of a connection's [connection.settings]
// table. The login is secret: username_env/username_file and
// password_env/password_file.
type Settings struct {
	// BaseURL is the REST base, default http://127.0.0.1:8000 (the routers
	// live under /api on it).
	BaseURL string `toml:"base_url"`
	// WSURL is the socket base, default derived from BaseURL
	// (ws://<host>/api/chat/ws); the session id is appended.
	WSURL string `toml:"ws_url"`
	// PingTimeout is how long a session's socket may stay silent before it
	// is redialled, default 75s (the server pings every 30s).
	PingTimeout time.Duration `toml:"ping_timeout"`
	// ReplyTimeout bounds how long send_message waits for the AI's answer,
	// default 45s (the server gives up after 30s with a notice).
	ReplyTimeout time.Duration `toml:"reply_timeout"`
	// RenewBefore is how long before the token's exp the connector logs in
	// again, default 2m (at most half the token's lifetime).
	RenewBefore time.Duration `toml:"renew_before"`
	// OpenWait bounds how long a command waits for its session's socket
	// to (re)open, default 10s; then it fails as retryable.
	OpenWait time.Duration `toml:"open_wait"`
	// QueueSize bounds events waiting for the bridge, default 256; a full
	// queue holds the sockets' readers back.
	QueueSize int `toml:"queue_size"`
}

func (s Settings) withDefaults() Settings {
	if s.BaseURL == "" {
		s.BaseURL = DefaultBaseURL
	}
	s.BaseURL = strings.TrimRight(s.BaseURL, "/")
	if s.PingTimeout == 0 {
		s.PingTimeout = 75 * time.Second
	}
	if s.ReplyTimeout == 0 {
		s.ReplyTimeout = 45 * time.Second
	}
	if s.RenewBefore == 0 {
		s.RenewBefore = 2 * time.Minute
	}
	if s.OpenWait == 0 {
		s.OpenWait = 10 * time.Second
	}
	if s.QueueSize == 0 {
		s.QueueSize = 256
	}
	return s
}

// settings decodes and checks cfg's table without I/O.
func settings(cfg connector.Config) (Settings, error) {
	var s Settings
	if err := cfg.Settings.Decode(&s); err != nil {
		return Settings{}, err
	}
	for _, name := range []string{secretUsername, secretPassword} {
		if !cfg.Secrets.Has(name) {
			return Settings{}, fmt.Errorf("settings.%[1]s_env or settings.%[1]s_file is required (the account's login)", name)
		}
	}
	s = s.withDefaults()
	base, err := url.Parse(s.BaseURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return Settings{}, fmt.Errorf("settings.base_url %q is not an http(s) URL", s.BaseURL)
	}
	if s.WSURL == "" {
		u := *base
		u.Scheme = map[string]string{"http": "ws", "https": "wss"}[base.Scheme]
		u.Path = strings.TrimRight(u.Path, "/") + "/api/chat/ws"
		s.WSURL = u.String()
	} else if u, err := url.Parse(s.WSURL); err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" || u.RawQuery != "" {
		return Settings{}, fmt.Errorf("settings.ws_url %q is not a ws(s) URL without a query", s.WSURL)
	}
	s.WSURL = strings.TrimRight(s.WSURL, "/")
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"ping_timeout", s.PingTimeout}, {"reply_timeout", s.ReplyTimeout}, {"renew_before", s.RenewBefore}, {"open_wait", s.OpenWait}} {
		if d.v < 10*time.Millisecond {
			return Settings{}, fmt.Errorf("settings.%s %s is shorter than 10ms", d.key, d.v)
		}
	}
	if s.QueueSize < 1 || s.QueueSize > 1<<16 {
		return Settings{}, fmt.Errorf("settings.queue_size %d is not between 1 and 65536", s.QueueSize)
	}
	return s, nil
}

// ConfigFor is the config of a connector built in code (tests, tools):
// the base URL and the login itself.
func ConfigFor(baseURL, username, password string) connector.Config {
	return connector.Config{
		Name: "agentconnect", Platform: Platform,
		Settings: connector.Settings{"base_url": baseURL},
		Secrets: connector.NewSecrets(map[string]connector.SecretRef{
			secretUsername: {Value: username}, secretPassword: {Value: password}}, nil),
	}
}
