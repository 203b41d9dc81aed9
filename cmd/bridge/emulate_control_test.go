package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bridgeworks/bridge/emulator/bandemu"
)

// TestEmulatorControl plays the user of `bridge emulate band` over HTTP:
// a posted message lands in the room, mentioning the agent, and bad
// requests are refused with an error that names what is wrong.
func TestEmulatorControl(t *testing.T) {
	t.Parallel()
	emu := bandemu.New(bandemu.Options{})
	defer emu.Close()
	user := emu.AddUser("Dana Levi")
	room := emu.AddRoom("Room 1", user.ID)
	srv := httptest.NewServer((&emulatorControl{emu: emu, user: user}).handler())
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
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}

	code, body := do("POST", "/rooms/"+room.ID+"/messages", `{"content":"hello agent"}`)
	if code != http.StatusCreated {
		t.Fatalf("post: %d %s", code, body)
	}
	msgs := emu.Messages(room.ID)
	if len(msgs) != 1 || msgs[0].Content != "hello agent" || len(msgs[0].Mentions) != 1 || msgs[0].Mentions[0].ID != emu.AgentID() {
		t.Fatalf("room holds %+v, want one message mentioning the agent", msgs)
	}
	code, body = do("GET", "/rooms/"+room.ID+"/messages", "")
	var got []controlMessage
	if err := json.Unmarshal([]byte(body), &got); code != http.StatusOK || err != nil || len(got) != 1 || got[0].ID != msgs[0].ID || got[0].Status == "" {
		t.Fatalf("list: %d %s (%v)", code, body, err)
	}
	code, body = do("GET", "/rooms", "")
	if code != http.StatusOK || !strings.Contains(body, room.ID) {
		t.Fatalf("rooms: %d %s", code, body)
	}

	for _, tc := range []struct {
		path, body, want string
		code             int
	}{
		{"/rooms/" + room.ID + "/messages", `{"text":"x"}`, "body", http.StatusBadRequest},
		{"/rooms/" + room.ID + "/messages", `{"content":"  "}`, "content", http.StatusBadRequest},
		{"/rooms/nope/messages", `{"content":"x"}`, "nope", http.StatusNotFound},
	} {
		code, body := do("POST", tc.path, tc.body)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("POST %s %s: %d %s, want %d naming %q", tc.path, tc.body, code, body, tc.code, tc.want)
		}
	}
	if n := len(emu.Messages(room.ID)); n != 1 {
		t.Errorf("refused posts left %d messages, want 1", n)
	}
}
