package band

import (
	"context"
	"errors"
	"testing"

	"github.com/bridgeworks/bridge/connector"
)

// Found by FuzzExecute: url.PathEscape keeps "." and "..", so a room,
// message or participant id of that form became a dot segment
// (/api/v1/agent/chats/.. → /api/v1/agent) that a server or proxy resolves
// into another endpoint. Such ids are now bad requests.
func TestExecuteRejectsDotSegments(t *testing.T) {
	t.Parallel()
	c, rec := newRecordedConnector(t)
	cases := []connector.Command{
		{Name: "get_chat", Room: ".."},
		{Name: "list_participants", Room: "."},
		{Name: "send_message", Room: "..", Args: []byte(`{"content":"x","mentions":[{"id":"u"}]}`)},
		{Name: "mark_processed", Room: "r", Args: []byte(`{"message_id":".."}`)},
		{Name: "mark_failed", Room: "r", Args: []byte(`{"message_id":".","error":"x"}`)},
		{Name: "remove_participant", Room: "r", Args: []byte(`{"participant_id":".."}`)},
	}
	for _, cmd := range cases {
		_, err := c.Execute(context.Background(), cmd)
		var re *connector.RequestError
		if !errors.As(err, &re) {
			t.Errorf("%s room %q args %s: err = %v, want a RequestError", cmd.Name, cmd.Room, cmd.Args, err)
		}
		if sent := rec.take(); sent != nil {
			t.Errorf("%s room %q: called %s %s", cmd.Name, cmd.Room, sent.method, sent.escapedPath)
		}
	}
	// Ids that merely contain dots are fine and stay one path segment.
	if _, err := c.Execute(context.Background(), connector.Command{Name: "get_chat", Room: "a..b"}); err != nil {
		t.Fatal(err)
	}
	if sent := rec.take(); sent == nil || sent.escapedPath != "/api/v1/agent/chats/a..b" {
		t.Fatalf("sent %+v", sent)
	}
}
