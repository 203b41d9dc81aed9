package chatapi_test

import (
	"testing"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/connector/chatapi"
	"github.com/bridgeworks/bridge/connector/conntest"
	"github.com/bridgeworks/bridge/internal/testutil"
)

// TestCommandSchemas: one schema per command, and each schema's required
// fields are exactly what the command's checks refuse to go without.
func TestCommandSchemas(t *testing.T) {
	t.Parallel()
	c, err := chatapi.New(chatapi.ConfigFor(conntest.ClosedURL(t)+"/api", "k", nil), connector.Deps{Log: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	examples := conntest.CommandSchemas(t, c)
	conntest.SchemaExamples(t, c, examples, "agent-1")
}
