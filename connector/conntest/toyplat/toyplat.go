package toyplat

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/connector"
)

// Platform is the subject token of the toy platform.
const Platform = "toy"

// Settings are the connector's configuration.
type Settings struct {
	BaseURL string `toml:"base_url"` // the platform's base URL (http or https), required
	Token   string `toml:"-"`        // the bot's bearer token (secret "token"), required; never logged
}

// Factory returns the registry entry of platform "toy".
func Factory() connector.Factory {
	return connector.Factory{Platform: Platform, Secrets: []string{"token"},
		Check: func(cfg connector.Config) error { _, err := settingsOf(cfg); return err },
		New: func(cfg connector.Config, deps connector.Deps) (connector.Connector, error) {
			s, err := settingsOf(cfg)
			if err != nil {
				return nil, err
			}
			return New(s, deps)
		}}
}

// settingsOf decodes the connection's [connection.settings] table and its
// token secret (token_env or token_file).
func settingsOf(cfg connector.Config) (Settings, error) {
	var s Settings
	if err := cfg.Settings.Decode(&s); err != nil {
		return s, err
	}
	if s.BaseURL == "" {
		return s, fmt.Errorf("settings.base_url is required")
	}
	tok, err := cfg.Secrets.Get("token")
	if err != nil {
		return s, err
	}
	s.Token = tok
	return s, nil
}

// maxLine bounds one line of the event stream.
const maxLine = 1 << 20

// Connector is one toy bot.
type Connector struct {
	base   string
	token  string
	log    zerolog.Logger
	rest   *http.Client // commands
	stream *http.Client // the event stream: no overall timeout

	connMu sync.Mutex // serialises Connect and Close
	mu     sync.Mutex // guards the fields below; never held across a call
	sess   *session
	cursor uint64          // every event up to cursor is settled
	done   map[uint64]bool // settled events after cursor

	connects atomic.Uint64
}

// New builds a connector; it does no I/O.
func New(s Settings, deps connector.Deps) (*Connector, error) {
	u, err := url.Parse(s.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("toy: settings.base_url %q is not an http(s) URL", s.BaseURL)
	}
	if s.Token == "" {
		return nil, errors.New("toy: secret token is empty")
	}
	rest := deps.HTTPClient
	if rest == nil {
		rest = &http.Client{Timeout: 30 * time.Second, CheckRedirect: connector.SameOriginRedirects}
	}
	return &Connector{
		base: strings.TrimRight(s.BaseURL, "/"), token: s.Token, log: deps.Log, rest: rest,
		stream: &http.Client{Transport: rest.Transport, CheckRedirect: connector.SameOriginRedirects},
		done:   map[uint64]bool{},
	}, nil
}

type item struct {
	ev  connector.Event
	ack connector.AckFunc
}

// session is one open event stream.
type session struct {
	cancel context.CancelFunc
	body   io.ReadCloser
	out    chan item
	ended  chan struct{} // closed when the reader stopped; err is set before
	err    error
	wg     sync.WaitGroup
}

// Connect opens the event stream, resuming after the last settled event.
func (c *Connector) Connect(ctx context.Context) error {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	c.mu.Lock()
	busy, cursor := c.sess != nil, c.cursor
	c.mu.Unlock()
	if busy {
		return errors.New("toy: already connected")
	}
	sctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(sctx, http.MethodGet, c.base+"/v1/events", nil)
	if err != nil {
		cancel()
		return fmt.Errorf("toy: connect: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "text/event-stream")
	if cursor > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatUint(cursor, 10))
	}
	stop := context.AfterFunc(ctx, cancel) // ctx bounds the dial and the answer's head only
	resp, err := c.stream.Do(req)
	if !stop() {
		if err == nil {
			resp.Body.Close()
		}
		cancel()
		return fmt.Errorf("toy: connect: %w", ctx.Err())
	}
	if err != nil {
		cancel()
		return fmt.Errorf("toy: connect: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		defer cancel()
		return fmt.Errorf("toy: connect: %w", platformError(resp))
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		resp.Body.Close()
		cancel()
		return fmt.Errorf("toy: connect: answer is %q, not an event stream", ct)
	}
	s := &session{cancel: cancel, body: resp.Body, out: make(chan item, 64), ended: make(chan struct{})}
	s.wg.Go(func() { c.read(sctx, s) })
	c.mu.Lock()
	c.sess = s
	c.mu.Unlock()
	c.connects.Add(1)
	return nil
}

// Receive returns the next event of the open stream.
func (c *Connector) Receive(ctx context.Context) (connector.Event, connector.AckFunc, error) {
	c.mu.Lock()
	s := c.sess
	c.mu.Unlock()
	if s == nil {
		return connector.Event{}, nil, connector.ErrNotConnected
	}
	select {
	case it := <-s.out:
		return it.ev, it.ack, nil
	default:
	}
	select {
	case it := <-s.out:
		return it.ev, it.ack, nil
	case <-s.ended:
		select { // events read before the end still go out
		case it := <-s.out:
			return it.ev, it.ack, nil
		default:
		}
		return connector.Event{}, nil, s.err
	case <-ctx.Done():
		return connector.Event{}, nil, ctx.Err()
	}
}

// Close ends the stream and waits for its reader; it is idempotent.
func (c *Connector) Close(ctx context.Context) error {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	c.mu.Lock()
	s := c.sess
	c.sess = nil
	c.mu.Unlock()
	if s == nil {
		return nil
	}
	s.cancel()
	s.body.Close()
	done := make(chan struct{})
	go func() { // owned: ends when the reader does
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("toy: close: %w", ctx.Err())
	}
}

// Stats counts the stream's reconnects.
func (c *Connector) Stats() connector.Stats {
	return connector.Stats{Reconnects: max(c.connects.Load(), 1) - 1}
}

// settle records that the event seq is stored and moves the cursor past
// every settled event in a row.
func (c *Connector) settle(seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if seq <= c.cursor {
		return
	}
	c.done[seq] = true
	for c.done[c.cursor+1] {
		delete(c.done, c.cursor+1)
		c.cursor++
	}
}

func (c *Connector) settled(seq uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return seq <= c.cursor || c.done[seq]
}

// read parses the stream until it ends, handing events to Receive.
func (c *Connector) read(ctx context.Context, s *session) {
	err := c.parse(ctx, s)
	if ctx.Err() != nil {
		err = connector.ErrNotConnected // closed by Close
	}
	s.err = err
	close(s.ended)
	s.body.Close()
}

// parse reads Server-Sent Events: "field: value" lines, a blank line ends
// an event, lines starting with ":" are comments.
func (c *Connector) parse(ctx context.Context, s *session) error {
	r := bufio.NewReaderSize(s.body, 64<<10)
	var id, typ string
	var data []string
	for {
		line, err := readLine(r)
		if err != nil {
			return fmt.Errorf("toy: stream lost: %w (%w)", connector.ErrNotConnected, err)
		}
		if line == "" {
			if len(data) > 0 || typ != "" {
				if err := c.dispatch(ctx, s, id, typ, strings.Join(data, "\n")); err != nil {
					return err
				}
			}
			id, typ, data = "", "", nil
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			id = value
		case "event":
			typ = value
		case "data":
			data = append(data, value)
		}
	}
}

// readLine reads one line without its end (LF or CRLF), refusing lines
// longer than maxLine.
func readLine(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, isPrefix, err := r.ReadLine()
		if err != nil {
			return "", err
		}
		b = append(b, chunk...)
		if len(b) > maxLine {
			return "", fmt.Errorf("line longer than %d bytes", maxLine)
		}
		if !isPrefix {
			return string(b), nil
		}
	}
}

// malformed is a frame that does not follow the platform's spec: the
// session ends with it (not permanent: the bridge reconnects and resumes).
func malformed(format string, args ...any) error {
	return fmt.Errorf("toy: malformed frame: %w: %s", connector.ErrNotConnected, fmt.Sprintf(format, args...))
}

// dispatch turns one stream event into a connector event.
func (c *Connector) dispatch(ctx context.Context, s *session, id, typ, data string) error {
	seq, err := strconv.ParseUint(id, 10, 64)
	if err != nil || seq == 0 {
		return malformed("event id %q is not a sequence number", id)
	}
	if typ == "" {
		return malformed("event %d has no type", seq)
	}
	var head struct {
		ID           string    `json:"id"`
		Conversation string    `json:"conversation"`
		At           time.Time `json:"at"`
	}
	if err := json.Unmarshal([]byte(data), &head); err != nil {
		return malformed("event %d (%s): data is not a JSON object", seq, typ)
	}
	if c.settled(seq) {
		return nil // replayed after a resume: stored already
	}
	ev := connector.Event{Room: head.Conversation, Name: typ, Key: "e" + strconv.FormatUint(seq, 10), Data: json.RawMessage(data)}
	if typ == "post" {
		if head.ID == "" {
			return malformed("post event %d has no id", seq)
		}
		ev.Key, ev.Time = head.ID, head.At
	}
	ack := func(_ context.Context, err error) {
		if err == nil {
			c.settle(seq)
		}
	}
	select {
	case s.out <- item{ev, ack}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// platformError reads a problem document.
func platformError(resp *http.Response) *connector.PlatformError {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	pe := &connector.PlatformError{Status: resp.StatusCode, Data: raw,
		RetryAfter: connector.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	var p struct {
		Type  string `json:"type"`
		Title string `json:"title"`
	}
	if json.Unmarshal(raw, &p) == nil {
		pe.Code, pe.Message = p.Type, p.Title
	}
	return pe
}
