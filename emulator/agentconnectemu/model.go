package agentconnectemu

import (
	"context"
	"encoding/json"
	"time"
)

// System notices, word for word (agentconnect.md §4.4).
const (
	NoticeNewTopic       = "Conversation limit reached. Starting new topic."
	NoticeMessageLimit   = "Message limit reached. Please create a new session."
	NoticeInactiveNew    = "Session inactive for too long. Please create a new session."
	NoticeInactiveClosed = "Session inactive for too long. Session will be closed."
	NoticeMaxCountClosed = "Maximum message count reached. Session will be closed."
	NoticeSlowAI         = "The AI agent is taking longer than expected to respond. Please try again."
	NoticeOwnerClosed    = "Session is being closed by the owner."
)

// Other fixed texts of server frames.
const (
	stopText            = "Maximum conversation turns reached. Ending conversation."
	invalidSessionText  = "Invalid session configuration"
	invalidFormatPrefix = "Invalid message format: "
)

// Frame is one WebSocket message (agentconnect.md §4.2). On the wire an
// empty Content, Sender or Receiver, and a nil Metadata, are null.
type Frame struct {
	Type      string         `json:"type"`
	Content   string         `json:"content,omitempty"`
	Sender    string         `json:"sender,omitempty"`
	Receiver  string         `json:"receiver,omitempty"`
	Timestamp string         `json:"timestamp"`
	Metadata  map[string]any `json:"metadata,omitempty"`
	// Socket numbers the sockets of a session from 1, in connection
	// order: the socket a received frame came in on. 0 in broadcasts.
	Socket int `json:"socket,omitempty"`
}

// wireFrame is Frame as the server writes it: all six keys, null for
// unset ones.
type wireFrame struct {
	Type      string         `json:"type"`
	Content   *string        `json:"content"`
	Sender    *string        `json:"sender"`
	Receiver  *string        `json:"receiver"`
	Timestamp string         `json:"timestamp"`
	Metadata  map[string]any `json:"metadata"`
}

func (f Frame) encode() []byte {
	opt := func(v string) *string {
		if v == "" {
			return nil
		}
		return &v
	}
	b, err := json.Marshal(wireFrame{Type: f.Type, Content: opt(f.Content), Sender: opt(f.Sender),
		Receiver: opt(f.Receiver), Timestamp: f.Timestamp, Metadata: f.Metadata})
	if err != nil { // metadata the emulator built itself: cannot fail
		panic(err)
	}
	return b
}

// isoTime formats t as Python's datetime.isoformat() does for an aware
// UTC datetime.
func isoTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000000-07:00")
}

type user struct {
	name, password string
	inactive       bool
}

type issuedToken struct {
	jti, user string
	exp       int64
}

// Why a session ended; "" while it is live.
const (
	endDeleted    = "deleted"
	endExpired    = "expired"
	endMessageCap = "message cap"
)

type session struct {
	id, owner, typ string
	created        time.Time
	metadata       json.RawMessage // null or an object
	agents         []*aiAgent
	humanID        string
	endReason      string
	dataMissing    bool // the session hash is empty (handshake 4004)
	lastActivity   time.Time
	messages       int
	conns          map[*conn]struct{}
	sockSeq        int
	received       []Frame
	broadcasts     []Frame
	lifetime       *time.Timer
	// agent_agent only: injected messages for the worker, whose
	// lifetime work is (ended by stopSessionLocked or Close);
	// lastSpeaker is the index of the agent that spoke last (-1: none).
	inbox       chan injection
	work        context.Context
	endWork     context.CancelFunc
	lastSpeaker int
}

func (sess *session) live() bool { return sess.endReason == "" }

// agentByID returns the AI agent with that id, or nil.
func (sess *session) agentByID(id string) *aiAgent {
	for _, a := range sess.agents {
		if a.id == id {
			return a
		}
	}
	return nil
}

// aiAgent is one scripted AI agent of a session and its
// interaction-control state (agentconnect.md §4.4).
type aiAgent struct {
	key, id         string
	provider, model string
	capabilities    []string
	personality     *string
	windowStart     time.Time
	tokens          int
	cooldownUntil   time.Time
	turns           map[string]int  // messages received per partner
	ended           map[string]bool // conversations ended per partner
}

func (s *Server) recordLocked(list *[]Frame, f Frame) {
	if len(*list) >= s.opts.MaxRecorded {
		n := copy(*list, (*list)[len(*list)/2:])
		clear((*list)[n:])
		*list = (*list)[:n]
	}
	*list = append(*list, f)
}

// broadcastLocked sends f to every socket of sess (the chat:<sid>
// pub/sub channel) and records it.
func (s *Server) broadcastLocked(sess *session, f Frame) {
	if f.Timestamp == "" {
		f.Timestamp = isoTime(time.Now())
	}
	s.recordLocked(&sess.broadcasts, f)
	data := f.encode()
	for c := range sess.conns {
		c.enqueue(data)
	}
}

func (s *Server) systemLocked(sess *session, text string) {
	s.broadcastLocked(sess, Frame{Type: "system", Content: text})
}

// endSessionLocked ends a live session: it broadcasts notice (if any)
// and stops its timers and worker. Sockets stay open (§3.3, §4.6); the
// session is forgotten once it has none and room is needed.
func (s *Server) endSessionLocked(sess *session, reason, notice string) {
	if !sess.live() {
		return
	}
	if notice != "" {
		s.systemLocked(sess, notice)
	}
	sess.endReason = reason
	s.stopSessionLocked(sess)
	s.log.Debug().Str("session_id", sess.id).Str("reason", reason).Msg("session ended")
}

func (s *Server) stopSessionLocked(sess *session) {
	if sess.lifetime != nil {
		sess.lifetime.Stop()
	}
	if sess.endWork != nil {
		sess.endWork()
	}
}

// liveSessionsLocked counts a user's live sessions.
func (s *Server) liveSessionsLocked(owner string) int {
	n := 0
	for _, sess := range s.sessionOrder {
		if sess.owner == owner && sess.live() {
			n++
		}
	}
	return n
}

// addSessionLocked stores sess, forgetting the oldest ended session
// without sockets when MaxSessions is reached. It reports false when
// nothing can be forgotten.
func (s *Server) addSessionLocked(sess *session) bool {
	if len(s.sessionOrder) >= s.opts.MaxSessions {
		i := -1
		for j, old := range s.sessionOrder {
			if !old.live() && len(old.conns) == 0 {
				i = j
				break
			}
		}
		if i < 0 {
			return false
		}
		delete(s.sessions, s.sessionOrder[i].id)
		s.sessionOrder = append(s.sessionOrder[:i], s.sessionOrder[i+1:]...)
	}
	s.sessions[sess.id] = sess
	s.sessionOrder = append(s.sessionOrder, sess)
	return true
}

// issueTokenLocked signs a token for name and remembers its jti, so
// [Server.ExpireTokens] can expire it early.
func (s *Server) issueTokenLocked(name string, now time.Time) string {
	for len(s.issued) > 0 && (s.issued[0].exp < now.Unix() || len(s.issued) >= maxIssued) {
		delete(s.expiredJTI, s.issued[0].jti)
		s.issued = s.issued[1:]
	}
	c := claims{Sub: name, Exp: now.Add(s.opts.TokenLifetime).Unix(), Type: "access", JTI: newUUID()}
	s.issued = append(s.issued, issuedToken{jti: c.JTI, user: name, exp: c.Exp})
	return signJWT(s.opts.Secret, c)
}

// maxIssued bounds the tokens remembered for ExpireTokens.
const maxIssued = 100000

// verifyLocked checks a token as every authenticated call does.
func (s *Server) verifyLocked(token string, now time.Time) (claims, error) {
	c, err := parseJWT(s.opts.Secret, token, now)
	if err != nil {
		return claims{}, err
	}
	if _, gone := s.expiredJTI[c.JTI]; gone {
		return claims{}, errTokenExpired
	}
	return c, nil
}

func newUUID() string {
	h := randomHex(16)
	b := []byte(h)
	b[12] = '4' // version 4
	return string(b[0:8]) + "-" + string(b[8:12]) + "-" + string(b[12:16]) + "-" + string(b[16:20]) + "-" + string(b[20:32])
}
