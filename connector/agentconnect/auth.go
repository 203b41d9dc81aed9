package agentconnect

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/bridgeworks/bridge/connector"
)

// auth keeps the account's JWT. The platform has no refresh route, so the
// connector logs in again (form login, the secrets read again) once the
// token is within renewBefore of its exp, or at once after the platform
// refused it. Logins are serialised: many sessions refused at once cause
// one login, not one each (the route allows 10 a minute).
type auth struct {
	c *Connector

	mu     sync.Mutex // held across a login
	token  string
	exp    time.Time // the token's exp claim
	issued time.Time // when the token was obtained
	logins int       // logins so far (for tests and logs)
}

// get returns a token that stays valid for a while, logging in when
// there is none or the current one is about to expire.
func (a *auth) get(ctx context.Context) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.token != "" && time.Now().Before(a.exp.Add(-a.ahead())) {
		return a.token, nil
	}
	return a.loginLocked(ctx)
}

// ahead is how long before exp the token is renewed: RenewBefore, at
// most half the token's lifetime.
func (a *auth) ahead() time.Duration {
	return min(a.c.st.RenewBefore, a.exp.Sub(a.issued)/2)
}

// invalidate forgets tok after the platform refused it, unless a newer
// token replaced it meanwhile.
func (a *auth) invalidate(tok string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.token == tok {
		a.token = ""
	}
}

// loginLocked posts the login form. Every failure is retryable: a wrong
// password may be fixed in its file without a restart.
func (a *auth) loginLocked(ctx context.Context) (tok string, err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("agentconnect: login: %w", err)
		}
	}()
	user, err := a.c.cfg.Secrets.Get(secretUsername)
	if err != nil {
		return "", err
	}
	pass, err := a.c.cfg.Secrets.Get(secretPassword)
	if err != nil {
		return "", err
	}
	form := url.Values{"username": {user}, "password": {pass}, "grant_type": {"password"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.c.st.BaseURL+"/api/auth/login", strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	now := time.Now()
	resp, err := a.c.http.Do(req)
	if err != nil {
		return "", transportError(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return "", fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		pe := platformError(resp, body, "POST /api/auth/login")
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusUnprocessableEntity {
			// Not a PlatformError: that would make the refusal permanent,
			// while a fixed password file heals it.
			return "", fmt.Errorf("refused (%d %s): check the username and password secrets", pe.Status, pe.Message)
		}
		return "", connector.BackOff(fmt.Errorf("%s", pe.Error()), pe.RetryAfter)
	}
	var out struct {
		AccessToken string  `json:"access_token"`
		ExpiresIn   float64 `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.AccessToken == "" {
		return "", errors.New("the answer carries no access_token")
	}
	exp, ok := jwtExp(out.AccessToken)
	if !ok {
		exp = now.Add(connector.Seconds(out.ExpiresIn))
	}
	if !exp.After(now) {
		return "", fmt.Errorf("the new token expires at once (exp %s)", exp.UTC().Format(time.RFC3339))
	}
	a.token, a.exp, a.issued = out.AccessToken, exp, now
	a.logins++
	a.c.log.Debug().Time("exp", exp).Int("logins", a.logins).Msg("logged in")
	return a.token, nil
}

// jwtExp reads a JWT's exp claim without checking its signature (the
// server does; the client only needs to know when to renew).
func jwtExp(tok string) (time.Time, bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, false
	}
	var c struct {
		Exp float64 `json:"exp"`
	}
	if json.Unmarshal(raw, &c) != nil || c.Exp <= 0 {
		return time.Time{}, false
	}
	return time.Unix(int64(c.Exp), 0), true
}
