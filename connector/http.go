package connector

import (
	"net"
	"net/http"
	"time"
)

// NewHTTPClient returns an HTTP client for platform REST calls, meant to be
// shared by every connection of a bridge. Its pool is sized for parallel
// command execution: net/http's default keeps two idle connections per host
// and opens a new one per request under load.
func NewHTTPClient() *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          512,
			MaxIdleConnsPerHost:   128,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
		},
	}
}
