package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/bridgeworks/bridge/emulator/chatapiemu"
)

func TestEmulateChatAPIFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--agents", "0"},
		{"--team-mode", "round-robin"},
		{"--rate-limit", "-1"},
		{"extra"},
	} {
		var out, errOut bytes.Buffer
		err := cmdEmulateChatAPI(context.Background(), append([]string{"chatapi"}, args...), &out, &errOut)
		if !errors.Is(err, errUsage) {
			t.Fatalf("%v: err %v", args, err)
		}
	}
	var errOut bytes.Buffer
	if err := cmdEmulateChatAPI(context.Background(), []string{"--nope"}, io.Discard, &errOut); err == nil || !strings.Contains(errOut.String(), "nope") {
		t.Fatalf("unknown flag: %v %q", err, errOut.String())
	}
}

// TestEmulateChatAPIRuns starts the command and stops it with its
// context.
func TestEmulateChatAPIRuns(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- cmdEmulateChatAPI(ctx, []string{"--listen", "127.0.0.1:0", "--control", "none", "--agents", "2"}, &out, io.Discard)
	}()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("emulate chatapi did not stop")
	}
	if s := out.String(); strings.Count(s, "agent key = at_agent_") != 2 || !strings.Contains(s, "team key = at_team_") {
		t.Fatalf("output:\n%s", s)
	}
}

// TestChatAPIControl plays the platform of `bridge emulate chatapi`:
// inbox items, scripts and faults land in the emulator, and bad
// requests get an error naming what is wrong.
func TestChatAPIControl(t *testing.T) {
	t.Parallel()
	emu := chatapiemu.New(chatapiemu.Options{})
	defer emu.Close()
	srv := httptest.NewServer((&chatapiControl{emu: emu}).handler())
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
	id := emu.AgentID()
	if code, body := do("POST", "/agents/"+id+"/inbox", `{"content":"Stand-up","type":"reminder"}`); code != 201 {
		t.Fatalf("inbox: %d %s", code, body)
	}
	if items := emu.InboxItems(id); len(items) != 1 || items[0].Type != "reminder" {
		t.Fatalf("items %+v", items)
	}
	if code, _ := do("PUT", "/agents/"+id+"/script", `{"text":"Hi.","fragments":2}`); code != 204 {
		t.Fatalf("script: %d", code)
	}
	if code, _ := do("POST", "/faults/stream", `{"kind":"stall","after":1}`); code != 204 {
		t.Fatalf("stream fault: %d", code)
	}
	if code, _ := do("POST", "/faults/http", `{"count":1,"status":429,"retry_after_seconds":3}`); code != 204 {
		t.Fatalf("http fault: %d", code)
	}
	if code, body := do("GET", "/agents", ""); code != 200 || !strings.Contains(body, `"unread":1`) {
		t.Fatalf("agents: %d %s", code, body)
	}
	for _, tc := range []struct{ method, path, body, want string }{
		{"POST", "/agents/nope/inbox", `{"content":"x"}`, "no such agent"},
		{"POST", "/agents/" + id + "/inbox", `{"content":" "}`, "content"},
		{"POST", "/agents/" + id + "/inbox", `{"text":"x"}`, "unknown field"},
		{"POST", "/faults/stream", `{"kind":"explode"}`, "kind"},
		{"POST", "/faults/http", `{"count":1,"status":200}`, "status"},
		{"PUT", "/agents/" + id + "/script", `{"fragments":-1}`, "fragments"},
	} {
		code, body := do(tc.method, tc.path, tc.body)
		if code < 400 || !strings.Contains(body, tc.want) {
			t.Fatalf("%s %s %s: %d %s", tc.method, tc.path, tc.body, code, body)
		}
	}
}
