package cmdexec

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/subjects"
)

// emitter is the emit function a streaming command gets: each event it
// emits is stored on P.evt.<platform>.<conn>.<room>.<name> before emit
// returns (the PubAck is waited for), so the events of a command come before
// its result and in the order emitted. Each carries the command's id and
// its index (the commandid and seq attributes); the index also makes its
// id (Nats-Msg-Id), so an attempt or a redelivery that emits the same
// events again does not store them twice. An event that cannot be stored
// fails emit; the command then ends with that error, classified like any
// other (a NATS failure is transient: the command is retried).
func (e *Executor) emitter(ctx context.Context, cmd connector.Command) func(connector.Event) error {
	var seq int64
	return func(ev connector.Event) (err error) {
		i := seq
		defer wrapErr(&err, "emit event %d of command %s", i, cmd.ID)
		room := ev.Room
		if room == "" {
			room = cmd.Room
		}
		t := ev.Time
		if t.IsZero() {
			t = time.Now()
		}
		name := subjects.EventName(ev.Name)
		env := subjects.NewEvent(e.o.Platform, e.conn.Name, room, name, "cmd:"+cmd.ID+":"+strconv.FormatInt(i, 10), t, ev.Data)
		env.CommandID, env.Seq = cmd.ID, &i
		m := nats.NewMsg(e.conn.Subject(subjects.KindEvent, room, name).String())
		m.Header.Set(subjects.HeaderContentType, subjects.ContentTypeCloudEvents)
		m.Header.Set(subjects.HeaderMsgID, env.ID)
		m.Data = env.AppendJSON(nil)
		pctx, cancel := context.WithTimeout(ctx, opTimeout)
		defer cancel()
		if !e.payloads.Fits(m) {
			ref, err := e.payloads.Put(pctx, ev.Data)
			if err != nil {
				return fmt.Errorf("over max_payload, data not offloaded: %w", err)
			}
			env.Offload(ref)
			m.Data = env.AppendJSON(m.Data[:0])
		}
		if _, err := e.o.JS.PublishMsg(pctx, m); err != nil {
			return err
		}
		seq++
		return nil
	}
}
