package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/subjects"
)

// Figure names of the dispatch scenario.
const (
	figDispatchCPU      = "managed dispatch: CPU per message (emulator + bridge + NATS + worker)"
	figDispatchBaseCPU  = "straight-line dispatch baseline (WebSocket in, both KV records): CPU per message (emulator + baseline + NATS + worker)"
	figDispatchCPURatio = "managed dispatch CPU ÷ straight-line dispatch baseline"
)

// dispatch measures managed dispatch against a straight-line dispatch
// baseline in the same run, at the same rate over the same rooms: the
// baseline's CPU per message is the yardstick of the bridge's.
func (e *Env) dispatch(ctx context.Context, run int) error {
	base, err := e.dispatchBaseline(ctx)
	if err != nil {
		return fmt.Errorf("straight-line dispatch baseline: %w", err)
	}
	e.logf("   straight-line dispatch at %d/s over %d rooms: %.0f µs CPU/message", e.plan.DispatchRate, e.plan.DispatchRooms, us(base))
	e.c.add("dispatch", figDispatchBaseCPU, "µs", us(base))
	rt, err := e.dispatchRoundTrip(ctx)
	if err != nil {
		return fmt.Errorf("managed dispatch: %w", err)
	}
	e.logf("   managed dispatch at %d/s over %d rooms: round trip p50 %.3f ms, p99 %.3f ms; to the worker p50 %.3f ms, p99 %.3f ms; %.0f µs CPU/message",
		e.plan.DispatchRate, e.plan.DispatchRooms, ms(rt.full.percentile(0.5)), ms(rt.full.percentile(0.99)),
		ms(rt.worker.percentile(0.5)), ms(rt.worker.percentile(0.99)), us(rt.cpu))
	e.c.add("dispatch", figDispatchP50, "ms", ms(rt.full.percentile(0.5)))
	e.c.add("dispatch", figDispatchP99, "ms", ms(rt.full.percentile(0.99)))
	e.c.add("dispatch", "managed dispatch: platform send → worker receipt, p50", "ms", ms(rt.worker.percentile(0.5)))
	e.c.add("dispatch", "managed dispatch: platform send → worker receipt, p99", "ms", ms(rt.worker.percentile(0.99)))
	e.c.add("dispatch", figDispatchCPU, "µs", us(rt.cpu))
	if base > 0 {
		e.c.add("dispatch", figDispatchCPURatio, "ratio", float64(rt.cpu)/float64(base))
	}
	return nil
}

// dispatchBaseline is managed dispatch written straight, doing the work
// the bridge does by contract and nothing else. Ingest (as baseline 1):
// one raw WebSocket client joined to the rule's rooms takes each push,
// decodes the frame and the payload's id, sender and time, publishes the
// CloudEvents envelope to BRIDGE_EVENTS (PublishMsgAsync with
// Nats-Msg-Id) and records the stored id in the published-events bucket.
// Dispatch: one pull consumer takes the events, each room's in order and
// rooms in parallel, sends each as a request to a queue group of workers,
// waits for the "processed" reply, makes the platform calls the bridge
// makes for a processed message on Band (/processing and /processed:
// Band refuses /processed without an open attempt), records the event
// finished in the dispatched-events bucket and acks it. The two records
// are plain publishes without a PubAck, the cheapest way to make them. It
// returns the process CPU per message, from the first message to the last
// recorded processed.
func (e *Env) dispatchBaseline(ctx context.Context) (time.Duration, error) {
	emu, err := startEmu(emuOptions(), 1, e.plan.DispatchRooms)
	if err != nil {
		return 0, err
	}
	defer emu.close()
	dir := e.dir()
	defer e.removeDir(dir)
	ne, err := startNATS(ctx, dir, baselineWindow, e.log)
	if err != nil {
		return 0, err
	}
	defer ne.close()
	obs, err := newObserver(ctx, ne.url()) // the worker, a separate client as in the bridge's run
	if err != nil {
		return 0, err
	}
	defer obs.close()
	ctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	for _, b := range []string{publishedBucket, dispatchedBucket} {
		if _, err := ne.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: b, History: 1, TTL: 168 * time.Hour, Storage: jetstream.FileStorage}); err != nil {
			return 0, err
		}
	}

	conn := connName(0)
	processed := []byte(`{"status":"processed"}`)
	sub, err := obs.nc.QueueSubscribe("bridge.work.band."+conn+".>", "bench-workers", func(m *nats.Msg) { _ = m.Respond(processed) })
	if err != nil {
		return 0, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := obs.nc.Flush(); err != nil {
		return 0, err
	}
	var failed atomic.Value
	fail := func(err error) {
		failed.CompareAndSwap(nil, err)
		cancel()
	}
	stopIngest, err := e.ingestBaseline(ctx, emu, ne, conn, fail)
	if err != nil {
		return 0, err
	}
	defer stopIngest()
	cons, err := ne.js.CreateOrUpdateConsumer(ctx, eventsStream, jetstream.ConsumerConfig{
		Durable: "bench-dispatch", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1024, AckWait: time.Minute,
		FilterSubject: "bridge.evt.band." + conn + ".*.message_created",
	})
	if err != nil {
		return 0, err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	key := emu.agents[0].Key
	handle := func(msg jetstream.Msg) error {
		ev, err := subjects.DecodeEvent(msg.Data())
		if err != nil {
			return err
		}
		var p struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(ev.Data, &p); err != nil {
			return err
		}
		req := nats.NewMsg(strings.Replace(msg.Subject(), ".evt.", ".work.", 1))
		req.Data = msg.Data()
		req.Header.Set(subjects.HeaderMsgID, ev.ID)
		reply, err := ne.nc.RequestMsgWithContext(ctx, req)
		if err != nil {
			return err
		}
		if r, err := subjects.DecodeWorkReply(reply.Data); err != nil || r.Status != subjects.WorkProcessed {
			return fmt.Errorf("worker reply %q: %v", reply.Data, err)
		}
		for _, state := range []string{"processing", "processed"} {
			if err := mark(ctx, client, emu.url, ev.Room, p.ID, state, key); err != nil {
				return err
			}
		}
		if err := ne.nc.Publish("$KV."+dispatchedBucket+"."+hashKey(ev.ID), []byte("processed")); err != nil {
			return err
		}
		return msg.Ack()
	}
	queues := map[string]chan jetstream.Msg{}
	var wg sync.WaitGroup
	for _, id := range emu.agents[0].RoomIDs {
		q := make(chan jetstream.Msg, 4096)
		queues[subjects.EscapeToken(id)] = q
		wg.Go(func() {
			for msg := range q {
				if err := handle(msg); err != nil {
					fail(err)
				}
			}
		})
	}
	defer func() {
		for _, q := range queues {
			close(q)
		}
		wg.Wait()
	}()
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		tok := strings.Split(msg.Subject(), ".")[4]
		queues[tok] <- msg
	}, jetstream.PullMaxMessages(1024))
	if err != nil {
		return 0, err
	}
	defer stopConsume(cc)

	rooms := emu.agents[0].RoomIDs
	post := func(i int) string {
		return emu.emu.PostUserMessage(rooms[i%len(rooms)], emu.user.ID, benchContent(i, time.Now())).ID
	}
	// Warm-up: one message per room, all processed.
	var warm []string
	for i := range rooms {
		warm = append(warm, post(i))
	}
	if _, err := waitProcessed(ctx, emu.emu, warm); err != nil {
		return 0, baselineErr(&failed, fmt.Errorf("warm-up: %w", err))
	}
	n := e.dispatchCount()
	ids := make([]string, 0, n)
	cpu0 := cpuTime()
	_ = e.paced(n, func(i int) error { // post never fails
		ids = append(ids, post(i))
		return nil
	})
	if _, err := waitProcessed(ctx, emu.emu, ids); err != nil {
		return 0, baselineErr(&failed, err)
	}
	return (cpuTime() - cpu0) / time.Duration(n), nil
}

// The KV buckets the bridge records stored and finished events in (under
// the default prefix, see bridge.PublishedBucket and dispatch.DoneBucket).
const (
	publishedBucket  = "BRIDGE_PUBLISHED"
	dispatchedBucket = "BRIDGE_DISPATCHED"
)

// hashKey is a KV key for an event id (ids hold characters keys may not).
func hashKey(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:])
}

// ingestBaseline is the dispatch baseline's ingest: a raw WebSocket client
// of the default agent, joined to all its rooms, publishing each pushed
// message_created as its CloudEvents envelope to BRIDGE_EVENTS and
// recording its id. fail gets the first error. stop ends the client and
// waits for it.
func (e *Env) ingestBaseline(ctx context.Context, emu *emuEnv, ne *natsEnv, conn string, fail func(error)) (stop func(), err error) {
	a := emu.agents[0]
	c, err := dialRaw(ctx, emu.socketURL(a))
	if err != nil {
		return nil, err
	}
	for _, r := range a.RoomIDs {
		if err := c.join(ctx, "chat_room:"+r); err != nil {
			c.close()
			return nil, err
		}
	}
	onFrame := func(data []byte) {
		var parts []json.RawMessage
		if json.Unmarshal(data, &parts) != nil || len(parts) != 5 || string(parts[3]) != messageCreated {
			return
		}
		var topic string
		var m struct {
			ID         string `json:"id"`
			SenderID   string `json:"sender_id"`
			InsertedAt string `json:"inserted_at"`
		}
		if json.Unmarshal(parts[2], &topic) != nil || json.Unmarshal(parts[4], &m) != nil || m.ID == "" {
			fail(errors.New("dispatch baseline: undecodable push"))
			return
		}
		t, _ := time.Parse(time.RFC3339Nano, m.InsertedAt)
		room := strings.TrimPrefix(topic, "chat_room:")
		env := subjects.NewEvent("band", conn, room, "message_created", m.ID, t, parts[4])
		out := nats.NewMsg("bridge.evt.band." + conn + "." + subjects.EscapeToken(room) + ".message_created")
		out.Header.Set(subjects.HeaderContentType, subjects.ContentTypeCloudEvents)
		out.Header.Set(subjects.HeaderMsgID, env.ID)
		out.Data = env.AppendJSON(nil)
		if _, err := ne.js.PublishMsgAsync(out); err != nil {
			fail(fmt.Errorf("dispatch baseline: publish: %w", err))
			return
		}
		if err := ne.nc.Publish("$KV."+publishedBucket+"."+hashKey(env.ID), []byte{'1'}); err != nil {
			fail(fmt.Errorf("dispatch baseline: record: %w", err))
		}
	}
	rctx, cancelRead := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { // owned: stop waits for done
		defer close(done)
		defer c.close()
		if err := c.run(rctx, rawHeartbeat, onFrame); err != nil {
			fail(err)
		}
	}()
	return func() { cancelRead(); <-done }, nil
}

// baselineErr prefers a handler's failure to the timeout it caused.
func baselineErr(failed *atomic.Value, err error) error {
	if f, ok := failed.Load().(error); ok {
		return f
	}
	return err
}

// mark sends POST /api/v1/agent/chats/{room}/messages/{id}/{state}.
func mark(ctx context.Context, c *http.Client, base, room, id, state, key string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/agent/chats/"+room+"/messages/"+id+"/"+state, http.NoBody)
	if err != nil {
		return err
	}
	req.Header.Set("X-API-Key", key)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: status %d", state, resp.StatusCode)
	}
	return nil
}
