package phoenix

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

func TestBackoffSchedule(t *testing.T) {
	t.Parallel()
	type step struct {
		advance   time.Duration // clock moves before the call
		connected bool
		lived     time.Duration
		want      time.Duration
	}
	const s, ms = time.Second, time.Millisecond
	rapid := func(want time.Duration) step { return step{advance: s, connected: true, lived: s, want: want} }
	tests := []struct {
		name  string
		rand  float64
		steps []step
	}{
		{"dial failures grow 0.5s×2ⁿ with equal jitter, capped at 30s", 0.5, []step{
			{want: 375 * ms}, {want: 750 * ms}, {want: 1500 * ms}, {want: 3 * s},
			{want: 6 * s}, {want: 12 * s}, {want: 22500 * ms}, {want: 22500 * ms},
		}},
		{"jitter low end is half", 0, []step{{want: 250 * ms}, {want: 500 * ms}}},
		{"rapid disconnects: 2s, 10s, then 60s+30s each with 25-100% jitter", 0.5, []step{
			rapid(2 * s), rapid(10 * s),
			rapid(37500 * ms), // 60s × (0.25 + 0.5×0.75)
			rapid(56250 * ms), // 90s
			rapid(75 * s),     // 120s
		}},
		{"hold-down low end is 25%", 0, []step{rapid(2 * s), rapid(10 * s), rapid(15 * s), rapid(22500 * ms)}},
		{"hold-down caps at 300s", 0.999999, append(
			[]step{rapid(2 * s), rapid(10 * s)},
			rapid(60*s), rapid(90*s), rapid(120*s), rapid(150*s), rapid(180*s),
			rapid(210*s), rapid(240*s), rapid(270*s), rapid(300*s), rapid(300*s), rapid(300*s),
		)},
		{"rapid disconnects outside the 60s window are forgotten", 0.5, []step{
			rapid(2 * s), rapid(10 * s),
			{advance: 61 * s, connected: true, lived: s, want: 2 * s}, // the two old ones expired
		}},
		{"a connection that lived 60s resets attempt and rapid counters", 0.5, []step{
			{want: 375 * ms}, {want: 750 * ms}, rapid(2 * s), rapid(10 * s),
			{advance: s, connected: true, lived: 60 * s, want: 375 * ms},
			{want: 750 * ms},
		}},
		{"a medium-lived connection is neither rapid nor stable", 0.5, []step{
			{want: 375 * ms}, {connected: true, lived: 10 * s, want: 750 * ms},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			now := time.Unix(1_700_000_000, 0)
			r := newReconnector(Backoff{
				Rand: func() float64 { return tt.rand },
				Now:  func() time.Time { return now },
			})
			for i, st := range tt.steps {
				now = now.Add(st.advance)
				got := r.next(st.connected, st.lived)
				// rand 0.999999 stands for "just below 1": allow 1ms
				if d := got - st.want; d > time.Millisecond || d < -time.Millisecond {
					t.Fatalf("step %d: next = %v, want %v", i, got, st.want)
				}
			}
		})
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	b := DefaultBackoff()
	b.Rand = func() float64 { return 0 }
	tests := []struct {
		err      error
		terminal bool
		lo, hi   time.Duration
	}{
		{nil, false, 0, 0},
		{&CloseError{Code: 1008}, true, 0, 0},
		{&CloseError{Code: 1012}, false, time.Second, 5 * time.Second},
		{&CloseError{Code: 1013}, false, 30 * time.Second, 60 * time.Second},
		{&CloseError{Code: 1000}, false, 0, 0},
		{&CloseError{Code: 1001}, false, 0, 0},
		{&CloseError{Code: 1011}, false, 0, 0},
		{fmt.Errorf("wrapped: %w", &CloseError{Code: 1008}), true, 0, 0},
		{&UpgradeError{Status: 429, RetryAfter: 12 * time.Second}, false, 12 * time.Second, 12 * time.Second},
		{&UpgradeError{Status: 503}, false, 0, 0},
		{&UpgradeError{Status: 503, RetryAfter: 1_000_000_000 * time.Second}, false, 5 * time.Minute, 5 * time.Minute}, // RetryAfterMax
		{&UpgradeError{Status: 403, RetryAfter: 48 * time.Hour}, false, 5 * time.Minute, 5 * time.Minute},
		{&UpgradeError{Status: 403}, false, 30 * time.Second, 30 * time.Second},
		{&UpgradeError{Status: 409, RetryAfter: time.Minute}, false, time.Minute, time.Minute},
		{&UpgradeError{Status: 400}, false, 30 * time.Second, 30 * time.Second},
		{&UpgradeError{Status: 401}, false, 30 * time.Second, 30 * time.Second},
		{ErrHeartbeatTimeout, false, 0, 0},
	}
	for _, tt := range tests {
		terminal, lo, hi := b.classify(tt.err)
		if terminal != tt.terminal || lo != tt.lo || hi != tt.hi {
			t.Errorf("classify(%v) = %v, %v, %v; want %v, %v, %v", tt.err, terminal, lo, hi, tt.terminal, tt.lo, tt.hi)
		}
		if term, min := Classify(tt.err); term != tt.terminal || min != tt.lo {
			t.Errorf("Classify(%v) = %v, %v", tt.err, term, min)
		}
	}
}

func TestUpgradeErrorParsing(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 8, 20, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		status int
		header http.Header
		body   string
		want   UpgradeError
	}{
		{"nested body", 429, nil,
			`{"error":{"code":"too_many_requests","message":"slow down","request_id":"r","retry_after":12}}`,
			UpgradeError{Status: 429, Code: "too_many_requests", Message: "slow down", RetryAfter: 12 * time.Second}},
		{"flat body, fractional string retry_after", 503, nil,
			`{"code":"tracking_failed","message":"down","retry_after":"1.5"}`,
			UpgradeError{Status: 503, Code: "tracking_failed", Message: "down", RetryAfter: 1500 * time.Millisecond}},
		{"empty body, Retry-After seconds", 429, http.Header{"Retry-After": {"7"}}, ``,
			UpgradeError{Status: 429, RetryAfter: 7 * time.Second}},
		{"Retry-After date", 503, http.Header{"Retry-After": {now.Add(90 * time.Second).Format(http.TimeFormat)}}, ``,
			UpgradeError{Status: 503, RetryAfter: 90 * time.Second}},
		{"larger of header and body wins", 429, http.Header{"Retry-After": {"30"}}, `{"error":{"retry_after":5}}`,
			UpgradeError{Status: 429, RetryAfter: 30 * time.Second}},
		{"string error, plain text and junk", 403, http.Header{"Retry-After": {"soon"}}, `{"error":"forbidden"}`,
			UpgradeError{Status: 403, Message: "forbidden"}},
		{"text body", 502, nil, "Bad Gateway\n", UpgradeError{Status: 502, Message: "Bad Gateway"}},
		{"negative retry_after ignored", 429, nil, `{"error":{"retry_after":-3}}`, UpgradeError{Status: 429}},
	}
	for _, tt := range tests {
		got := newUpgradeError(tt.status, tt.header, []byte(tt.body), now)
		if *got != tt.want {
			t.Errorf("%s: got %+v, want %+v", tt.name, *got, tt.want)
		}
	}
	e := &UpgradeError{Status: 429, Code: "too_many_requests", Message: "m", RetryAfter: time.Second}
	if got := e.Error(); got != "phoenix: upgrade refused: HTTP 429 too_many_requests: m (retry after 1s)" {
		t.Errorf("Error() = %q", got)
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"wss://app.band.ai/api/v1/socket/websocket?api_key=K&agent_id=A&vsn=2.0.0": "wss://app.band.ai/api/v1/socket/websocket?agent_id=REDACTED&api_key=REDACTED&vsn=REDACTED",
		"ws://user:pw@host/socket#frag":                                            "ws://REDACTED@host/socket",
		"ws://host/socket":                                                         "ws://host/socket",
		"::not a url":                                                              "<redacted url>",
	}
	for in, want := range tests {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// newReconnector is a run's backoff state over its own copy of b, with
// the defaults applied (a run reads its socket's policy instead).
func newReconnector(b Backoff) *reconnector {
	b = b.withDefaults()
	return &reconnector{b: &b}
}
