package connector

import (
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"
)

func TestSameOriginRedirects(t *testing.T) {
	t.Parallel()
	req := func(raw string) *http.Request {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		return &http.Request{URL: u}
	}
	first := []*http.Request{req("https://app.band.ai/api/v1/agent/me")}
	for _, c := range []struct {
		to     string
		target string // "" when followed
	}{
		{"https://app.band.ai/api/v2/agent/me", ""},
		{"https://APP.band.ai:443/x", ""},
		{"https://evil.example/api/v1/agent/me?api_key=k", "https://evil.example:443"},
		{"http://app.band.ai/api/v1/agent/me", "http://app.band.ai:80"}, // a downgrade
		{"https://app.band.ai:8443/x", "https://app.band.ai:8443"},
		{"https://cdn.app.band.ai/x", "https://cdn.app.band.ai:443"},
	} {
		err := SameOriginRedirects(req(c.to), first)
		var re *RedirectError
		switch {
		case c.target == "" && err != nil:
			t.Errorf("%s: refused: %v", c.to, err)
		case c.target != "" && (!errors.As(err, &re) || re.Target != c.target):
			t.Errorf("%s: got %v, want a refusal naming %s", c.to, err, c.target)
		}
	}
	// A WebSocket dial's first request is ws(s)://; its redirects arrive as http(s).
	if err := SameOriginRedirects(req("https://app.band.ai/socket"), []*http.Request{req("wss://app.band.ai/socket")}); err != nil {
		t.Errorf("wss to https on the same host refused: %v", err)
	}
}

func TestCapWaitAndSeconds(t *testing.T) {
	t.Parallel()
	if d, capped := CapWait(Seconds(1e9), time.Minute); d != time.Minute || !capped {
		t.Errorf("CapWait(1e9 s, 1m) = %s, %v", d, capped)
	}
	if d, capped := CapWait(0, 0); d != 0 || capped {
		t.Errorf("CapWait(0, 0) = %s, %v", d, capped)
	}
	if d, _ := CapWait(time.Hour, 0); d != DefaultRetryAfterMax {
		t.Errorf("CapWait(1h, default) = %s", d)
	}
	if d := Seconds(1e300); d <= 0 {
		t.Errorf("Seconds(1e300) = %s, want saturated", d)
	}
	if d := ParseRetryAfter("100000000000000", time.Now()); d <= 0 {
		t.Errorf("a Retry-After past int64 nanoseconds parsed as %s (overflow)", d)
	}
}
