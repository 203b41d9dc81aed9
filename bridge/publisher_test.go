package bridge

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/connector"
)

// The publisher refuses a payload that is not JSON unless the connector
// vouches for it (ValidJSON); a vouched-for payload is stored unchanged.
func TestPublisherChecksPayloadsNotVouchedFor(t *testing.T) {
	p := &publisher{prefix: "bridge", platform: "fake", conn: "c1"}
	now := time.Now()
	if _, err := p.message(connector.Event{Room: "r", Name: "x", Key: "k", Data: json.RawMessage(`{"a":`)}, now); err == nil {
		t.Fatal("a payload that is not JSON was accepted")
	}
	msg, err := p.message(connector.Event{Room: "r", Name: "x", Key: "k", Data: json.RawMessage(`{"a":1}`), ValidJSON: true}, now)
	if err != nil {
		t.Fatal(err)
	}
	var env struct{ Data json.RawMessage }
	if err := json.Unmarshal(msg.Data, &env); err != nil || string(env.Data) != `{"a":1}` {
		t.Fatalf("stored %s (%v), want the payload unchanged", msg.Data, err)
	}
}
