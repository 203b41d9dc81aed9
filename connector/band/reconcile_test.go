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

func TestReconcileFindsAnEarlierExecution(t *testing.T) {
	t.Parallel()
	emu := bandemu.New(bandemu.Options{})
	url, err := emu.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	user := emu.AddUser("Dana")
	room := emu.AddRoom("r", user.ID)
	c, err := New(connector.Config{BaseURL: url, APIKey: emu.APIKey(), AgentID: emu.AgentID()}, connector.Deps{Log: zerolog.Nop()}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	args, _ := json.Marshal(map[string]any{"content": "the answer is 42", "mentions": []map[string]string{{"id": user.ID}}})
	cmd := connector.Command{Name: "send_message", Room: room.ID, Args: args, MaybeExecuted: true, Since: time.Now()}
	if _, found, err := c.Reconcile(ctx, cmd); err != nil || found {
		t.Fatalf("before: found=%v err=%v", found, err)
	}
	if _, err := c.Execute(ctx, cmd); err != nil {
		t.Fatal(err)
	}
	if _, found, err := c.Reconcile(ctx, cmd); err != nil || !found {
		t.Fatalf("after: found=%v err=%v", found, err)
	}
	other, _ := json.Marshal(map[string]any{"content": "something else", "mentions": []map[string]string{{"id": user.ID}}})
	cmd.Args = other
	if _, found, _ := c.Reconcile(ctx, cmd); found {
		t.Fatal("found a message that was never sent")
	}
}
