// Package redact makes URLs that may carry credentials safe to log. Start
// with [URL]; [URLs] takes a comma-separated list (NATS server URLs).
package redact

import (
	"net/url"
	"strings"
)

// URL hides what a URL may carry of secrets: all user info (a NATS token
// travels as the user name), every query value (Band's api_key), and the
// fragment. A string that does not parse is hidden whole.
func URL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" && (strings.Contains(raw, "@") || strings.Contains(raw, "?")) {
		return "<redacted url>"
	}
	if u.User != nil {
		u.User = url.User("REDACTED")
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			q[k] = []string{"REDACTED"}
		}
		u.RawQuery = q.Encode()
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}

// URLs applies [URL] to each element of a comma-separated list.
func URLs(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		parts[i] = URL(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
}
