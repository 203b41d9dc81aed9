package config

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
)

// natsSchemes are the URL schemes nats.go dials.
var natsSchemes = map[string]bool{"nats": true, "tls": true, "ws": true, "wss": true}

// checkNATSURLs checks each comma-separated entry of nats.url the way the
// client will read it: a scheme of nats, tls, ws or wss (nats:// when
// none is written), a host name or IP address, and a port from 1 to 65535
// when one is given. An entry that carries credentials is named by its
// position, never shown.
func checkNATSURLs(list string) error {
	if strings.TrimSpace(list) == "" {
		return nil
	}
	var errs []error
	for i, raw := range strings.Split(list, ",") {
		raw = strings.TrimSpace(raw)
		shown := fmt.Sprintf("%q", raw)
		if strings.Contains(raw, "@") {
			shown = fmt.Sprintf("entry %d (it carries credentials, not shown)", i+1)
		}
		if why := natsURLProblem(raw); why != "" {
			errs = append(errs, fmt.Errorf("nats.url: %s is not a NATS server URL like nats://host:4222: %s", shown, why))
		}
	}
	return errors.Join(errs...)
}

func natsURLProblem(raw string) string {
	if raw == "" {
		return "empty entry in the comma-separated list"
	}
	s := raw
	if !strings.Contains(s, "://") {
		s = "nats://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the url.Error repeats the URL, which may carry a secret
		}
		return err.Error()
	}
	if !natsSchemes[u.Scheme] {
		return fmt.Sprintf("scheme %q is not nats, tls, ws or wss", u.Scheme)
	}
	host := u.Hostname()
	switch {
	case host == "":
		return "no host"
	case strings.Contains(host, ":") && net.ParseIP(host) == nil:
		return fmt.Sprintf("host %q is neither a name nor an IP address (write IPv6 addresses in brackets: nats://[::1]:4222)", host)
	case strings.ContainsFunc(host, func(r rune) bool { return !(r == '.' || r == '-' || r == '_' || r == ':' || r == '%' || isAlnum(r)) }):
		return fmt.Sprintf("host %q has characters a host name cannot have", host)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Sprintf("port %q is not between 1 and 65535", p)
		}
	}
	if u.Path != "" && u.Path != "/" {
		return fmt.Sprintf("a server URL has no path (%q)", u.Path)
	}
	return ""
}

func isAlnum(r rune) bool {
	return (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
}

// CheckFiles checks that every file the NATS section names (password_file,
// token_file, nkey_seed_file, creds_file and the TLS files) exists, is a
// regular file and can be read, reporting each problem on its own line
// naming the key. It reads at most one byte of each and never shows
// content. The platforms' *_file secrets are checked when the bridge is
// built (bridge.New), which reads them.
func (c *Config) CheckFiles() error {
	var errs []error
	for _, f := range []struct{ key, path string }{
		{"nats.password_file", c.NATS.PasswordFile},
		{"nats.token_file", c.NATS.TokenFile},
		{"nats.nkey_seed_file", c.NATS.NKeySeedFile},
		{"nats.creds_file", c.NATS.CredsFile},
		{"nats.tls_ca_file", c.NATS.TLSCAFile},
		{"nats.tls_cert_file", c.NATS.TLSCertFile},
		{"nats.tls_key_file", c.NATS.TLSKeyFile},
	} {
		if f.path == "" {
			continue
		}
		if err := readable(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.key, err))
		}
	}
	return errors.Join(errs...)
}

// readable opens path and reads one byte: the checks the bridge's later
// read would fail on (missing, a directory, no permission, empty).
func readable(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Read(make([]byte, 1)); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%s is empty", path)
		}
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}

// Lines splits err into its lines as errors, each prefixed with prefix: the
// parts of a joined error (errors.Join) one by one, so a caller can print
// or wrap each mistake on a line of its own.
func Lines(prefix string, err error) error {
	if err == nil {
		return nil
	}
	var parts []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if e != nil {
				parts = append(parts, Lines(prefix, e))
			}
		}
		return errors.Join(parts...)
	}
	return fmt.Errorf("%s%w", prefix, err)
}
