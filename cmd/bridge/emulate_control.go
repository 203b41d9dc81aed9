package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/bridgeworks/bridge/emulator/bandemu"
)

// maxControlBody bounds a control request body.
const maxControlBody = 64 << 10

// emulatorControl is the HTTP control of `bridge emulate band`: it plays
// the platform's users, so emulate + run + a worker is a whole local setup.
//
//	GET  /rooms                        the rooms, with their message counts
//	POST /rooms/{room}/messages        {"content": "…"}: a user posts, mentioning the agent
//	GET  /rooms/{room}/messages        every message, with its processing status
type emulatorControl struct {
	emu  *bandemu.Server
	user bandemu.User // who posts
}

func (c *emulatorControl) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /rooms", c.rooms)
	mux.HandleFunc("POST /rooms/{room}/messages", c.post)
	mux.HandleFunc("GET /rooms/{room}/messages", c.messages)
	return mux
}

type controlRoom struct {
	ID       string `json:"id"`
	Title    string `json:"title"`
	Messages int    `json:"messages"`
}

type controlMessage struct {
	ID         string `json:"id"`
	Sender     string `json:"sender"`
	SenderType string `json:"sender_type"`
	Type       string `json:"message_type"`
	Content    string `json:"content"`
	Status     string `json:"status,omitempty"` // the agent's processing status of a user message
}

func (c *emulatorControl) rooms(w http.ResponseWriter, _ *http.Request) {
	out := []controlRoom{}
	for _, r := range c.emu.Rooms() {
		out = append(out, controlRoom{ID: r.ID, Title: r.Title, Messages: len(c.emu.Messages(r.ID))})
	}
	writeJSON(w, http.StatusOK, out)
}

func (c *emulatorControl) post(w http.ResponseWriter, r *http.Request) {
	room := r.PathValue("room")
	var body struct {
		Content string `json:"content"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, maxControlBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("body: want {\"content\": \"…\"}: %w", err))
		return
	}
	if strings.TrimSpace(body.Content) == "" {
		writeError(w, http.StatusBadRequest, errors.New("content: empty"))
		return
	}
	m := c.emu.PostUserMessage(room, c.user.ID, body.Content)
	if m.ID == "" {
		writeError(w, http.StatusNotFound, fmt.Errorf("room %q: no such room (GET /rooms lists them)", room))
		return
	}
	writeJSON(w, http.StatusCreated, c.view(m))
}

func (c *emulatorControl) messages(w http.ResponseWriter, r *http.Request) {
	room := r.PathValue("room")
	if !c.hasRoom(room) {
		writeError(w, http.StatusNotFound, fmt.Errorf("room %q: no such room (GET /rooms lists them)", room))
		return
	}
	out := []controlMessage{}
	for _, m := range c.emu.Messages(room) {
		out = append(out, c.view(m))
	}
	writeJSON(w, http.StatusOK, out)
}

func (c *emulatorControl) hasRoom(id string) bool {
	for _, r := range c.emu.Rooms() {
		if r.ID == id {
			return true
		}
	}
	return false
}

func (c *emulatorControl) view(m bandemu.Message) controlMessage {
	v := controlMessage{ID: m.ID, Sender: m.SenderName, SenderType: m.SenderType, Type: m.MessageType, Content: m.Content}
	if m.SenderType == "User" {
		v.Status, _ = c.emu.Status(m.ID)
	}
	return v
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}
