package chatapi

import (
	"fmt"
	"net/url"
	"time"

	"github.com/bridgeworks/bridge/connector"
)

// DefaultBaseURL is the platform's API base.
const DefaultBaseURL = "https://ai-teammate.net/api"

// Mark-read bodies (settings.mark_read): the platform's body is not
// documented, so it is chosen per connection.
const (
	MarkReadIDs  = "ids"  // {"message_ids": [...]}: one call for several items
	MarkReadID   = "id"   // {"message_id": "..."}: one call per item
	MarkReadNone = "none" // never mark read; the bridge's own record keeps items from coming back
)

// Settings are the Chat API keys of a connection's [connection.settings]
// table. The API key is a secret: api_key_env or api_key_file.
type Settings struct {
	// BaseURL is the API base, default https://ai-teammate.net/api.
	BaseURL string `toml:"base_url"`
	// InboxAgents are the agents whose inbox is polled; none polls nothing.
	InboxAgents []string `toml:"inbox_agents"`
	// PollInterval between two polls of one inbox, default 10s.
	PollInterval time.Duration `toml:"poll_interval"`
	// MarkRead is the mark-read body: "ids" (default), "id" or "none".
	MarkRead string `toml:"mark_read"`
	// InboxListKey is the key of the list in the inbox answer, default
	// "messages"; InboxIDField the id of an item in it, default "id".
	InboxListKey string `toml:"inbox_list_key"`
	InboxIDField string `toml:"inbox_id_field"`
	// RateLimit is the requests per second one API key may make, default
	// 1; RateBurst how many may go at once after a quiet spell, default 5.
	RateLimit float64 `toml:"rate_limit"`
	RateBurst int     `toml:"rate_burst"`
	// StreamIdleTimeout ends a streamed reply that sends nothing for this
	// long (a stalled stream), default 60s.
	StreamIdleTimeout time.Duration `toml:"stream_idle_timeout"`
	// ChatTimeout bounds one chat or team chat call, default 5m.
	ChatTimeout time.Duration `toml:"chat_timeout"`
}

const secretAPIKey = "api_key"

// settings decodes and checks cfg's table; it does no I/O.
func settings(cfg connector.Config) (Settings, error) {
	var s Settings
	if err := cfg.Settings.Decode(&s); err != nil {
		return Settings{}, err
	}
	if !cfg.Secrets.Has(secretAPIKey) {
		return Settings{}, fmt.Errorf("settings.api_key_env or settings.api_key_file is required (a global or agent-scoped API key)")
	}
	if s.BaseURL == "" {
		s.BaseURL = DefaultBaseURL
	}
	if u, err := url.Parse(s.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Settings{}, fmt.Errorf("settings.base_url %q is not an http(s) URL", s.BaseURL)
	}
	seen := map[string]bool{}
	for i, a := range s.InboxAgents {
		if a == "" || a == "." || a == ".." {
			return Settings{}, fmt.Errorf("settings.inbox_agents[%d] %q is not an agent id", i, a)
		}
		if seen[a] {
			return Settings{}, fmt.Errorf("settings.inbox_agents[%d] %q is listed twice", i, a)
		}
		seen[a] = true
	}
	def := func(d *time.Duration, v time.Duration, key string, floor time.Duration) error {
		switch {
		case *d == 0:
			*d = v
		case *d < floor:
			return fmt.Errorf("settings.%s %s is shorter than %s", key, *d, floor)
		}
		return nil
	}
	if err := def(&s.PollInterval, 10*time.Second, "poll_interval", 10*time.Millisecond); err != nil {
		return Settings{}, err
	}
	if err := def(&s.StreamIdleTimeout, 60*time.Second, "stream_idle_timeout", 10*time.Millisecond); err != nil {
		return Settings{}, err
	}
	if err := def(&s.ChatTimeout, 5*time.Minute, "chat_timeout", 10*time.Millisecond); err != nil {
		return Settings{}, err
	}
	switch s.MarkRead {
	case "":
		s.MarkRead = MarkReadIDs
	case MarkReadIDs, MarkReadID, MarkReadNone:
	default:
		return Settings{}, fmt.Errorf("settings.mark_read %q is not ids, id or none", s.MarkRead)
	}
	if s.InboxListKey == "" {
		s.InboxListKey = "messages"
	}
	if s.InboxIDField == "" {
		s.InboxIDField = "id"
	}
	switch {
	case s.RateLimit == 0:
		s.RateLimit = 1
	case s.RateLimit < 0:
		return Settings{}, fmt.Errorf("settings.rate_limit %v is negative", s.RateLimit)
	}
	switch {
	case s.RateBurst == 0:
		s.RateBurst = 5
	case s.RateBurst < 0:
		return Settings{}, fmt.Errorf("settings.rate_burst %d is negative", s.RateBurst)
	}
	return s, nil
}

// ConfigFor is the config of a connector built in code (tests, tools):
// base URL, the API key itself and the settings given (nil for none).
func ConfigFor(baseURL, apiKey string, extra connector.Settings) connector.Config {
	st := connector.Settings{"base_url": baseURL}
	for k, v := range extra {
		st[k] = v
	}
	return connector.Config{
		Name: "chatapi", Platform: Platform, Settings: st,
		Secrets: connector.NewSecrets(map[string]connector.SecretRef{secretAPIKey: {Value: apiKey}}, nil),
	}
}
