package band

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/emulator/bandemu"
)

// Band's processing-state ability: the message of a message_created event
// is marked processing, then failed or processed, with the commands it
// returns, and the emulator records each state.
func TestProcessingTracker(t *testing.T) {
	t.Parallel()
	emu := bandemu.New(bandemu.Options{})
	url, err := emu.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	user := emu.AddUser("Dana")
	room := emu.AddRoom("r", user.ID)
	c, err := New(ConfigFor(url, emu.AgentID(), emu.APIKey()), connector.Deps{Log: zerolog.Nop()}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msg := emu.PostUserMessage(room.ID, user.ID, "hello")
	payload, _ := json.Marshal(map[string]any{"id": msg.ID, "content": "hello"})
	for _, ev := range []string{"message_updated", "participant_added"} {
		if _, ok := c.ProcessingRef(ev, payload); ok {
			t.Errorf("%s carries a processing reference", ev)
		}
	}
	if _, ok := c.ProcessingRef("message_created", json.RawMessage(`{"content":"no id"}`)); ok {
		t.Error("a message_created without an id carries a reference")
	}
	id, ok := c.ProcessingRef("message_created", payload)
	if !ok || id != msg.ID {
		t.Fatalf("ProcessingRef = %q %v, want %s", id, ok, msg.ID)
	}
	for _, step := range []struct {
		state  connector.ProcessingState
		reason string
		want   string
	}{
		{connector.Processing, "", "processing"},
		{connector.Failed, "model timeout", "failed"},
		{connector.Processing, "", "processing"},
		{connector.Processed, "", "processed"},
	} {
		cmd := c.ProcessingCommand(step.state, room.ID, id, step.reason)
		if _, err := c.Execute(ctx, cmd); err != nil {
			t.Fatalf("%s (%s %s): %v", step.state, cmd.Name, cmd.Args, err)
		}
		if got, _ := emu.Status(id); got != step.want {
			t.Fatalf("after %s: status %q, want %q", cmd.Name, got, step.want)
		}
	}
}
