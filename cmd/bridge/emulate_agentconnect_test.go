package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/emulator/agentconnectemu"
)

func TestEmulateAgentConnectFlagErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--ping-interval", "0s"},
		{"--token-budget", "0"},
		{"--max-turns", "-2"},
		{"agentconnect", "extra"},
	} {
		err := cmdEmulateAgentConnect(context.Background(), args, io.Discard, io.Discard)
		if !errors.Is(err, errUsage) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
	if err := cmdEmulateAgentConnect(context.Background(), []string{"--nope"}, io.Discard, io.Discard); err == nil {
		t.Error("unknown flag accepted")
	}
}

// TestAgentConnectControl drives the emulator through the control API:
// a notice reaches the session's record, an unknown session is named.
func TestAgentConnectControl(t *testing.T) {
	t.Parallel()
	emu := agentconnectemu.New(agentconnectemu.Options{})
	defer emu.Close()
	if _, err := emu.Start(); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer((&acControl{emu: emu}).handler())
	defer srv.Close()
	tok := emu.Token(agentconnectemu.DefaultUser)
	req, _ := http.NewRequest("POST", emu.URL()+agentconnectemu.CreatePath,
		strings.NewReader(`{"session_type":"human_agent","agents":{"a":{"provider":"groq"}}}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("create: %v %v", resp, err)
	}
	resp.Body.Close()
	id := emu.Sessions()[0].ID

	post := func(path, body string) (int, string) {
		resp, err := http.Post(srv.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post("/sessions/"+id+"/system", `{"content":"hello"}`); code != http.StatusNoContent {
		t.Fatalf("system: %d %s", code, body)
	}
	if b := emu.Broadcasts(id); len(b) != 1 || b[0].Type != "system" || b[0].Content != "hello" {
		t.Fatalf("broadcasts %+v", b)
	}
	if code, body := post("/sessions/"+id+"/cooldown", `{"seconds":-1}`); code != http.StatusBadRequest || !strings.Contains(body, "seconds") {
		t.Fatalf("bad cooldown: %d %s", code, body)
	}
	if code, body := post("/sessions/nope/stop", ``); code != http.StatusNotFound || !strings.Contains(body, "nope") {
		t.Fatalf("unknown session: %d %s", code, body)
	}
	if code, body := post("/users/"+agentconnectemu.DefaultUser+"/expire-tokens", ``); code != 200 || !strings.Contains(body, `"expired":1`) {
		t.Fatalf("expire: %d %s", code, body)
	}
	resp, err = http.Get(srv.URL + "/sessions")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"session_id":"`+id+`"`) {
		t.Fatalf("sessions: %s", b)
	}
}

// TestEmulateAgentConnectServes starts the command and stops it with ctx.
func TestEmulateAgentConnectServes(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	out := &acBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- cmdEmulateAgentConnect(ctx, []string{"--listen", "127.0.0.1:0", "--control", "none", "--password", "pw"}, out, io.Discard)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "password = pw") {
		if time.Now().After(deadline) {
			t.Fatalf("no banner: %q", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// acBuffer is a bytes.Buffer safe for a writer and a reader.
type acBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *acBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *acBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
