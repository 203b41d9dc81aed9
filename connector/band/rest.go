package band

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/connector"
	"github.com/bridgeworks/bridge/retry"
)

// maxBody bounds how much of a REST response is read.
const maxBody = 8 << 20

// restClient calls Band's agent REST API. Calls made with retry=true (the
// connector's own reads during catch-up) retry transient failures with
// backoff that honours Retry-After up to waitMax; worker commands use
// retry=false and leave retries to the command executor, which keeps
// per-room order.
type restClient struct {
	base string // e.g. https://app.band.ai, no trailing slash
	key  atomic.Pointer[string]
	// refresh reads the key again (a rotated key file); a call refused with
	// 401 is made once more when it returns a different key.
	refresh func() (string, error)
	waitMax time.Duration   // cap of a platform's Retry-After
	log     *zerolog.Logger // the connector's (a copy is 112 bytes)
	waits   *connector.WaitBoard
	hc      *http.Client // the process's pool; each call makes its small retryablehttp.Client (see client)
}

func newRESTClient(base string, hc *http.Client, waitMax time.Duration, log *zerolog.Logger, waits *connector.WaitBoard) *restClient {
	if hc == nil {
		hc = connector.NewHTTPClient()
	}
	return &restClient{base: strings.TrimRight(base, "/"), waitMax: waitMax, log: log, waits: waits, hc: hc}
}

// client is a call's retrying client: made per call, since two kept per
// connector cost an idle connection ~0.25 KiB and a call is rare next to
// that (the HTTP connections are the process's pool's).
func (r *restClient) client(retries int) *retryablehttp.Client {
	return &retryablehttp.Client{
		HTTPClient:   r.hc,
		RetryWaitMin: 200 * time.Millisecond,
		RetryWaitMax: 30 * time.Second,
		RetryMax:     retries,
		CheckRetry:   retryPolicy,
		Backoff:      r.backoff,
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
	}
}

// setKey sets the key the next calls send.
func (r *restClient) setKey(k string) { r.key.Store(&k) }

// currentKey is the key last read; the first call reads it.
func (r *restClient) currentKey() string {
	if k := r.key.Load(); k != nil {
		return *k
	}
	if r.refresh != nil {
		if k, err := r.refresh(); err == nil {
			r.key.CompareAndSwap(nil, &k)
			return *r.key.Load()
		}
	}
	return ""
}

// retryPolicy is retryablehttp's default, except that a refused redirect is
// not retried: it would be refused again.
func retryPolicy(ctx context.Context, resp *http.Response, err error) (bool, error) {
	var re *connector.RedirectError
	if errors.As(err, &re) {
		return false, nil
	}
	return retryablehttp.DefaultRetryPolicy(ctx, resp, err)
}

// backoff honours Retry-After on 429/503 up to waitMax (a longer ask is
// cut, logged and shown on /status), else exponential with jitter.
func (r *restClient) backoff(lo, hi time.Duration, attempt int, resp *http.Response) time.Duration {
	if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		if asked := connector.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); asked > 0 {
			return r.platformWait(resp.StatusCode, route(resp.Request), asked)
		}
	}
	return retry.Policy{Initial: lo, Max: hi}.Delay(attempt + 1)
}

// platformWait caps a wait the platform asked for, records it for /status
// and logs a capped one; route names the call, never its query.
func (r *restClient) platformWait(status int, route string, asked time.Duration) time.Duration {
	wait, capped := connector.CapWait(asked, r.waitMax)
	now := time.Now()
	reason := connector.WaitReason(status, route)
	r.waits.Record(connector.Wait{Since: now, Until: now.Add(wait), Asked: asked, Reason: reason})
	if capped {
		r.log.Warn().Int("status", status).Str("route", route).Int64("asked_wait_ms", asked.Milliseconds()).Int64("capped_wait_ms", wait.Milliseconds()).
			Msg("platform asked for a wait longer than retry_after_max; waiting retry_after_max instead")
	} else {
		r.log.Info().Int("status", status).Str("route", route).Int64("wait_ms", wait.Milliseconds()).Msg("platform asked to wait; waiting")
	}
	return wait
}

// route is "METHOD /path" of a request, without its query.
func route(req *http.Request) string {
	if req == nil || req.URL == nil {
		return "REST"
	}
	return req.Method + " " + req.URL.Path
}

// call makes one REST call. On 2xx it returns the status and the body's
// "data" member (nil for 204); otherwise a *connector.PlatformError, or a
// transport error.
func (r *restClient) call(ctx context.Context, retry bool, method, path string, body any) (int, json.RawMessage, error) {
	status, raw, err := r.do(ctx, retry, method, path, body)
	if err != nil || raw == nil {
		return status, nil, err
	}
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(raw, &env); err != nil || env.Data == nil {
		return status, raw, nil // not wrapped: hand it over as is
	}
	return status, env.Data, nil
}

// list GETs one page of a list endpoint: its items and its metadata.
func (r *restClient) list(ctx context.Context, path string) ([]json.RawMessage, listMeta, error) {
	_, raw, err := r.do(ctx, true, http.MethodGet, path, nil)
	if err != nil {
		return nil, listMeta{}, err
	}
	var page struct {
		Data     []json.RawMessage `json:"data"`
		Metadata listMeta          `json:"metadata"`
	}
	if raw != nil {
		if err := json.Unmarshal(raw, &page); err != nil {
			return nil, listMeta{}, fmt.Errorf("GET %s: decode page: %w", path, err)
		}
	}
	return page.Data, page.Metadata, nil
}

// listMeta is the paging metadata of Band's list endpoints (cursor or page).
type listMeta struct {
	HasMore    bool   `json:"has_more"`
	NextCursor string `json:"next_cursor"`
	Page       int    `json:"page"`
	TotalPages int    `json:"total_pages"`
}

// do makes the call and returns the raw body of a 2xx answer (nil when
// empty). A 401 re-reads the key: when it changed (a rotated key file),
// the call is made once more with the new key.
func (r *restClient) do(ctx context.Context, retry bool, method, path string, body any) (int, []byte, error) {
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return 0, nil, fmt.Errorf("encode request: %w", err)
		}
	}
	key := r.currentKey()
	status, raw, err := r.doKey(ctx, retry, method, path, b, key)
	if status != http.StatusUnauthorized || r.refresh == nil {
		return status, raw, err
	}
	if k, rerr := r.refresh(); rerr == nil && k != key {
		r.setKey(k)
		r.log.Info().Str("route", method+" "+path).Msg("api key refused; the key changed since it was read, trying the new one")
		return r.doKey(ctx, retry, method, path, b, k)
	}
	return status, raw, err
}

func (r *restClient) doKey(ctx context.Context, retry bool, method, path string, body []byte, key string) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, method, r.base+path, rd)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("X-API-Key", key)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	retries := 0
	if retry {
		retries = 6
	}
	resp, err := r.client(retries).Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, scrubURLError(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if resp.StatusCode == http.StatusNoContent || len(bytes.TrimSpace(raw)) == 0 {
			return resp.StatusCode, nil, nil
		}
		return resp.StatusCode, raw, nil
	}
	return resp.StatusCode, nil, platformError(resp, raw)
}

// platformError parses both error shapes Band uses:
// {"error":{"code","message","retry_after"?,"details"?}} and the flat
// {"error":"code","message":"…"}.
func platformError(resp *http.Response, raw []byte) *connector.PlatformError {
	pe := &connector.PlatformError{Status: resp.StatusCode, Data: raw,
		RetryAfter: connector.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	var nested struct {
		Error struct {
			Code       string  `json:"code"`
			Message    string  `json:"message"`
			RetryAfter float64 `json:"retry_after"`
		} `json:"error"`
	}
	if json.Unmarshal(raw, &nested) == nil && nested.Error.Code != "" {
		pe.Code, pe.Message = nested.Error.Code, nested.Error.Message
		if pe.RetryAfter == 0 && nested.Error.RetryAfter > 0 {
			pe.RetryAfter = connector.Seconds(nested.Error.RetryAfter)
		}
		return pe
	}
	var flat struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	if json.Unmarshal(raw, &flat) == nil {
		pe.Code, pe.Message = flat.Error, flat.Message
	}
	if pe.Code == "" {
		pe.Code = strings.ReplaceAll(strings.ToLower(http.StatusText(resp.StatusCode)), " ", "_")
	}
	return pe
}

// scrubURLError drops the URL from a *url.Error: REST URLs carry no key, but
// keeping errors short and free of ids helps logs.
func scrubURLError(err error) error {
	type unwrapper interface{ Unwrap() error }
	if u, ok := err.(unwrapper); ok && strings.Contains(err.Error(), "://") {
		if inner := u.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}

func itoa(n int) string { return strconv.Itoa(n) }
