package agentconnect_test

import (
	"testing"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/connector/agentconnect"
	"github.com/bridgeworks/bridge/connector/conntest"
	"github.com/bridgeworks/bridge/internal/testutil"
)

// TestCommandSchemas: one schema per command, and each schema's required
// fields are exactly what the command's checks refuse to go without
// (send_message checks its arguments before it looks for the session).
func TestCommandSchemas(t *testing.T) {
	t.Parallel()
	c, err := agentconnect.New(agentconnect.ConfigFor(conntest.ClosedURL(t), "user", "pass"), connector.Deps{Log: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	examples := conntest.CommandSchemas(t, c)
	conntest.SchemaExamples(t, c, examples, "session-1")
}
