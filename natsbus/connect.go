package natsbus

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/internal/redact"
	"github.com/bridgeworks/bridge/retry"
	"github.com/bridgeworks/bridge/subjects"
)

// Options say how to reach NATS. Secrets arrive resolved; they are never logged.
type Options struct {
	URL      string         // comma-separated URLs; ignored when Embedded is set
	Embedded *server.Server // connect in-process to this server
	Name     string         // connection name, default "bridge"
	// InboxPrefix names the connection's inboxes (PubAcks, KV answers,
	// managed-dispatch replies), default subjects.BridgeInboxPrefix
	// ("_BRIDGE_INBOX"): never "_INBOX." or a worker's "_INBOX_<conn>.", so
	// a worker can neither read the bridge's inboxes nor have a result sent
	// into them.
	InboxPrefix string

	User, Password string
	Token          string
	NKeySeedFile   string
	CredsFile      string
	TLSCAFile      string
	TLSCertFile    string
	TLSKeyFile     string

	// ReconnectWait is the base wait between reconnect attempts, default 2s,
	// with up to 1s of jitter (2s on TLS). Reconnects never give up.
	ReconnectWait time.Duration
	// ConnectTimeout bounds the first connect, default 10s; ctx may end it sooner.
	ConnectTimeout time.Duration
	// Reconnected, when set, is called after each reconnect, on nats.go's
	// callback goroutine (for example a [Mux]'s Reconnected).
	Reconnected func()
}

// Connect dials NATS with endless reconnects and connection events logged.
// The first connect is retried until ctx ends, so the bridge can start before
// its NATS server does.
func Connect(ctx context.Context, o Options, log zerolog.Logger) (*nats.Conn, error) {
	if o.Name == "" {
		o.Name = "bridge"
	}
	if o.InboxPrefix == "" {
		o.InboxPrefix = subjects.BridgeInboxPrefix
	}
	if o.ReconnectWait == 0 {
		o.ReconnectWait = 2 * time.Second
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	log = log.With().Str("component", "nats").Logger()
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.CustomInboxPrefix(o.InboxPrefix),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(o.ReconnectWait),
		nats.ReconnectJitter(time.Second, 2*time.Second),
		nats.Timeout(o.ConnectTimeout),
		nats.ReconnectBufSize(64 << 20),
		nats.ConnectHandler(func(nc *nats.Conn) {
			log.Info().Str("server", RedactURL(nc.ConnectedUrl())).Msg("nats connected")
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Warn().Str("server", RedactURL(nc.ConnectedUrl())).Uint64("reconnects", nc.Reconnects).Msg("nats reconnected")
			if o.Reconnected != nil {
				o.Reconnected()
			}
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err == nil {
				log.Debug().Msg("nats disconnected")
				return
			}
			log.Warn().Err(err).Msg("nats disconnected")
		}),
		nats.ClosedHandler(func(*nats.Conn) { log.Info().Msg("nats connection closed") }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			ev := log.Error().Err(err)
			if sub != nil {
				ev = ev.Str("subject", sub.Subject)
			}
			ev.Msg("nats async error")
		}),
	}
	if o.Embedded != nil {
		opts = append(opts, nats.InProcessServer(o.Embedded))
	}
	if o.User != "" {
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	}
	if o.Token != "" {
		opts = append(opts, nats.Token(o.Token))
	}
	if o.NKeySeedFile != "" {
		nk, err := nats.NkeyOptionFromSeed(o.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("nats: nkey seed file: %w", err)
		}
		opts = append(opts, nk)
	}
	if o.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	}
	if o.TLSCAFile != "" {
		opts = append(opts, nats.RootCAs(o.TLSCAFile))
	}
	if o.TLSCertFile != "" {
		opts = append(opts, nats.ClientCert(o.TLSCertFile, o.TLSKeyFile))
	}
	urls := o.URL
	if o.Embedded != nil || urls == "" {
		urls = nats.DefaultURL // ignored with InProcessServer
	}
	bo := retry.Policy{Initial: o.ReconnectWait, Max: 30 * time.Second}.Start()
	for {
		nc, err := nats.Connect(urls, opts...)
		if err == nil {
			return nc, nil
		}
		if permanentConnectError(err) {
			return nil, fmt.Errorf("nats: connect to %s: %w", RedactURL(urls), err)
		}
		wait := bo.Next()
		log.Warn().Err(err).Str("server", RedactURL(urls)).Int64("retry_in_ms", wait.Milliseconds()).Msg("nats connect failed; retrying")
		if !retry.Sleep(ctx, wait) {
			return nil, fmt.Errorf("nats: connect to %s: %w (last error: %v)", RedactURL(urls), ctx.Err(), err)
		}
	}
}

// permanentConnectError reports a first-connect failure that retrying cannot
// fix: refused credentials, a failed TLS verification, TLS wanted by one side
// only, or a missing or unreadable CA, certificate, seed or creds file.
func permanentConnectError(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) ||
		errors.Is(err, nats.ErrSecureConnWanted) || errors.Is(err, nats.ErrSecureConnRequired) ||
		errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) ||
		strings.Contains(err.Error(), "Authorization Violation") ||
		strings.Contains(err.Error(), "certificate") || strings.Contains(err.Error(), "tls:")
}

// RedactURL hides user info and query values in a comma-separated URL list,
// so a URL that carries a credential can be logged.
func RedactURL(raw string) string { return redact.URLs(raw) }
