package chatapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/retry"
)

// maxBody bounds a JSON answer read into memory.
const maxBody = 8 << 20

// limiter is a token bucket per API key, with a hold while the platform
// asked the key to wait (Retry-After).
type limiter struct {
	every rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*bucket // by key fingerprint, never the key
}

type bucket struct {
	lim   *rate.Limiter
	until time.Time // no call before (a Retry-After), guarded by limiter.mu
}

func newLimiter(perSecond float64, burst int) *limiter {
	return &limiter{every: rate.Limit(perSecond), burst: burst, buckets: map[string]*bucket{}}
}

func fingerprint(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:8])
}

func (l *limiter) bucket(key string) *bucket {
	fp := fingerprint(key)
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[fp]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(l.every, l.burst)}
		l.buckets[fp] = b
	}
	return b
}

// wait blocks until key may make a call: after any hold, one token.
func (l *limiter) wait(ctx context.Context, key string) error {
	b := l.bucket(key)
	for {
		l.mu.Lock()
		d := time.Until(b.until)
		l.mu.Unlock()
		if d <= 0 {
			break
		}
		if !retry.Sleep(ctx, d) {
			return ctx.Err()
		}
	}
	if err := b.lim.Wait(ctx); err != nil {
		return fmt.Errorf("rate limit (settings.rate_limit): %w", err)
	}
	return nil
}

// hold keeps key's calls back until t.
func (l *limiter) hold(key string, t time.Time) {
	b := l.bucket(key)
	l.mu.Lock()
	defer l.mu.Unlock()
	if t.After(b.until) {
		b.until = t
	}
}

// client calls the REST API. It makes one attempt per call: retries are
// the bridge's (commands) or the poller's (inbox).
type client struct {
	base    string
	hc      *http.Client // reads: with the shared client's timeout
	long    *http.Client // chats and streams: no overall timeout (ctx bounds them)
	secret  func() (string, error)
	key     atomic.Pointer[string]
	lim     *limiter
	waitMax time.Duration
	waits   *connector.WaitBoard
	log     zerolog.Logger
}

func newClient(base string, hc *http.Client, lim *limiter, waitMax time.Duration, waits *connector.WaitBoard, log zerolog.Logger,
	secret func() (string, error)) *client {
	if hc == nil {
		hc = connector.NewHTTPClient()
	}
	return &client{base: strings.TrimRight(base, "/"), hc: hc,
		long:   &http.Client{Transport: hc.Transport, CheckRedirect: connector.SameOriginRedirects},
		secret: secret, lim: lim, waitMax: waitMax, waits: waits, log: log}
}

// currentKey is the key last read (read now the first time).
func (c *client) currentKey() (string, error) {
	if k := c.key.Load(); k != nil {
		return *k, nil
	}
	return c.reloadKey()
}

func (c *client) reloadKey() (string, error) {
	k, err := c.secret()
	if err != nil {
		return "", fmt.Errorf("chatapi: %w", err)
	}
	c.key.Store(&k)
	return k, nil
}

// call is one request.
type call struct {
	method, path string
	body         any
	stream       bool // a chat: the long client, and an SSE answer for /chat/stream
}

// do makes the call and returns the response of a 2xx answer, its body
// unread; sent says the request was written out (a failure after that
// may have reached the platform). Other answers are a
// *connector.PlatformError; a 401 is tried once more when the key file
// holds a new key.
func (c *client) do(ctx context.Context, cl call) (resp *http.Response, sent bool, err error) {
	var body []byte
	if cl.body != nil {
		if body, err = json.Marshal(cl.body); err != nil {
			return nil, false, fmt.Errorf("encode request: %w", err)
		}
	}
	key, err := c.currentKey()
	if err != nil {
		return nil, false, err
	}
	resp, sent, err = c.once(ctx, cl, body, key)
	var pe *connector.PlatformError
	if errors.As(err, &pe) && pe.Status == http.StatusUnauthorized {
		if k, rerr := c.reloadKey(); rerr == nil && k != key {
			c.log.Info().Str("route", cl.method+" "+routeOf(cl.path)).Msg("api key refused; the key changed since it was read, trying the new one")
			return c.once(ctx, cl, body, k)
		}
	}
	return resp, sent, err
}

func (c *client) once(ctx context.Context, cl call, body []byte, key string) (*http.Response, bool, error) {
	if err := c.lim.wait(ctx, key); err != nil {
		return nil, false, err
	}
	var wrote atomic.Bool
	trace := &httptrace.ClientTrace{WroteRequest: func(i httptrace.WroteRequestInfo) {
		if i.Err == nil {
			wrote.Store(true)
		}
	}}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), cl.method, c.base+cl.path, rd)
	if err != nil {
		return nil, false, fmt.Errorf("%s %s: %w", cl.method, routeOf(cl.path), err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Accept", "application/json")
	if cl.stream && strings.HasSuffix(cl.path, "/stream") {
		req.Header.Set("Accept", "text/event-stream")
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.hc
	if cl.stream {
		hc = c.long
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, wrote.Load(), fmt.Errorf("%s %s: %w", cl.method, routeOf(cl.path), scrubURLError(err))
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, true, nil
	}
	defer resp.Body.Close()
	pe := platformError(resp)
	if pe.RetryAfter > 0 && (pe.Status == http.StatusTooManyRequests || pe.Status == http.StatusServiceUnavailable) {
		c.platformWait(key, pe.Status, cl.method+" "+routeOf(cl.path), pe.RetryAfter)
	}
	return nil, true, pe
}

// platformWait holds the key's calls for a wait the platform asked for
// (capped at retry_after_max), records it for /status and logs it.
func (c *client) platformWait(key string, status int, route string, asked time.Duration) {
	wait, capped := connector.CapWait(asked, c.waitMax)
	now := time.Now()
	c.lim.hold(key, now.Add(wait))
	c.waits.Record(connector.Wait{Since: now, Until: now.Add(wait), Asked: asked, Reason: connector.WaitReason(status, route)})
	if capped {
		c.log.Warn().Int("status", status).Str("route", route).Int64("asked_wait_ms", asked.Milliseconds()).Int64("capped_wait_ms", wait.Milliseconds()).
			Msg("platform asked for a wait longer than retry_after_max; waiting retry_after_max instead")
	} else {
		c.log.Info().Int("status", status).Str("route", route).Int64("wait_ms", wait.Milliseconds()).Msg("platform asked to wait; waiting")
	}
}

// getJSON makes a read and returns its body.
func (c *client) getJSON(ctx context.Context, path string) ([]byte, int, error) {
	return c.readAll(ctx, call{method: http.MethodGet, path: path})
}

// readAll makes the call and reads a 2xx body (at most maxBody).
func (c *client) readAll(ctx context.Context, cl call) ([]byte, int, error) {
	resp, sent, err := c.do(ctx, cl)
	if err != nil {
		var pe *connector.PlatformError
		if errors.As(err, &pe) {
			return nil, pe.Status, err
		}
		return nil, 0, maybeSent(cl, sent, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, resp.StatusCode, maybeSent(cl, true, fmt.Errorf("%s %s: read answer: %w", cl.method, routeOf(cl.path), err))
	}
	if len(b) > maxBody {
		return nil, resp.StatusCode, fmt.Errorf("%s %s: answer larger than %d bytes", cl.method, routeOf(cl.path), maxBody)
	}
	return b, resp.StatusCode, nil
}

// maybeSent marks the failure of a chat call written out as Sent: the
// platform may have taken the turn, and a second one costs credits.
func maybeSent(cl call, sent bool, err error) error {
	if sent && cl.stream {
		return connector.Sent(err)
	}
	return err
}

// platformError reads a FastAPI error: {"detail": "text"} or, for 422,
// {"detail": [{loc, msg, ...}]} (only loc and msg are kept in Message:
// the rest echoes the input).
func platformError(resp *http.Response) *connector.PlatformError {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	pe := &connector.PlatformError{Status: resp.StatusCode, Data: raw,
		RetryAfter: connector.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now()),
		Code:       strings.ReplaceAll(strings.ToLower(http.StatusText(resp.StatusCode)), " ", "_")}
	if pe.Code == "" {
		pe.Code = "platform_error"
	}
	var body struct {
		Detail  json.RawMessage `json:"detail"`
		Message string          `json:"message"`
	}
	if json.Unmarshal(raw, &body) != nil {
		return pe
	}
	var s string
	var list []struct {
		Loc []any  `json:"loc"`
		Msg string `json:"msg"`
	}
	switch {
	case json.Unmarshal(body.Detail, &s) == nil:
		pe.Message = s
	case json.Unmarshal(body.Detail, &list) == nil:
		parts := make([]string, 0, len(list))
		for _, f := range list {
			loc := make([]string, 0, len(f.Loc))
			for _, l := range f.Loc {
				loc = append(loc, fmt.Sprint(l))
			}
			parts = append(parts, strings.Join(loc, ".")+": "+f.Msg)
		}
		pe.Message = strings.Join(parts, "; ")
	default:
		pe.Message = body.Message
	}
	return pe
}

// routeOf is a path without its query, for logs.
func routeOf(path string) string {
	p, _, _ := strings.Cut(path, "?")
	return p
}

// scrubURLError drops the URL from a *url.Error, keeping errors short.
func scrubURLError(err error) error {
	type unwrapper interface{ Unwrap() error }
	if u, ok := err.(unwrapper); ok && strings.Contains(err.Error(), "://") {
		if inner := u.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}
