package chatapi_test

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/connector/chatapi"
	"github.com/bridgeworks/bridge/emulator/chatapiemu"
	"github.com/bridgeworks/bridge/internal/testutil"
)

// A chat is sent again by the bridge only when it could not have reached
// the platform: a refused dial or a 429/503 is retryable, a failure after
// the request was written or a 500 is Sent (unknown outcome).
func TestChatFailuresSentOrNot(t *testing.T) {
	t.Parallel()
	emu, agents := startEmu(t, 1, chatapiemu.Options{})
	a := agents[0]
	c := newConnector(t, emu, nil, nil)
	ctx := testutil.Context(t, 30*time.Second)
	chat := connector.Command{ID: "c", Name: "chat", Room: a.ID, Args: json.RawMessage(`{"message":"hi"}`)}
	path := "/api/agents/" + a.ID + "/chat/stream"
	for _, f := range []struct {
		name      string
		inject    func()
		sent      bool
		permanent bool
	}{
		{"429", func() { emu.FailRoute(http.MethodPost, path, 1, http.StatusTooManyRequests, 0) }, false, false},
		{"503", func() { emu.FailRoute(http.MethodPost, path, 1, http.StatusServiceUnavailable, 0) }, false, false},
		{"422", func() { emu.FailRoute(http.MethodPost, path, 1, http.StatusUnprocessableEntity, 0) }, false, true},
		{"500", func() { emu.FailRoute(http.MethodPost, path, 1, http.StatusInternalServerError, 0) }, true, false},
		{"hang-up", func() { emu.HangUpRoute(http.MethodPost, path, 1) }, true, false},
		{"cut", func() { emu.InjectStreamFault(a.ID, chatapiemu.StreamFault{Kind: chatapiemu.StreamCut, After: 1}) }, true, false},
		{"error chunk", func() { emu.InjectStreamFault(a.ID, chatapiemu.StreamFault{Kind: chatapiemu.StreamError, After: 1}) }, true, false},
	} {
		f.inject()
		var evs []connector.Event
		_, err := c.ExecuteStream(ctx, chat, func(ev connector.Event) error { evs = append(evs, ev); return nil })
		switch {
		case err == nil:
			t.Errorf("%s: no error", f.name)
		case connector.WasSent(err) != f.sent:
			t.Errorf("%s: %v: Sent = %v, want %v", f.name, err, connector.WasSent(err), f.sent)
		case connector.IsPermanent(err) != f.permanent:
			t.Errorf("%s: %v: permanent = %v, want %v", f.name, err, connector.IsPermanent(err), f.permanent)
		}
		if f.name == "cut" || f.name == "error chunk" {
			if len(evs) != 2 || evs[0].Name != chatapi.EventTextDelta || evs[1].Name != chatapi.EventFailed {
				t.Errorf("%s: events %v, want one text_delta and message_failed", f.name, evs)
			}
		}
	}

	// Nothing listens: the dial fails before anything was written.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	down, err := chatapi.New(chatapi.ConfigFor("http://"+addr+"/api", "k", nil), connector.Deps{Log: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = down.Execute(ctx, chat)
	if err == nil || connector.WasSent(err) || connector.IsPermanent(err) {
		t.Errorf("refused dial: %v (sent %v), want a retryable error, not Sent", err, connector.WasSent(err))
	}
}

// A 429's Retry-After holds the key's next calls (the token bucket waits).
func TestRetryAfterHoldsTheKey(t *testing.T) {
	t.Parallel()
	emu, agents := startEmu(t, 1, chatapiemu.Options{})
	c := newConnector(t, emu, nil, nil)
	ctx := testutil.Context(t, 30*time.Second)
	hist := connector.Command{Name: "history", Room: agents[0].ID}
	emu.FailRoute(http.MethodGet, "/api/agents/"+agents[0].ID+"/history", 1, http.StatusTooManyRequests, time.Second)
	_, err := c.Execute(ctx, hist)
	var pe *connector.PlatformError
	if !errors.As(err, &pe) || pe.Status != http.StatusTooManyRequests || pe.RetryAfter < time.Second {
		t.Fatalf("first call: %v, want a 429 with its Retry-After", err)
	}
	start := time.Now()
	if _, err := c.Execute(ctx, hist); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("the next call went after %s, before the 1s Retry-After", d)
	}
	if w := c.Stats().Wait; w.Asked < time.Second || w.Reason == "" {
		t.Errorf("Stats().Wait = %+v, want the platform's wait", w)
	}
}
