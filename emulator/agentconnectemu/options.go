package agentconnectemu

import (
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/rs/zerolog"
)

// Paths the emulator serves (agentconnect.md §1: routers under /api).
const (
	LoginPath    = "/api/auth/login"
	VerifyPath   = "/api/auth/verify"
	CreatePath   = "/api/chat/sessions/create"
	SessionsPath = "/api/chat/sessions/" // + session id: GET, DELETE
	SocketPrefix = "/api/chat/ws/"       // + session id
)

// Route names, the keys of [Options.RateLimits].
const (
	RouteLogin   = "login"
	RouteVerify  = "verify"
	RouteCreate  = "sessions.create"
	RouteGet     = "sessions.get"
	RouteDelete  = "sessions.delete"
	DefaultUser  = "bridge"
	maxBodyBytes = 64 << 10
	maxFrameSize = 1 << 20
)

// defaultRateLimits are the per-route limits per window the code
// attaches (agentconnect.md §6; verify is 50 in code, 10 in the README).
var defaultRateLimits = map[string]int{
	RouteLogin: 10, RouteVerify: 50, RouteCreate: 5, RouteGet: 10, RouteDelete: 5,
}

// defaultModels lists the model names the reference names, by provider
// (agentconnect.md §3.1). The first of each list is the provider's
// default when a request names no model.
var defaultModels = map[string][]string{
	"groq":      {"llama-3.3-70b-versatile"},
	"openai":    {"gpt-4o"},
	"anthropic": {"claude-3-5-sonnet-latest"},
	"google":    {"gemini-2.0-flash"},
}

// Options configures a [Server]. The zero value is ready to use; every
// field documents its default. Durations that the platform fixes (pings,
// token lifetime, timeouts) are options so tests can run fast.
type Options struct {
	// Password of [DefaultUser], the one user that exists from the
	// start. Default: "emu-pass-" followed by 16 random hex digits.
	Password string
	// Secret signs the HS256 tokens. Default: 32 random bytes, so a new
	// Server rejects every token of an older one, as the platform does
	// after a restart without AUTH_SECRET_KEY.
	Secret []byte
	// TokenLifetime is how long a token is valid (exp, expires_in, whole
	// seconds). Default: 30m (ACCESS_TOKEN_EXPIRE_MINUTES=30).
	TokenLifetime time.Duration
	// PingInterval is the period of the JSON ping each socket gets.
	// Default: 30s. Negative disables pings.
	PingInterval time.Duration
	// ReplyDelay is how long the scripted AI takes to answer. Default: 0.
	ReplyDelay time.Duration
	// ReplyTimeout is how long a human_agent socket waits for the AI
	// before the "taking longer than expected" notice. Default: 30s.
	ReplyTimeout time.Duration
	// Reply scripts the AI's answer to content. Default: "Echo: " + content.
	Reply func(content string) string
	// TokenBudget is the LLM tokens an AI agent may spend per
	// TokenWindow before it goes into cooldown until the window ends. A
	// message costs ceil(len/4) tokens in plus the same for the reply.
	// Default: 3000 (the demo's max_tokens_per_minute). Negative: never.
	TokenBudget int
	// TokenWindow is the budget window. Default: 1m.
	TokenWindow time.Duration
	// MaxTurns is how many messages an AI agent takes from one partner;
	// the last one is answered with stop. Default: 20. Negative: no limit.
	MaxTurns int
	// SessionLifetime is the absolute session lifetime (SESSION_TIMEOUT).
	// Default: 1h. Negative: sessions never expire.
	SessionLifetime time.Duration
	// MaxInactive ends sessions idle longer than this (MAX_INACTIVE_TIME);
	// socket pings count as activity. Default: 30m. Negative: never.
	MaxInactive time.Duration
	// CleanupInterval is the period of the inactivity sweep. Default: 1m.
	CleanupInterval time.Duration
	// MaxMessages caps the messages stored per session, user and AI
	// turns together (MAX_MESSAGES_PER_SESSION). Default: 1000.
	MaxMessages int
	// MaxSessionsPerUser caps a user's live sessions (429 past it).
	// Default: 5. Negative: no limit.
	MaxSessionsPerUser int
	// RateLimits overrides per-route limits (keys Route*) per
	// RateWindow; a negative value removes the route's limit. Routes not
	// in the map keep their defaults: login 10, verify 50, create 5,
	// get 10, delete 5.
	RateLimits map[string]int
	// NoRateLimits turns every route limit off.
	NoRateLimits bool
	// RateWindow is the fixed rate-limit window. Default: 1m.
	RateWindow time.Duration
	// SessionGetWorks makes GET /api/chat/sessions/{id} answer 200 with
	// the session. Default false: like the reference's handler (§3.2, an
	// inference) a found session answers 500.
	SessionGetWorks bool
	// AcceptThenClose accepts a failed handshake and closes it with
	// 4003 (4004 for missing session data) instead of refusing the
	// upgrade with HTTP 403 as uvicorn does (§4.1, an inference).
	AcceptThenClose bool
	// Models lists the accepted model names by provider; the first is a
	// provider's default. Default: one model per provider, the ones the
	// reference names (llama-3.3-70b-versatile, gpt-4o,
	// claude-3-5-sonnet-latest, gemini-2.0-flash).
	Models map[string][]string
	// MaxSocketsPerSession bounds the sockets of one session; further
	// handshakes are refused with 403. Default: 32.
	MaxSocketsPerSession int
	// MaxSessions bounds the sessions kept, live or ended; ended
	// sessions without sockets are forgotten first. Default: 10000.
	MaxSessions int
	// MaxRecorded bounds the frames kept per session for
	// [Server.Received] and [Server.Broadcasts]; the oldest go first.
	// Default: 10000.
	MaxRecorded int
	// WriteQueueSize bounds the frames waiting for one socket; a socket
	// whose queue overflows is dropped as too slow. Default: 1024.
	WriteQueueSize int
	// WriteTimeout bounds one socket write. Default: 10s.
	WriteTimeout time.Duration
	// Logger gets connection-level events. Payloads, passwords and
	// tokens are never logged. Default: no logging.
	Logger *zerolog.Logger
}

func (o Options) withDefaults() Options {
	if o.Password == "" {
		o.Password = "emu-pass-" + randomHex(8)
	}
	if len(o.Secret) == 0 {
		o.Secret = []byte(randomHex(32))
	}
	durations := []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&o.TokenLifetime, 30 * time.Minute}, {&o.PingInterval, 30 * time.Second},
		{&o.ReplyTimeout, 30 * time.Second}, {&o.TokenWindow, time.Minute},
		{&o.SessionLifetime, time.Hour}, {&o.MaxInactive, 30 * time.Minute},
		{&o.CleanupInterval, time.Minute}, {&o.RateWindow, time.Minute},
		{&o.WriteTimeout, 10 * time.Second},
	}
	for _, d := range durations {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if o.ReplyDelay < 0 {
		o.ReplyDelay = 0
	}
	if o.Reply == nil {
		o.Reply = func(content string) string { return "Echo: " + content }
	}
	ints := []struct {
		v        *int
		def      int
		zeroOnly bool // negative keeps its meaning (unlimited)
	}{
		{&o.TokenBudget, 3000, true}, {&o.MaxTurns, 20, true}, {&o.MaxMessages, 1000, false},
		{&o.MaxSessionsPerUser, 5, true}, {&o.MaxSocketsPerSession, 32, false},
		{&o.MaxSessions, 10000, false}, {&o.MaxRecorded, 10000, false}, {&o.WriteQueueSize, 1024, false},
	}
	for _, i := range ints {
		if *i.v == 0 || (!i.zeroOnly && *i.v < 0) {
			*i.v = i.def
		}
	}
	limits := make(map[string]int, len(defaultRateLimits))
	for k, v := range defaultRateLimits {
		limits[k] = v
	}
	for k, v := range o.RateLimits {
		limits[k] = v
	}
	o.RateLimits = limits
	if len(o.Models) == 0 {
		o.Models = defaultModels
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
