package toyemu

import (
	"net/http"
	"slices"
	"time"
)

// The Go API tests drive the platform with.

// AddConversation creates a conversation with the bot in it and logs a
// joined event.
func (s *Server) AddConversation(title string) Conversation {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &conversation{Conversation: Conversation{ID: s.nextIDLocked("c"), Title: title}}
	s.convs[c.ID] = c
	s.order = append(s.order, c.ID)
	s.appendLocked("joined", map[string]string{"conversation": c.ID, "title": title})
	return c.Conversation
}

// Post posts text as a human author in a conversation and logs a post
// event; it returns the zero Post for an unknown conversation.
func (s *Server) Post(conv, author, text string) Post {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.convs[conv] == nil || author == BotAuthor {
		return Post{}
	}
	p := &Post{ID: s.nextIDLocked("p"), Conversation: conv, Author: author, Text: text, At: time.Now().UTC()}
	s.posts[p.ID] = p
	s.appendLocked("post", p)
	return *p
}

// BotPosts returns the bot's posts in a conversation, oldest first.
func (s *Server) BotPosts(conv string) []Post {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.convs[conv]; c != nil {
		return slices.Clone(c.bot)
	}
	return nil
}

// Progress returns the stages recorded for a human post, oldest first.
func (s *Server) Progress(post string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.posts[post]; p != nil {
		return slices.Clone(p.progress)
	}
	return nil
}

// Streams returns the number of open event streams.
func (s *Server) Streams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.streams)
}

// Fault knobs.

// DropStreams cuts every open event stream mid-body, as a network failure
// does.
func (s *Server) DropStreams() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for st := range s.streams {
		st.killed = true
		close(st.kill)
		delete(s.streams, st)
	}
}

// SendGarbage writes one event whose data is not JSON to every open stream,
// before any event logged after this call.
func (s *Server) SendGarbage() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for st := range s.streams {
		st.garbage++
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

// FailNext makes the next REST call (not GET /v1/events) fail with status,
// with a Retry-After when retryAfter > 0. Calls queue up: each fails one call.
func (s *Server) FailNext(status int, retryAfter time.Duration) {
	if status < http.StatusBadRequest {
		status = http.StatusInternalServerError
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = append(s.fail, fault{status: status, retryAfter: retryAfter})
}

// HangUpNext makes the next REST call end with the connection closed, no
// answer, before the call is executed.
func (s *Server) HangUpNext() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = append(s.fail, fault{})
}
