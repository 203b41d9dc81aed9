package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bridgeworks/bridge/emulator/polyaiemu"
)

func TestEmulatePolyAIFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"polyai", "extra"},
		{"--idle-timeout", "0s"},
		{"--host", " "},
	} {
		err := cmdEmulatePolyAI(context.Background(), args, io.Discard, io.Discard)
		if !errors.Is(err, errUsage) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
	if err := cmdEmulatePolyAI(context.Background(), []string{"--nope"}, io.Discard, io.Discard); err == nil {
		t.Error("unknown flag accepted")
	}
	// It serves until the context ends, then returns nil.
	ctx, cancel := context.WithCancel(context.Background())
	var out strings.Builder
	done := make(chan error, 1)
	go func() {
		done <- cmdEmulatePolyAI(ctx, []string{"--listen", "127.0.0.1:0", "--control", "127.0.0.1:0",
			"--connector-token", "tok-1"}, &out, io.Discard)
	}()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("after cancel: %v", err)
	}
	if !strings.Contains(out.String(), "X-Token   tok-1") {
		t.Fatalf("banner %q", out.String())
	}
}

// TestPolyAIControl speaks for the agents of `bridge emulate polyai`
// over HTTP and checks bad requests name what is wrong.
func TestPolyAIControl(t *testing.T) {
	t.Parallel()
	emu := polyaiemu.New(polyaiemu.Options{})
	defer emu.Close()
	sess, err := emu.CreateSession(polyaiemu.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer((&polyaiControl{emu: emu}).handler())
	defer srv.Close()
	do := func(method, path, body string) (int, string) {
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	p := "/sessions/" + sess.ID
	for _, tc := range []struct {
		method, path, body string
		status             int
		contains           string
	}{
		{"GET", "/sessions", "", 200, sess.ID},
		{"POST", p + "/say", `{"text": "hello"}`, 200, `"agent":"none"`},
		{"POST", p + "/say", `{}`, 400, "text: empty"},
		{"POST", p + "/say", `{"txt": "x"}`, 400, "unknown field"},
		{"POST", p + "/handoff", `{"mode": "server"}`, 409, "handoff not possible now"},
		{"POST", p + "/handoff", `{"mode": "sideways"}`, 400, "want server or client"},
		{"POST", p + "/end", `{"reason": "BECAUSE"}`, 400, "REASON_USER_END"},
		{"POST", p + "/fly", ``, 404, "want say, handoff"},
		{"POST", "/sessions/nope/say", `{"text": "x"}`, 404, "no such session"},
		{"POST", p + "/drop", ``, 200, ""},
		{"POST", p + "/end", ``, 200, `"end_reason":"REASON_NATURAL_END"`},
		{"GET", p, "", 200, `"ended":true`},
	} {
		code, body := do(tc.method, tc.path, tc.body)
		if code != tc.status || !strings.Contains(body, tc.contains) {
			t.Errorf("%s %s %s: %d %s, want %d containing %q", tc.method, tc.path, tc.body, code, body, tc.status, tc.contains)
		}
	}
	if h := emu.History(sess.ID); h[len(h)-1].Type != polyaiemu.TypeSessionEnd || h[len(h)-2].Type != polyaiemu.TypeAgentMessage {
		t.Fatalf("history %v", h)
	}
}
