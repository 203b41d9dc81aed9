package polyai_test

import (
	"testing"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/connector/conntest"
	"github.com/bridgeworks/bridge/connector/polyai"
	"github.com/bridgeworks/bridge/internal/testutil"
)

// TestCommandSchemas: one schema per command, and each schema's required
// fields are exactly what the command's checks refuse to go without. The
// commands on a session look the session up before they read their
// arguments, so they need a platform: skipped here.
func TestCommandSchemas(t *testing.T) {
	t.Parallel()
	c, err := polyai.New(polyai.ConfigFor(conntest.ClosedURL(t), "example.test", "token", nil), connector.Deps{Log: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	examples := conntest.CommandSchemas(t, c)
	conntest.SchemaExamples(t, c, examples, "session-1", "send_message", "typing", "end_session", "join")
}
