package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/subjects"
)

// commands measures baseline 2 (JetStream consume → HTTP POST, no bridge)
// against the emulator's REST API (the same target the bridge's executor
// calls, so a ratio isolates the executor) over 1 and CommandsRooms rooms,
// and against a plain loopback server for orientation. The bridge's own
// figures come from the item-4 hook below.
func (e *Env) commands(ctx context.Context, run int) error {
	cw := e.plan.CommandsCount
	for _, rooms := range []int{1, e.plan.CommandsRooms} {
		r, err := e.baseline2Once(ctx, cw, rooms, false)
		if err != nil {
			return fmt.Errorf("baseline 2, %d rooms: %w", rooms, err)
		}
		e.logf("   baseline 2 → emulator REST, %2d rooms: %8.0f commands/s, %5.1f µs CPU/command", rooms, r.perSec, us(r.cpu))
		e.c.add("commands", baseline2Name(rooms), "commands/s", r.perSec)
		e.c.add("commands", fmt.Sprintf("CPU per command, baseline 2, %d room%s", rooms, plural(rooms)), "µs", us(r.cpu))
	}
	r, err := e.baseline2Once(ctx, cw, e.plan.CommandsRooms, true)
	if err != nil {
		return fmt.Errorf("baseline 2, plain server: %w", err)
	}
	e.logf("   baseline 2 → plain loopback server, %d rooms: %8.0f commands/s", e.plan.CommandsRooms, r.perSec)
	e.c.add("commands", fmt.Sprintf("baseline 2 to a plain loopback HTTP server (orientation), %d rooms", e.plan.CommandsRooms), "commands/s", r.perSec)

	return e.bridgeCommandFigures(ctx)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// Item 4 (bridge side) lives in commands_bridge.go: commands through the
// bridge's executor, and the managed-dispatch round trip (run by the
// dispatch scenario).

// Figure names of item 4's bridge side.
const (
	figBridgeCommands = "bridge: commands through the executor to emulator REST"
	figCommandsRatio  = "bridge ÷ baseline 2"
	figDispatchP50    = "managed dispatch round trip at 1,000/s: p50"
	figDispatchP99    = "managed dispatch round trip at 1,000/s: p99"
)

// bridgeCommandFigures measures the bridge's executor on baseline 2's
// workload (CommandsRooms rooms). The managed-dispatch round trip is the
// dispatch scenario (dispatch.go).
func (e *Env) bridgeCommandFigures(ctx context.Context) error {
	rooms := e.plan.CommandsRooms
	rate, err := e.bridgeCommands(ctx, e.plan.CommandsCount, rooms)
	if err != nil {
		return fmt.Errorf("bridge commands: %w", err)
	}
	e.logf("   bridge executor → emulator REST, %2d rooms: %8.0f commands/s, %5.1f µs CPU/command", rooms, rate.perSec, us(rate.cpu))
	e.c.add("commands", fmt.Sprintf("%s, %d rooms", figBridgeCommands, rooms), "commands/s", rate.perSec)
	e.c.add("commands", fmt.Sprintf("CPU per command, bridge, %d rooms", rooms), "µs", us(rate.cpu))
	if base, ok := e.c.last("commands", baseline2Name(rooms)); ok && base > 0 {
		e.c.add("commands", fmt.Sprintf("%s, %d rooms", figCommandsRatio, rooms), "ratio", rate.perSec/base)
	}
	return nil
}

func baseline2Name(rooms int) string {
	return fmt.Sprintf("baseline 2 (JS consume → HTTP POST to emulator REST), %d room%s", rooms, plural(rooms))
}

// ---------------------------------------------------------------------
// Baseline 2.

// publishCommands stores n send_message commands for connection conn,
// round-robin over rooms, each mentioning userID, with Nats-Msg-Id
// idPrefix-i.
func publishCommands(ctx context.Context, js jetstream.JetStream, conn string, rooms []string, userID string, n int, idPrefix string) error {
	for i := range n {
		room := rooms[i%len(rooms)]
		msg := nats.NewMsg("bridge.cmd.band." + conn + "." + subjects.EscapeToken(room) + ".send_message")
		msg.Data = []byte(`{"content":"bench reply ` + strconv.Itoa(i) + `","mentions":[{"id":"` + userID + `"}]}`)
		msg.Header.Set(subjects.HeaderMsgID, idPrefix+"-"+strconv.Itoa(i))
		if _, err := js.PublishMsgAsync(msg); err != nil {
			return err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(30 * time.Second):
		return errors.New("commands not all stored within 30s")
	}
}

// baseline2Once consumes commands with one pull consumer while n are
// published, runs each room's commands in order (rooms in parallel) as an
// HTTP POST, and acks each after its response; the rate runs from the
// first publish to the last response. plain sends them to a trivial
// loopback server instead of the emulator.
func (e *Env) baseline2Once(ctx context.Context, n, rooms int, plain bool) (rate, error) {
	emu, err := startEmu(emuOptions(), 1, rooms)
	if err != nil {
		return rate{}, err
	}
	defer emu.close()
	dir := e.dir()
	defer e.removeDir(dir)
	ne, err := startNATS(ctx, dir, baselineWindow, e.log)
	if err != nil {
		return rate{}, err
	}
	defer ne.close()
	roomIDs := emu.agents[0].RoomIDs
	base := emu.url
	if plain {
		url, stop, err := plainServer()
		if err != nil {
			return rate{}, err
		}
		defer stop()
		base = url
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()

	ctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	cons, err := ne.js.CreateOrUpdateConsumer(ctx, "BRIDGE_COMMANDS", jetstream.ConsumerConfig{
		Durable: "bench", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1024, AckWait: time.Minute,
		FilterSubject: "bridge.cmd.>",
	})
	if err != nil {
		return rate{}, err
	}
	var done atomic.Int64
	finished := make(chan struct{})
	var failed atomic.Value
	queues := map[string]chan jetstream.Msg{}
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, id := range roomIDs {
		q := make(chan jetstream.Msg, 2048)
		queues[subjects.EscapeToken(id)] = q
		wg.Go(func() {
			for msg := range q {
				if err := post(ctx, client, base, id, emu.agents[0].Key, msg.Data()); err != nil {
					failed.CompareAndSwap(nil, err)
					cancel()
					return
				}
				_ = msg.Ack()
				if done.Add(1) == int64(n) {
					close(finished)
				}
			}
		})
	}
	defer func() {
		for _, q := range queues {
			close(q)
		}
	}()
	cpu0 := cpuTime()
	start := time.Now()
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		tok := strings.Split(msg.Subject(), ".")[4]
		queues[tok] <- msg
	}, jetstream.PullMaxMessages(1024))
	if err != nil {
		return rate{}, err
	}
	defer stopConsume(cc)
	if err := publishCommands(ctx, ne.js, connName(0), roomIDs, emu.user.ID, n, "cmd"); err != nil {
		return rate{}, err
	}
	select {
	case <-finished:
		return rate{perSec: perSecond(n, time.Since(start)), cpu: (cpuTime() - cpu0) / time.Duration(n)}, nil
	case <-ctx.Done():
		if err, ok := failed.Load().(error); ok {
			return rate{}, err
		}
		return rate{}, fmt.Errorf("executed %d of %d: %w", done.Load(), n, ctx.Err())
	}
}

// post sends one command as POST /api/v1/agent/chats/{room}/messages.
func post(ctx context.Context, c *http.Client, base, room, key string, args []byte) error {
	body := make([]byte, 0, len(args)+16)
	body = append(append(append(body, `{"message":`...), args...), '}')
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/agent/chats/"+room+"/messages", strings.NewReader(string(body)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", key)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("POST messages: status %d", resp.StatusCode)
	}
	return nil
}

// plainServer answers every POST with 201 and a small JSON body, after
// reading the request: the cheapest loopback HTTP target. stop closes it
// and waits for its serve loop.
func plainServer() (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"data":{"id":"00000000-0000-4000-8000-000000000000","success":true}}`))
	})}
	done := make(chan struct{})
	go func() { // owned: stop waits for it
		defer close(done)
		_ = srv.Serve(ln)
	}()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close(); <-done }, nil
}

// stopConsume stops a Consume and waits (briefly) until its callback is
// no longer running.
func stopConsume(cc jetstream.ConsumeContext) {
	cc.Stop()
	select {
	case <-cc.Closed():
	case <-time.After(5 * time.Second):
	}
}
