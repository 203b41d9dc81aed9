package cmdexec

import (
	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/subjects"
)

// Where a result may go besides P.res…: the reply subject of an RPC request
// (path "rpc") or a command's Bridge-Reply-To (path "result").
const (
	replyPathRPC    = "rpc"
	replyPathResult = "result"
)

// replyAllowed applies [subjects.CheckReplyTo] to a destination a worker
// chose. A refusal is logged (the subject cut short, never the payload) and
// counted in bridge_reply_refused_total.
func (e *Executor) replyAllowed(subject, path string, log zerolog.Logger) bool {
	err := subjects.CheckReplyTo(e.o.Prefix, e.o.Platform, e.conn.Name, subject)
	if err == nil {
		return true
	}
	e.m.replyRefused(path)
	log.Warn().Str("reply_to", oneLine(subject, 128)).Str("path", path).Str("reason", err.Error()).
		Msg("reply destination refused: not this connection's result namespace or inbox")
	return false
}
