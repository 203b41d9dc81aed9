package cmdexec_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/cmdexec"
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/connector/band"
	"github.com/bridgeworks/bridge/emulator/bandemu"
	"github.com/bridgeworks/bridge/internal/testutil"
	"github.com/bridgeworks/bridge/subjects"
)

// Six send_message commands with the same text (a canned reply) and
// different ids; a run executes two and acks them, the next takes the other
// four, sends one to the platform and crashes. The run after that must not
// take the earlier commands' messages for the unexecuted ones: six messages
// end up on the platform, and every ok result names a message of its own.
func TestCrashReconcileRepeatedText(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	emu := bandemu.New(bandemu.Options{})
	url, err := emu.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	user := emu.AddUser("Dana")
	room := emu.AddRoom("r", user.ID)
	c, err := band.New(band.ConfigFor(url, emu.AgentID(), emu.APIKey()), connector.Deps{Log: testutil.Logger(t)}, band.Options{})
	if err != nil {
		t.Fatal(err)
	}
	args := mustJSON(map[string]any{"content": "on it", "mentions": []map[string]string{{"id": user.ID}}})
	subj := cmdSubject(room.ID, "send_message")
	o := e.options(c)
	o.AckWait = time.Second

	_, stop := e.start(o)
	for i := 1; i <= 2; i++ {
		e.publish(subj, args, subjects.HeaderMsgID, fmt.Sprintf("c%d", i))
	}
	e.res.byID(t, "c1")
	e.res.byID(t, "c2")
	testutil.Eventually(t, 10*time.Second, func() bool { return e.consumerInfo().NumAckPending == 0 }, "c1 and c2 not acked")
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// The crashed run: c3..c6 taken, never settled; only c3 reached Band.
	for i := 3; i <= 6; i++ {
		e.publish(subj, args, subjects.HeaderMsgID, fmt.Sprintf("c%d", i))
	}
	cons, err := e.s.JS.Consumer(e.ctx, "BRIDGE_COMMANDS", cmdexec.ConsumerName("c1"))
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(4, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range batch.Messages() {
		n++
	}
	if n != 4 {
		t.Fatalf("the crashed run took %d commands, want 4", n)
	}
	if _, err := c.Execute(e.ctx, connector.Command{ID: "c3", Name: "send_message", Room: room.ID, Args: []byte(args)}); err != nil {
		t.Fatal(err)
	}

	e.start(o)
	msgIDs := map[string]string{} // platform message id → command id
	for i := 1; i <= 6; i++ {
		id := fmt.Sprintf("c%d", i)
		res, _ := e.res.byID(t, id)
		if !res.OK {
			t.Fatalf("%s: %+v", id, res)
		}
		var d struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(res.Data, &d); err != nil || d.ID == "" {
			t.Fatalf("%s: result data %s names no message", id, res.Data)
		}
		if other, dup := msgIDs[d.ID]; dup {
			t.Fatalf("%s and %s both reported done by message %s", other, id, d.ID)
		}
		msgIDs[d.ID] = id
	}
	sent := emu.AgentMessages(room.ID)
	if len(sent) != 6 {
		t.Fatalf("%d messages on the platform, want 6", len(sent))
	}
	for _, m := range sent {
		delete(msgIDs, m.ID)
	}
	if len(msgIDs) != 0 {
		t.Fatalf("results name messages that are not on the platform: %v", msgIDs)
	}
}

// Executed tells an id whose call succeeded (stored, or found on the
// platform after a crash before the record) from one that failed or never
// ran, and executes nothing.
func TestExecutedFindsAProcessedMark(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	emu := bandemu.New(bandemu.Options{})
	url, err := emu.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	user := emu.AddUser("Dana")
	room := emu.AddRoom("r", user.ID)
	c, err := band.New(band.ConfigFor(url, emu.AgentID(), emu.APIKey()), connector.Deps{Log: testutil.Logger(t)}, band.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ex, _ := e.start(e.options(c))
	mark := func(id string, state connector.ProcessingState, msg string) connector.Command {
		cmd := c.ProcessingCommand(state, room.ID, msg, "")
		cmd.ID, cmd.Room, cmd.Since = id, room.ID, time.Now().Add(-time.Minute)
		return cmd
	}
	m1 := emu.PostUserMessage(room.ID, user.ID, "@agent one")
	m2 := emu.PostUserMessage(room.ID, user.ID, "@agent two")
	m3 := emu.PostUserMessage(room.ID, user.ID, "@agent three")

	// m1: marked through the executor, its result stored.
	ex.Do(e.ctx, mark("", connector.Processing, m1.ID))
	if res := ex.Do(e.ctx, mark("m1:processed", connector.Processed, m1.ID)); !res.OK {
		t.Fatalf("mark m1 processed: %+v", res.Error)
	}
	// m2: marked on the platform by a run that crashed before its record.
	for _, st := range []connector.ProcessingState{connector.Processing, connector.Processed} {
		if _, err := c.Execute(e.ctx, mark("", st, m2.ID)); err != nil {
			t.Fatal(err)
		}
	}
	// m3: its processed call refused (no attempt open), the failure stored.
	if res := ex.Do(e.ctx, mark("m3:processed", connector.Processed, m3.ID)); res.OK {
		t.Fatal("m3 marked processed without an attempt")
	}
	for _, tc := range []struct {
		cmd   connector.Command
		maybe bool
		want  bool
	}{
		{mark("m1:processed", connector.Processed, m1.ID), false, true},
		{mark("m2:processed", connector.Processed, m2.ID), false, false}, // no crash suspected: the store only
		{mark("m2:processed", connector.Processed, m2.ID), true, true},
		{mark("m2:processed", connector.Processed, m2.ID), false, true}, // remembered by the look before
		{mark("m3:processed", connector.Processed, m3.ID), true, false},
	} {
		tc.cmd.MaybeExecuted = tc.maybe
		got, err := ex.Executed(e.ctx, tc.cmd)
		if err != nil || got != tc.want {
			t.Errorf("Executed(%s, maybe=%t) = %t, %v; want %t", tc.cmd.ID, tc.maybe, got, err, tc.want)
		}
	}
	if st, atts := emu.StatusFor(emu.AgentID(), m2.ID); st != bandemu.StatusProcessed || len(atts) != 1 {
		t.Errorf("m2 is %s with %d attempts, want processed once", st, len(atts))
	}
}
