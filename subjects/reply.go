package subjects

import (
	"fmt"
	"strings"
)

// BridgeInboxPrefix is the inbox prefix of the bridge's own NATS connection
// (PubAcks, KV answers, managed-dispatch replies). It is upper case so that
// no worker inbox prefix (WorkerInboxPrefix of a lower-case connection name)
// and no plain "_INBOX." inbox is ever one of the bridge's.
const BridgeInboxPrefix = "_BRIDGE_INBOX"

// WorkerInboxPrefix is the inbox prefix a worker of conn uses under the
// documented least-privilege permissions: "_INBOX_<conn>".
func WorkerInboxPrefix(conn string) string { return "_INBOX_" + conn }

// CheckReplyTo says whether the bridge may publish a result on a worker's
// behalf to subject, the Bridge-Reply-To of a durable command or the reply
// subject of an RPC request of connection conn. The bridge publishes with its
// own rights, so a worker must not be able to aim it anywhere the worker
// could not reach itself. Allowed, and nothing else:
//
//   - the connection's own result namespace, <prefix>.res.<platform>.<conn>.…
//   - the connection's worker inboxes, _INBOX_<conn>.…
//   - plain inboxes, _INBOX.… (never the bridge's: see [BridgeInboxPrefix])
//
// So never a command, event, work or other connection's subject, nothing
// under "$" ($KV, $JS), and not the bridge's own inboxes. The error says
// why, without repeating the subject.
func CheckReplyTo(prefix, platform, conn, subject string) error {
	if err := literalSubject(subject); err != nil {
		return err
	}
	switch {
	case strings.HasPrefix(subject, BridgeInboxPrefix+"."):
		return fmt.Errorf("the bridge's own inbox")
	case strings.HasPrefix(subject, prefix+"."):
		own := prefix + "." + string(KindResult) + "." + platform + "." + conn + "."
		if !strings.HasPrefix(subject, own) {
			return fmt.Errorf("a bridge subject outside %s>", own)
		}
		return nil
	case strings.HasPrefix(subject, WorkerInboxPrefix(conn)+"."), strings.HasPrefix(subject, "_INBOX."):
		return nil
	}
	return fmt.Errorf("not %s.%s.%s.%s.>, %s.> or _INBOX.>", prefix, KindResult, platform, conn, WorkerInboxPrefix(conn))
}

// literalSubject checks that s can be published to: at most 1024 bytes of
// non-empty tokens, no wildcards, no white space or control bytes.
func literalSubject(s string) error {
	if s == "" || len(s) > 1024 {
		return fmt.Errorf("empty or longer than 1024 bytes")
	}
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" || tok == "*" || tok == ">" {
			return fmt.Errorf("not a literal subject (empty token or wildcard)")
		}
		for i := 0; i < len(tok); i++ {
			if tok[i] <= ' ' || tok[i] == 0x7f {
				return fmt.Errorf("not a literal subject (white space or control byte)")
			}
		}
	}
	return nil
}
