package agentconnect

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/bridgeworks/bridge/subjects"
)

// frame is one socket message: {type, content, sender, receiver,
// timestamp, metadata}. Server frames carry null for unset keys.
type frame struct {
	Type      string          `json:"type"`
	Content   string          `json:"content"`
	Sender    string          `json:"sender"`
	Receiver  string          `json:"receiver"`
	Timestamp string          `json:"timestamp"`
	Metadata  json.RawMessage `json:"metadata"`
}

// parseFrame reads a server frame; the error says what is wrong without
// quoting the payload.
func parseFrame(raw []byte) (frame, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return frame{}, fmt.Errorf("not a JSON object (%d bytes)", len(raw))
	}
	var f frame
	t, ok := m["type"]
	if !ok || json.Unmarshal(t, &f.Type) != nil || f.Type == "" {
		return frame{}, errors.New("no type string")
	}
	for _, fl := range []struct {
		name string
		dst  *string
	}{{"content", &f.Content}, {"sender", &f.Sender}, {"receiver", &f.Receiver}, {"timestamp", &f.Timestamp}} {
		if v, ok := m[fl.name]; ok && string(v) != "null" && json.Unmarshal(v, fl.dst) != nil {
			return frame{}, fmt.Errorf("%s is not a string", fl.name)
		}
	}
	if v, ok := m["metadata"]; ok && string(v) != "null" {
		if len(bytes.TrimSpace(v)) == 0 || bytes.TrimSpace(v)[0] != '{' {
			return frame{}, errors.New("metadata is not an object")
		}
		f.Metadata = v
	}
	return f, nil
}

// time is the frame's timestamp: Python's isoformat, with or without a
// zone (naive times are UTC); zero when absent or odd.
func (f frame) time() time.Time {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999"} {
		if t, err := time.Parse(layout, f.Timestamp); err == nil {
			return t
		}
	}
	return time.Time{}
}

// FrameKey is the event id the connector gives a frame, since the
// platform gives none: the session, the frame's occurrence number and a
// hash of its bytes. n counts the frames with these exact bytes seen on
// the session so far (1 for the first): server frames carry a
// microsecond timestamp, so n is almost always 1, and two identical
// frames still get two ids. A counter of all frames would not do: two
// sockets of one session (a replica taking over, a restart) would number
// the same broadcast differently and the stream could not drop the
// second copy; content and occurrence are the same on every socket.
func FrameKey(session string, raw []byte, n int) string {
	h := sha256.Sum256(bytes.TrimSpace(raw))
	return session + ":" + strconv.Itoa(n) + ":" + hex.EncodeToString(h[:12])
}

// notice is what a system notice means, by its exact text.
type notice struct {
	lifecycle subjects.Lifecycle
	reason    string
	ends      bool // the session is over: the connector detaches it
}

// notices are the system texts the platform sends, word for word.
var notices = map[string]notice{
	"Conversation limit reached. Starting new topic.":                           {subjects.LifecycleConversationEnded, "conversation_limit", false},
	"Message limit reached. Please create a new session.":                       {subjects.LifecycleSessionEnded, "message_limit", true},
	"Session inactive for too long. Please create a new session.":               {subjects.LifecycleSessionEnded, "inactive", true},
	"Session inactive for too long. Session will be closed.":                    {subjects.LifecycleSessionEnded, "inactive", true},
	"Maximum message count reached. Session will be closed.":                    {subjects.LifecycleSessionEnded, "message_limit", true},
	"The AI agent is taking longer than expected to respond. Please try again.": {subjects.LifecycleReplyTimeout, "ai_slow", false},
	"Session is being closed by the owner.":                                     {subjects.LifecycleSessionEnded, "owner_closed", true},
}

const slowNotice = "The AI agent is taking longer than expected to respond. Please try again."

// cooldownLeft is the wait a cooldown frame announces:
// metadata.cooldown_remaining (seconds), else the N of its text.
func (f frame) cooldownLeft() time.Duration {
	var m struct {
		Remaining *float64 `json:"cooldown_remaining"`
	}
	if len(f.Metadata) > 0 && json.Unmarshal(f.Metadata, &m) == nil && m.Remaining != nil && *m.Remaining > 0 {
		return time.Duration(*m.Remaining * float64(time.Second))
	}
	if s := cooldownText.FindStringSubmatch(f.Content); s != nil {
		if n, err := strconv.ParseFloat(s[1], 64); err == nil {
			return time.Duration(n * float64(time.Second))
		}
	}
	return 0
}

var cooldownText = regexp.MustCompile(`cooldown for ([0-9]+(?:\.[0-9]+)?) seconds`)

// sessionID is the platform's session id format (session_<time>_<hex>);
// ids are also state keys, so only these are kept.
var sessionID = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// errorCode classifies an error frame's text.
func errorCode(text string) (code string, status int) {
	switch {
	case strings.HasPrefix(text, "Invalid message format"):
		return "invalid_message", 422
	case text == "Invalid session configuration" || text == "Invalid session type":
		return "session_ended", 410
	}
	return "agent_error", 502
}
