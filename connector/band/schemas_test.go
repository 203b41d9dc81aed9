package band_test

import (
	"testing"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/connector/band"
	"github.com/bridgeworks/bridge/connector/conntest"
	"github.com/bridgeworks/bridge/internal/testutil"
)

// TestCommandSchemas: one schema per command, and each schema's required
// fields are exactly what the command's checks refuse to go without.
func TestCommandSchemas(t *testing.T) {
	t.Parallel()
	c, err := band.Factory(false, band.Options{}).New(band.ConfigFor(conntest.ClosedURL(t), "agent-1", "key"), connector.Deps{Log: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	examples := conntest.CommandSchemas(t, c)
	conntest.SchemaExamples(t, c.(connector.Executor), examples, "room-1")
}
