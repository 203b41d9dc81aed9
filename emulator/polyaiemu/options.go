package polyaiemu

import (
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/rs/zerolog"
)

// Paths served by the emulator (polyai.md §2, §3, §4).
const (
	AccessTokenPath = "/api/v1/access-token"
	SessionsPath    = "/api/v1/sessions"
	SocketPath      = "/ws"
)

// DefaultHost is the host identifier registered for the connector token
// when [Options.Host] is empty.
const DefaultHost = "https://www.example.com"

// Options configures a [Server]. The zero value is ready to use; every
// field documents its default.
type Options struct {
	// ConnectorToken is the secret a client sends as X-Token. Default:
	// "emu-connector-" followed by 32 random hex digits, different for
	// every Server.
	ConnectorToken string
	// Host is the host identifier registered with the connector token:
	// a web origin ("https://www.example.com") or an app id
	// ("com.example.app"). X-Host must equal it or, for a web origin,
	// name a subdomain of it. Default: DefaultHost.
	Host string
	// TokenTTL is the lifetime of an access token (expires_in and the
	// JWT's exp). Default: 24h, the documented example.
	TokenTTL time.Duration
	// IdleTimeout ends a session (SESSION_END REASON_USER_ABANDONED,
	// sockets closed) after this long without an inbound event,
	// heartbeats included. Default: 10m, as documented. Negative
	// disables it. One goroutine checks every session (see IdleCheck).
	IdleTimeout time.Duration
	// IdleCheck is how often that goroutine looks. Default:
	// IdleTimeout/10, between 5ms and 1s.
	IdleCheck time.Duration
	// MaxSocketsPerSession bounds the concurrent sockets of a session;
	// one more is refused with 429. Default: 10, as documented.
	MaxSocketsPerSession int
	// MaxMessageSize is advertised in SESSION_START and bounds an
	// inbound frame; a bigger one closes the socket (1009). Default:
	// 131072, the SESSION_START example.
	MaxMessageSize int
	// HeartbeatInterval is advertised in SESSION_START
	// (heartbeat_interval_seconds). Default: 30s, the SDK fallback.
	HeartbeatInterval time.Duration
	// MaxReconnectAttempts is advertised in SESSION_START. Default: 10.
	MaxReconnectAttempts int
	// MaxBatchEvents bounds the events of one EVENT_BATCH; a longer
	// history is replayed as several batches. Default: 100.
	MaxBatchEvents int
	// PlainBatchEvents puts the payload of events inside a batch under
	// "payload". Default false: under the oneof key named after the
	// type, e.g. "poly_agent_message" (polyai.md §5, an SDK finding).
	PlainBatchEvents bool
	// StrictCursor refuses an unparsable cursor with 400 "invalid
	// cursor: ..." as the May 2026 pages did. Default false: the
	// current documented behaviour, a replay from 0.
	StrictCursor bool
	// AgentName and AgentAvatarURL describe the PolyAI agent in
	// POLY_AGENT_JOINED. Defaults: "PolyAI Assistant" and
	// "https://cdn.example.com/polyai-avatar.png".
	AgentName      string
	AgentAvatarURL string
	// Greeting is the agent's first message after a join. Default:
	// "Hi, I'm <AgentName>. How can I help you today?".
	Greeting string
	// Reply makes the agent's answer to a user message. It runs with
	// the emulator's lock held and must not call the Server. Default:
	// "You said: <text>".
	Reply func(text string) AgentMessage
	// NoAutoReply stops the agent answering user messages by itself;
	// tests then speak for it with [Server.Say]. Default false.
	NoAutoReply bool
	// ChunkSize is how many characters (runes) of text one streamed
	// chunk carries. Default: 16.
	ChunkSize int
	// MaxSessions and MaxTokens bound the sessions and access tokens
	// kept. Creating one more fails with 500 "Failed to create
	// session" / "Failed to create access token". Default: 100000 each.
	MaxSessions int
	MaxTokens   int
	// MaxHistory bounds the journaled events of one session; when it is
	// full the session ends (REASON_NATURAL_END) with a SYSTEM_MESSAGE
	// saying why. Default: 100000.
	MaxHistory int
	// WriteQueueSize bounds the frames waiting to be written to one
	// socket; a socket whose queue overflows is closed as too slow.
	// Default: 4096.
	WriteQueueSize int
	// WriteTimeout bounds one socket write. Default: 10s.
	WriteTimeout time.Duration
	// MaxHandshakeLog bounds the records kept for [Server.Handshakes];
	// the oldest go first. Default: 10000.
	MaxHandshakeLog int
	// Logger receives connection-level events. Payloads and tokens are
	// never logged. Default: no logging.
	Logger *zerolog.Logger
}

func (o Options) withDefaults() Options {
	if o.ConnectorToken == "" {
		o.ConnectorToken = "emu-connector-" + randomHex(16)
	}
	if o.Host == "" {
		o.Host = DefaultHost
	}
	if o.TokenTTL <= 0 {
		o.TokenTTL = 24 * time.Hour
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 10 * time.Minute
	}
	if o.IdleCheck <= 0 {
		o.IdleCheck = min(max(o.IdleTimeout/10, 5*time.Millisecond), time.Second)
	}
	if o.MaxSocketsPerSession <= 0 {
		o.MaxSocketsPerSession = 10
	}
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = 131072
	}
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = 30 * time.Second
	}
	if o.MaxReconnectAttempts <= 0 {
		o.MaxReconnectAttempts = 10
	}
	if o.MaxBatchEvents <= 0 {
		o.MaxBatchEvents = 100
	}
	if o.AgentName == "" {
		o.AgentName = "PolyAI Assistant"
	}
	if o.AgentAvatarURL == "" {
		o.AgentAvatarURL = "https://cdn.example.com/polyai-avatar.png"
	}
	if o.Greeting == "" {
		o.Greeting = "Hi, I'm " + o.AgentName + ". How can I help you today?"
	}
	if o.Reply == nil {
		o.Reply = func(text string) AgentMessage { return AgentMessage{Text: "You said: " + text} }
	}
	if o.ChunkSize <= 0 {
		o.ChunkSize = 16
	}
	if o.MaxSessions <= 0 {
		o.MaxSessions = 100000
	}
	if o.MaxTokens <= 0 {
		o.MaxTokens = 100000
	}
	if o.MaxHistory <= 0 {
		o.MaxHistory = 100000
	}
	if o.WriteQueueSize <= 0 {
		o.WriteQueueSize = 4096
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.MaxHandshakeLog <= 0 {
		o.MaxHandshakeLog = 10000
	}
	if o.Logger == nil {
		nop := zerolog.Nop()
		o.Logger = &nop
	}
	return o
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails on supported platforms
	return hex.EncodeToString(b)
}

// newID returns a random version 4 UUID.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
