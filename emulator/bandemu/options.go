package bandemu

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// DefaultAgentID is the id of the default agent when [Options.AgentID]
// is empty.
const DefaultAgentID = "6f0c1e7a-2b4d-4c8e-9a51-3d7e0b9f1a2c"

// SocketPath is where the Phoenix WebSocket endpoint listens. Clients
// built on phoenix.js pass the URL without the trailing "/websocket".
const SocketPath = "/api/v1/socket/websocket"

const (
	maxPageSize        = 100
	defaultMsgLimit    = 20
	defaultCtxLimit    = 50
	maxTitleLen        = 120
	maxEventContentLen = 16384
	maxEventMetadata   = 65536
)

// Options configures a [Server]. The zero value is ready to use; every
// field documents its default.
type Options struct {
	// AgentID is the default agent's id. Default: DefaultAgentID.
	AgentID string
	// AgentName is the default agent's display name. Default: "Bridge Bot".
	AgentName string
	// AgentHandle is the default agent's handle ("owner/slug").
	// Default: "emulator/" followed by AgentName in lower-case slug form.
	AgentHandle string
	// AgentDescription is returned by GET /agent/me. Default:
	// "Band emulator agent".
	AgentDescription string
	// APIKey is the default agent's key. Default: "emu-key-" followed by
	// 32 random hex digits, different for every Server.
	APIKey string
	// HeartbeatTimeout is how long a socket may stay silent (no frame
	// received) before the server closes it. Default: 45s, as Band
	// documents. Negative disables the idle timeout.
	HeartbeatTimeout time.Duration
	// ChatsPageSize is the default page_size of the page-based lists
	// (chats, peers, contacts, contact requests). Default: 20. A client
	// may ask for up to 100.
	ChatsPageSize int
	// WriteQueueSize bounds the frames waiting to be written to one
	// socket. A socket whose queue overflows is closed as too slow.
	// Default: 4096.
	WriteQueueSize int
	// WriteTimeout bounds one socket write. Default: 10s.
	WriteTimeout time.Duration
	// MaxRequestLog bounds the records kept for [Server.Requests]; the
	// oldest are dropped first. Default: 10000.
	MaxRequestLog int
	// Logger receives connection-level events (connect, supersede,
	// close). Payloads and keys are never logged. Default: no logging.
	Logger *zerolog.Logger
}

func (o Options) withDefaults() Options {
	if o.AgentID == "" {
		o.AgentID = DefaultAgentID
	}
	if o.AgentName == "" {
		o.AgentName = "Bridge Bot"
	}
	if o.AgentHandle == "" {
		o.AgentHandle = "emulator/" + slug(o.AgentName)
	}
	if o.AgentDescription == "" {
		o.AgentDescription = "Band emulator agent"
	}
	if o.APIKey == "" {
		o.APIKey = newAPIKey()
	}
	if o.HeartbeatTimeout == 0 {
		o.HeartbeatTimeout = 45 * time.Second
	}
	if o.ChatsPageSize <= 0 {
		o.ChatsPageSize = 20
	}
	if o.ChatsPageSize > maxPageSize {
		o.ChatsPageSize = maxPageSize
	}
	if o.WriteQueueSize <= 0 {
		o.WriteQueueSize = 4096
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.MaxRequestLog <= 0 {
		o.MaxRequestLog = 10000
	}
	if o.Logger == nil {
		nop := zerolog.Nop()
		o.Logger = &nop
	}
	return o
}

func newAPIKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails on supported platforms
	return "emu-key-" + hex.EncodeToString(b[:])
}

// slug turns a display name into a handle part: lower case, runs of
// anything but letters and digits become one "-".
func slug(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			dash = false
			continue
		}
		if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	s := strings.TrimSuffix(b.String(), "-")
	if s == "" {
		s = "x"
	}
	return s
}
