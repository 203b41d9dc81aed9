package polyai

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/bridgeworks/bridge/connector"
)

// The REST endpoints (under the base URL).
const (
	accessTokenPath = "/api/v1/access-token"
	sessionsPath    = "/api/v1/sessions"
)

// maxRESTAnswer bounds a REST answer read.
const maxRESTAnswer = 1 << 20

// post sends one JSON POST and decodes a 2xx answer into out; anything
// else is a *connector.PlatformError (with the Retry-After of a 429 or
// 503, recorded on the wait board).
func (c *Connector) post(ctx context.Context, path string, header http.Header, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("polyai: encode %s: %w", path, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.st.BaseURL+path, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("polyai: %s: %w", path, err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("polyai: POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxRESTAnswer))
	if err != nil {
		return fmt.Errorf("polyai: POST %s: read answer: %w", path, err)
	}
	if resp.StatusCode/100 != 2 {
		now := time.Now()
		pe := &connector.PlatformError{Status: resp.StatusCode, Data: raw,
			RetryAfter: connector.ParseRetryAfter(resp.Header.Get("Retry-After"), now)}
		var m struct {
			Message string `json:"message"`
			Error   string `json:"error"`
		}
		if json.Unmarshal(raw, &m) == nil {
			pe.Message = m.Message
			if pe.Message == "" {
				pe.Message = m.Error
			}
		}
		if pe.RetryAfter > 0 {
			wait, _ := connector.CapWait(pe.RetryAfter, c.cfg.RetryAfterMax)
			c.waits.Record(connector.Wait{Since: now, Until: now.Add(wait), Asked: pe.RetryAfter,
				Reason: connector.WaitReason(resp.StatusCode, "POST "+path)})
		}
		return fmt.Errorf("polyai: POST %s: %w", path, pe)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("polyai: POST %s: answer is not JSON: %w", path, err)
	}
	return nil
}

// newSession mints an access token (a new end-user identity) and creates
// a session bound to it.
func (c *Connector) newSession(ctx context.Context, streaming bool) (record, error) {
	key, err := c.cfg.Secrets.Get(secretConnectorToken) // read at every use: a rotated file heals
	if err != nil {
		return record{}, connector.Permanent(fmt.Errorf("polyai: %w", err))
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	hdr := http.Header{"X-Token": {key}, "X-Host": {c.st.Host}}
	if err := c.post(ctx, accessTokenPath, hdr, struct{}{}, &tok); err != nil {
		return record{}, err
	}
	if tok.AccessToken == "" {
		return record{}, fmt.Errorf("polyai: POST %s: no access_token in the answer", accessTokenPath)
	}
	body := map[string]any{"streaming_enabled": streaming}
	if c.st.Platform != "" {
		body["platform"] = c.st.Platform
	}
	var sess struct {
		SessionID string `json:"session_id"`
	}
	if err := c.post(ctx, sessionsPath, http.Header{"Authorization": {"Bearer " + tok.AccessToken}}, body, &sess); err != nil {
		return record{}, err
	}
	if sess.SessionID == "" {
		return record{}, fmt.Errorf("polyai: POST %s: no session_id in the answer", sessionsPath)
	}
	return record{ID: sess.SessionID, Token: tok.AccessToken, Streaming: streaming,
		AutoJoin: !c.st.ManualJoin, Created: time.Now().UTC()}, nil
}
