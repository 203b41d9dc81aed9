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
	c, err := New(ConfigFor(url, emu.AgentID(), emu.APIKey()), connector.Deps{Log: zerolog.Nop()}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	args, _ := json.Marshal(map[string]any{"content": "the answer is 42", "mentions": []map[string]string{{"id": user.ID}}})
	cmd := connector.Command{Name: "send_message", Room: room.ID, Args: args, MaybeExecuted: true, Since: time.Now()}
	if recs, err := c.Reconcile(ctx, cmd); err != nil || len(recs) != 0 {
		t.Fatalf("before: %d records, err=%v", len(recs), err)
	}
	var refs []string
	for range 2 { // a canned reply, sent twice
		resp, err := c.Execute(ctx, cmd)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Ref == "" {
			t.Fatal("send_message response has no Ref")
		}
		refs = append(refs, resp.Ref)
	}
	recs, err := c.Reconcile(ctx, cmd)
	if err != nil || len(recs) != 2 || recs[0].Ref != refs[0] || recs[1].Ref != refs[1] {
		t.Fatalf("after: %+v err=%v, want the two messages %v oldest first", recs, err, refs)
	}
	other, _ := json.Marshal(map[string]any{"content": "something else", "mentions": []map[string]string{{"id": user.ID}}})
	cmd.Args = other
	if recs, _ := c.Reconcile(ctx, cmd); len(recs) != 0 {
		t.Fatal("found a message that was never sent")
	}
}

// mark_processed is found done when Band lists the message as processed,
// and only then.
func TestReconcileProcessed(t *testing.T) {
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
	m1 := emu.PostUserMessage(room.ID, user.ID, "@agent first")
	m2 := emu.PostUserMessage(room.ID, user.ID, "@agent second")
	mark := func(state connector.ProcessingState, id string) connector.Command {
		cmd := c.ProcessingCommand(state, room.ID, id, "")
		cmd.Room, cmd.MaybeExecuted, cmd.Since = room.ID, true, time.Now()
		return cmd
	}
	for _, st := range []connector.ProcessingState{connector.Processing, connector.Processed} {
		if _, err := c.Execute(ctx, mark(st, m1.ID)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Execute(ctx, mark(connector.Processing, m2.ID)); err != nil {
		t.Fatal(err)
	}
	recs, err := c.Reconcile(ctx, mark(connector.Processed, m1.ID))
	if err != nil || len(recs) != 1 || recs[0].Ref != "processed:"+m1.ID {
		t.Fatalf("processed message: %+v err=%v, want one record", recs, err)
	}
	if recs, err := c.Reconcile(ctx, mark(connector.Processed, m2.ID)); err != nil || len(recs) != 0 {
		t.Fatalf("message still processing: %+v err=%v, want none", recs, err)
	}
}
