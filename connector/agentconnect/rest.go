package agentconnect

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/bridgeworks/bridge/connector"
)

// maxBody bounds a REST answer read.
const maxBody = 8 << 20

// call makes one authenticated REST call and returns the status and body
// of a 2xx answer. A 401 means the token was refused (expired early, or
// the server restarted with a new key): the connector logs in again and
// repeats the call once, which is safe because a refused call did nothing.
// route names the call in errors ("GET /api/chat/providers"). A
// transport failure of a call that changes something (sent true) is
// marked [connector.Sent]: it may have been executed.
func (c *Connector) call(ctx context.Context, method, path string, body any, route string) (int, []byte, error) {
	var payload []byte
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, fmt.Errorf("agentconnect: encode %s: %w", route, err)
		}
		payload = b
	}
	for attempt := 1; ; attempt++ {
		tok, err := c.auth.get(ctx)
		if err != nil {
			return 0, nil, err
		}
		var rd io.Reader
		if payload != nil {
			rd = bytes.NewReader(payload)
		}
		req, err := http.NewRequestWithContext(ctx, method, c.st.BaseURL+path, rd)
		if err != nil {
			return 0, nil, fmt.Errorf("agentconnect: %s: %w", route, err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Accept", "application/json")
		if payload != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := c.http.Do(req)
		if err != nil {
			err = fmt.Errorf("agentconnect: %s: %w", route, transportError(err))
			if method != http.MethodGet {
				err = connector.Sent(err)
			}
			return 0, nil, err
		}
		data, rerr := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized && attempt == 1 {
			c.auth.invalidate(tok)
			continue
		}
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			pe := platformError(resp, data, route)
			if pe.RetryAfter > 0 {
				now := time.Now()
				wait, _ := connector.CapWait(pe.RetryAfter, c.cfg.RetryAfterMax)
				c.waits.Record(connector.Wait{Since: now, Until: now.Add(wait), Asked: pe.RetryAfter,
					Reason: connector.WaitReason(pe.Status, route)})
			}
			return resp.StatusCode, nil, fmt.Errorf("agentconnect: %s: %w", route, pe)
		}
		if rerr != nil {
			return resp.StatusCode, nil, fmt.Errorf("agentconnect: %s: read answer: %w", route, rerr)
		}
		return resp.StatusCode, data, nil
	}
}

// platformError reads FastAPI's {"detail": ...} answer. A 404 whose
// detail is FastAPI's own "Not Found" is a route the server does not
// have (the agents routes are missing from some deployments, and from
// the emulator): its code is not_served, so a worker can tell it from
// an unknown session or agent.
func platformError(resp *http.Response, body []byte, route string) *connector.PlatformError {
	pe := &connector.PlatformError{Status: resp.StatusCode, Data: body,
		RetryAfter: connector.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	var d struct {
		Detail json.RawMessage `json:"detail"`
	}
	if json.Unmarshal(body, &d) == nil && len(d.Detail) > 0 {
		var s string
		if json.Unmarshal(d.Detail, &s) == nil {
			pe.Message = s
		} else {
			pe.Message = "invalid request: " + clip(string(d.Detail), 300) // 422's list names the fields
		}
	}
	switch {
	case resp.StatusCode == http.StatusNotFound && pe.Message == "Not Found":
		pe.Code = "not_served"
		pe.Message = fmt.Sprintf("this AgentConnect server does not serve %s (404 Not Found)", route)
	case resp.StatusCode == http.StatusTooManyRequests:
		pe.Code = "rate_limited"
	}
	return pe
}

// transportError drops the URL net/http puts in its errors.
func transportError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
