package subjects_test

import (
	"strings"
	"testing"

	"github.com/bridgeworks/bridge/subjects"
)

func TestCheckReplyTo(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		subject string
		ok      bool
	}{
		// Where a worker of support-bot may have its results sent.
		{"bridge.res.band.support-bot.room1.send_message", true},
		{"bridge.res.band.support-bot.x", true},
		{"_INBOX_support-bot.results", true},
		{"_INBOX_support-bot.abc.1", true},
		{"_INBOX.abc123", true},
		// Anywhere else the bridge would act with its own rights.
		{"bridge.cmd.band.other-bot._.create_chat", false},
		{"bridge.cmd.band.support-bot.room1.send_message", false}, // even its own commands
		{"bridge.evt.band.other-bot.room1.message_created", false},
		{"bridge.sys.band.other-bot.connected", false},
		{"bridge.work.band.support-bot.room1.message_created", false},
		{"bridge.dlq.band.support-bot.room1.send_message", false},
		{"bridge.rpc.band.support-bot.me", false},
		{"bridge.res.band.other-bot.room1.send_message", false},
		{"bridge.res.slack.support-bot.room1.send_message", false},
		{"bridge.res.band.support-bot", false},
		{"bridge.res.band.support-botx.r.c", false},
		{"$KV.BRIDGE_LEASES.other-bot", false},
		{"$KV.BRIDGE_EXECUTED.abc", false},
		{"$JS.API.STREAM.DELETE.BRIDGE_EVENTS", false},
		{"$JS.ACK.BRIDGE_COMMANDS.cmd_other-bot.1.2.3.4.5", false},
		{"$SYS.REQ.SERVER.PING", false},
		{subjects.BridgeInboxPrefix + ".abc.1", false},
		{"_INBOX_other-bot.results", false},
		{"_INBOX_support-bot", false},
		{"_INBOX", false},
		{"my-worker.results", false},
		{"orders.create", false},
		// Not literal subjects.
		{"", false},
		{"_INBOX.*", false},
		{"_INBOX.>", false},
		{"_INBOX..x", false},
		{"_INBOX.a b", false},
		{"_INBOX.a\tb", false},
		{"_INBOX." + strings.Repeat("a", 1024), false},
	} {
		err := subjects.CheckReplyTo("bridge", "band", "support-bot", tc.subject)
		if (err == nil) != tc.ok {
			t.Errorf("CheckReplyTo(%q) = %v, want ok=%v", tc.subject, err, tc.ok)
		}
		if err != nil && strings.Contains(tc.subject, "other") && strings.Contains(err.Error(), tc.subject) {
			t.Errorf("the error repeats the subject: %v", err)
		}
	}
}

// A prefix that looks like an inbox still keeps the bridge's own subjects
// out of reach.
func TestCheckReplyToInboxLikePrefix(t *testing.T) {
	t.Parallel()
	if err := subjects.CheckReplyTo("_INBOX", "band", "c1", "_INBOX.cmd.band.c1.r.send_message"); err == nil {
		t.Fatal("a command subject under prefix _INBOX was allowed")
	}
	if err := subjects.CheckReplyTo("_INBOX", "band", "c1", "_INBOX.res.band.c1.r.send_message"); err != nil {
		t.Fatalf("own result namespace refused: %v", err)
	}
}
