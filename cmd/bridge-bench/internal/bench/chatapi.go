package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bridgeworks/bridge/bridge"
	"github.com/bridgeworks/bridge/config"
	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/connector/chatapi"
	"github.com/bridgeworks/bridge/emulator/chatapiemu"
	"github.com/bridgeworks/bridge/subjects"
)

// Figure names of the chatapi scenario.
const (
	figChatAPIBase      = "straight-line SSE → JetStream baseline"
	figChatAPIBridge    = "bridge (chat commands, streamed)"
	figChatAPIRatio     = "bridge ÷ straight-line SSE baseline"
	figChatAPIBaseCPU   = "CPU per fragment, straight-line SSE baseline (emulator + baseline + NATS)"
	figChatAPIBridgeCPU = "CPU per fragment, bridge (emulator + bridge + NATS + worker)"
)

// chatapiConn is the bridge connection (and the baseline's subject
// token) of the chatapi scenario.
const chatapiConn = "bench"

// chatapiDeltas matches every text_delta of the scenario's connection.
const chatapiDeltas = "bridge.evt." + chatapi.Platform + "." + chatapiConn + ".*." + chatapi.EventTextDelta

// chatapi measures streamed fragments per second stored in BRIDGE_EVENTS:
// ChatAPIAgents agents each answer ChatAPIChats/ChatAPIAgents chats in
// turn, each reply ChatAPIFragments SSE text chunks sent as fast as they
// are read. The bridge gets them as durable chat commands from a worker
// (one room per agent, the rooms in parallel); the straight-line baseline
// is a plain HTTP client per agent reading the same emulator's stream and
// publishing each fragment's event as the bridge does (CloudEvents
// envelope, Nats-Msg-Id, PublishMsg waiting for each PubAck in turn),
// then the message_completed. The two run in a rotating order.
func (e *Env) chatapi(ctx context.Context, run int) error {
	kinds := []kind{kindBaseline, kindBridge}
	res := map[kind]rate{}
	for i := range kinds {
		k := kinds[(i+run-1)%len(kinds)]
		r, err := e.chatapiOnce(ctx, k)
		if err != nil {
			return fmt.Errorf("%s: %w", map[kind]string{kindBaseline: "baseline", kindBridge: "bridge"}[k], err)
		}
		res[k] = r
		e.logf("   %-10s %d agents, %d chats × %d fragments: %8.0f fragments/s, %5.1f µs CPU/fragment",
			map[kind]string{kindBaseline: "baseline", kindBridge: "bridge"}[k], e.plan.ChatAPIAgents, e.plan.ChatAPIChats, e.plan.ChatAPIFragments, r.perSec, us(r.cpu))
	}
	b, br := res[kindBaseline], res[kindBridge]
	e.c.add("chatapi", figChatAPIBase, "fragments/s", b.perSec)
	e.c.add("chatapi", figChatAPIBridge, "fragments/s", br.perSec)
	e.c.add("chatapi", figChatAPIRatio, "ratio", br.perSec/b.perSec)
	e.c.add("chatapi", figChatAPIBaseCPU, "µs", us(b.cpu))
	e.c.add("chatapi", figChatAPIBridgeCPU, "µs", us(br.cpu))
	e.c.add("chatapi", "bridge's added CPU per fragment (bridge − baseline)", "µs", us(br.cpu)-us(b.cpu))
	if b.cpu > 0 { // other processes disturb this far less than the rates
		e.c.add("chatapi", "bridge CPU per fragment ÷ straight-line SSE baseline", "ratio", float64(br.cpu)/float64(b.cpu))
	}
	return nil
}

// chatapiOnce runs one measurement on a fresh emulator and NATS server.
func (e *Env) chatapiOnce(ctx context.Context, k kind) (rate, error) {
	ctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	emu := chatapiemu.New(chatapiemu.Options{})
	if _, err := emu.Start(); err != nil {
		return rate{}, err
	}
	defer emu.Close()
	agents := []string{emu.AgentID()}
	for len(agents) < e.plan.ChatAPIAgents {
		agents = append(agents, emu.AddAgent("Bench Agent "+strconv.Itoa(len(agents))).ID)
	}
	emu.SetScript("", chatapiemu.Script{Text: chatapiReply(e.plan.ChatAPIFragments), Fragments: e.plan.ChatAPIFragments})
	dir := e.dir()
	defer e.removeDir(dir)

	var src chatSource
	var natsURL string
	switch k {
	case kindBridge:
		b, err := startChatAPIBridge(ctx, emu, dir, len(agents), e)
		if err != nil {
			return rate{}, err
		}
		defer func() { _ = b.stop() }()
		natsURL = b.info.NATSClientURL
		w, err := newChatWorker(ctx, natsURL)
		if err != nil {
			return rate{}, err
		}
		defer w.close()
		src = w
	default:
		ne, err := startNATS(ctx, dir, baselineWindow, e.log)
		if err != nil {
			return rate{}, err
		}
		defer ne.close()
		natsURL = ne.url()
		src = newSSEBaseline(emu, ne.js)
	}
	obs, err := newObserver(ctx, natsURL)
	if err != nil {
		return rate{}, err
	}
	defer obs.close()

	// Warm-up: one chat per agent, all its fragments stored.
	frags := uint64(e.plan.ChatAPIFragments)
	if err := src.chats(ctx, agents, len(agents), "warm"); err != nil {
		return rate{}, fmt.Errorf("warm-up: %w", err)
	}
	base := uint64(len(agents)) * frags
	if _, err := obs.waitCount(ctx, chatapiDeltas, base, 5*time.Millisecond); err != nil {
		return rate{}, fmt.Errorf("warm-up: %w", err)
	}
	n := e.plan.ChatAPIChats
	total := uint64(n) * frags
	cpu0 := cpuTime()
	start := time.Now()
	runErr := make(chan error, 1)
	go func() { runErr <- src.chats(ctx, agents, n, "run") }() // owned: received below
	end, err := obs.waitCount(ctx, chatapiDeltas, base+total, 2*time.Millisecond)
	if rerr := <-runErr; rerr != nil {
		err = errors.Join(rerr, err)
	}
	if err != nil {
		return rate{}, err
	}
	return rate{perSec: perSecond(int(total), end.Sub(start)), cpu: (cpuTime() - cpu0) / time.Duration(total)}, nil
}

// chatapiReply is a reply of n word fragments (each with its leading
// space, as the emulator splits them): short, like a language model's
// tokens.
func chatapiReply(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("word")
		b.WriteString(strconv.Itoa(i))
	}
	return b.String()
}

// chatSource runs n chats over the agents (chat i with agent i mod
// len(agents)); the bridge's source returns once the commands are sent,
// the baseline's once the chats are stored.
type chatSource interface {
	chats(ctx context.Context, agents []string, n int, tag string) error
}

// startChatAPIBridge runs the bridge with one chatapi connection to emu
// (no rate limit of its own, rooms in parallel up to rooms).
func startChatAPIBridge(ctx context.Context, emu *chatapiemu.Server, dir string, rooms int, e *Env) (*bridgeRun, error) {
	cfg := &config.Config{}
	cfg.Log.Level = "error"
	cfg.NATS.Embedded.Listen = "127.0.0.1:0"
	cfg.NATS.Embedded.StoreDir = dir
	cfg.HTTP.Listen = "none"
	cfg.Connection = []config.Connection{{Name: chatapiConn, Platform: chatapi.Platform, MaxParallelRooms: max(16, rooms),
		Settings: map[string]any{"base_url": emu.BaseURL(), "api_key_env": "BENCH_CHATAPI_KEY", "rate_limit": 1e6, "rate_burst": 10000}}}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return runUntilReady(ctx, cfg, bridge.Options{
		Log:       e.log,
		Registry:  connector.Registry{chatapi.Platform: chatapi.Factory()},
		LookupEnv: func(k string) (string, bool) { return emu.APIKey(), k == "BENCH_CHATAPI_KEY" },
	}, 0)
}

// chatWorker publishes chat commands to the bridge and watches their
// results: a failed chat fails the measurement.
type chatWorker struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	sub    *nats.Subscription
	failed atomic.Int64
	first  atomic.Value // the first failure's result, a string
}

func newChatWorker(ctx context.Context, url string) (*chatWorker, error) {
	nc, err := nats.Connect(url, nats.Name("bench-worker"))
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(baselineWindow))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("worker: %w", err)
	}
	w := &chatWorker{nc: nc, js: js}
	w.sub, err = nc.Subscribe("bridge.res."+chatapi.Platform+"."+chatapiConn+".>", func(m *nats.Msg) {
		if !bytes.Contains(m.Data, []byte(`"ok":true`)) {
			w.failed.Add(1)
			w.first.CompareAndSwap(nil, string(m.Data))
		}
	})
	if err == nil {
		err = nc.FlushWithContext(ctx)
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("worker: %w", err)
	}
	return w, nil
}

func (w *chatWorker) close() { w.nc.Close() }

// chats publishes n durable chat commands (PublishMsgAsync, then every
// PubAck awaited) and returns; the observer waits for their fragments.
func (w *chatWorker) chats(ctx context.Context, agents []string, n int, tag string) error {
	for i := range n {
		a := agents[i%len(agents)]
		m := nats.NewMsg("bridge.cmd." + chatapi.Platform + "." + chatapiConn + "." + subjects.EscapeToken(a) + ".chat")
		m.Header.Set(subjects.HeaderMsgID, fmt.Sprintf("%s-%d", tag, i))
		m.Data = []byte(`{"message":"question ` + strconv.Itoa(i) + `"}`)
		if _, err := w.js.PublishMsgAsync(m); err != nil {
			return fmt.Errorf("publish chat %d: %w", i, err)
		}
	}
	select {
	case <-w.js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	}
	if w.failed.Load() > 0 {
		return fmt.Errorf("%d chats failed, first: %v", w.failed.Load(), w.first.Load())
	}
	return nil
}

// sseBaseline is the straight-line SSE → JetStream pipeline: per agent,
// one goroutine runs its chats in turn, each a POST to the stream route
// read line by line; every text chunk becomes a text_delta event stored
// with PublishMsg (waiting for the PubAck before the next read), the end
// a message_completed, as the bridge stores them.
type sseBaseline struct {
	emu    *chatapiemu.Server
	js     jetstream.JetStream
	client *http.Client
}

func newSSEBaseline(emu *chatapiemu.Server, js jetstream.JetStream) *sseBaseline {
	return &sseBaseline{emu: emu, js: js, client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
}

func (s *sseBaseline) chats(ctx context.Context, agents []string, n int, tag string) error {
	defer s.client.CloseIdleConnections()
	var wg sync.WaitGroup
	errs := make([]error, len(agents))
	for j, a := range agents {
		wg.Go(func() {
			for i := j; i < n; i += len(agents) {
				if err := s.chat(ctx, a, fmt.Sprintf("%s-%d", tag, i), "question "+strconv.Itoa(i)); err != nil {
					errs[j] = err
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// chat streams one reply into JetStream.
func (s *sseBaseline) chat(ctx context.Context, agent, id, message string) error {
	body, _ := json.Marshal(map[string]string{"message": message})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.emu.BaseURL()+"/agents/"+agent+"/chat/stream", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.emu.APIKey())
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("chat stream: status %d", resp.StatusCode)
	}
	var seq int64
	publish := func(name string, data any) error {
		raw, err := json.Marshal(data)
		if err != nil {
			return err
		}
		i := seq
		env := subjects.NewEvent(chatapi.Platform, chatapiConn, agent, name, "cmd:"+id+":"+strconv.FormatInt(i, 10), time.Now(), raw)
		env.CommandID, env.Seq = id, &i
		m := nats.NewMsg("bridge.evt." + chatapi.Platform + "." + chatapiConn + "." + subjects.EscapeToken(agent) + "." + name)
		m.Header.Set(subjects.HeaderContentType, subjects.ContentTypeCloudEvents)
		m.Header.Set(subjects.HeaderMsgID, env.ID)
		m.Data = env.AppendJSON(nil)
		if _, err := s.js.PublishMsg(ctx, m); err != nil {
			return err
		}
		seq++
		return nil
	}
	var text strings.Builder
	frags := 0
	br := bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("chat stream of %s: %w after %d fragments", agent, err, frags)
		}
		data, ok := bytes.CutPrefix(bytes.TrimRight(line, "\r\n"), []byte("data:"))
		if !ok {
			continue
		}
		data = bytes.TrimPrefix(data, []byte(" "))
		if string(data) == "[DONE]" {
			break
		}
		var ch struct {
			Type    string `json:"type"`
			Content string `json:"content"`
		}
		if json.Unmarshal(data, &ch) != nil || ch.Type != "text" {
			continue
		}
		if err := publish(chatapi.EventTextDelta, map[string]any{"index": frags, "text": ch.Content}); err != nil {
			return err
		}
		text.WriteString(ch.Content)
		frags++
	}
	return publish(chatapi.EventCompleted, map[string]any{"agent_id": agent, "text": text.String(), "fragments": frags, "tool_calls": []any{}})
}
