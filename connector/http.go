package connector

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// NewHTTPClient returns an HTTP client for platform REST calls, meant to be
// shared by every connection of a bridge. Its pool is sized for parallel
// command execution: net/http's default keeps two idle connections per host
// and opens a new one per request under load. It follows redirects only
// within the origin of the request ([SameOriginRedirects]), and sends the
// W3C trace context of the request's context (traceparent) when there is
// one, so a platform that traces sees the bridge's trace.
func NewHTTPClient() *http.Client {
	return &http.Client{
		Timeout:       30 * time.Second,
		CheckRedirect: SameOriginRedirects,
		Transport: traceContextTransport{base: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          512,
			MaxIdleConnsPerHost:   128,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
		}},
	}
}

// traceContextTransport adds the request context's span context as
// traceparent/tracestate headers; a request without one goes out as is.
type traceContextTransport struct{ base http.RoundTripper }

func (t traceContextTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if trace.SpanContextFromContext(req.Context()).IsValid() {
		req = req.Clone(req.Context()) // a RoundTripper must not change the caller's request
		propagation.TraceContext{}.Inject(req.Context(), propagation.HeaderCarrier(req.Header))
	}
	return t.base.RoundTrip(req)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the pool.
func (t traceContextTransport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// RedirectError is a redirect refused by [SameOriginRedirects]. Target is
// the origin (scheme://host[:port]) it pointed to: never a path or query,
// which may carry credentials.
type RedirectError struct {
	Target string
}

func (e *RedirectError) Error() string {
	return fmt.Sprintf("redirect to another origin (%s) refused: credentials are only sent to the configured host", e.Target)
}

// SameOriginRedirects is an http.Client CheckRedirect policy for requests
// that carry credentials. net/http drops Authorization and cookies on a
// redirect to another domain but copies every other header, such as
// X-API-Key, and keeps a query string the server wrote into Location. So a
// redirect is followed only when it stays on the first request's origin
// (scheme, host and port), which also rules out a downgrade from https to
// http; any other is refused with a [RedirectError]. At most 10 redirects
// are followed.
func SameOriginRedirects(req *http.Request, via []*http.Request) error {
	if len(via) == 0 {
		return nil
	}
	if len(via) >= 10 {
		return fmt.Errorf("stopped after %d redirects", len(via))
	}
	if o := origin(req.URL.Scheme, req.URL.Host); o != origin(via[0].URL.Scheme, via[0].URL.Host) {
		return &RedirectError{Target: o}
	}
	return nil
}

// origin is scheme://host:port with the default port made explicit and
// WebSocket schemes folded onto HTTP's.
func origin(scheme, host string) string {
	scheme = strings.ToLower(scheme)
	switch scheme {
	case "ws":
		scheme = "http"
	case "wss":
		scheme = "https"
	}
	host = strings.ToLower(host)
	if _, _, err := net.SplitHostPort(host); err != nil {
		port := "80"
		if scheme == "https" {
			port = "443"
		}
		host = net.JoinHostPort(strings.Trim(host, "[]"), port)
	}
	return scheme + "://" + host
}
