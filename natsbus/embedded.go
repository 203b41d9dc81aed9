package natsbus

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"
)

// EmbeddedOptions configure the in-process nats-server.
type EmbeddedOptions struct {
	// Listen is the client listener, "host:port"; "none" or "" listens on
	// nothing (in-process clients only). Port 0 or -1 picks a free port.
	Listen string
	// StoreDir is the JetStream file store directory (required).
	StoreDir string
	// ReadyTimeout bounds the wait for the server to accept clients, default 10s.
	ReadyTimeout time.Duration
	// ServerName names the server, default "bridge-embedded".
	ServerName string
	// MaxPayload is the largest message a client may publish, in bytes;
	// default nats-server's 1 MiB. Tests set a small one to reach the limit
	// cheaply.
	MaxPayload int32
}

// StartEmbedded starts a nats-server with JetStream on, and waits until it
// accepts clients. Call Shutdown and WaitForShutdown on the result to stop it.
func StartEmbedded(o EmbeddedOptions, log zerolog.Logger) (*server.Server, error) {
	if o.StoreDir == "" {
		return nil, fmt.Errorf("embedded nats: store dir is empty")
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 10 * time.Second
	}
	if o.ServerName == "" {
		o.ServerName = "bridge-embedded"
	}
	opts := &server.Options{
		ServerName: o.ServerName,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		NoSigs:     true,
		MaxPayload: o.MaxPayload,
	}
	if o.Listen == "" || o.Listen == "none" {
		opts.DontListen = true
	} else {
		host, port, err := net.SplitHostPort(o.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded nats: listen %q: %w", o.Listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("embedded nats: listen %q: port is not a number", o.Listen)
		}
		if p == 0 {
			p = -1 // nats-server's "random port"
		}
		opts.Host, opts.Port = host, p
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	srv.SetLoggerV2(serverLogger{log.With().Str("component", "nats-server").Logger()}, false, false, false)
	go srv.Start() // owned by srv: Shutdown stops it
	if !srv.ReadyForConnections(o.ReadyTimeout) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready within %s (is %s in use?)", o.ReadyTimeout, o.Listen)
	}
	return srv, nil
}

// ClientURL returns the URL local workers use to reach the embedded server,
// or "" when it listens on nothing.
func ClientURL(srv *server.Server) string {
	if srv.Addr() == nil {
		return ""
	}
	return srv.ClientURL()
}

// serverLogger adapts zerolog to nats-server's logger.
type serverLogger struct{ log zerolog.Logger }

func (l serverLogger) Noticef(format string, v ...any) { l.log.Debug().Msgf(format, v...) }
func (l serverLogger) Warnf(format string, v ...any)   { l.log.Warn().Msgf(format, v...) }
func (l serverLogger) Fatalf(format string, v ...any)  { l.log.Error().Msgf(format, v...) }
func (l serverLogger) Errorf(format string, v ...any)  { l.log.Error().Msgf(format, v...) }
func (l serverLogger) Debugf(format string, v ...any)  { l.log.Trace().Msgf(format, v...) }
func (l serverLogger) Tracef(format string, v ...any)  { l.log.Trace().Msgf(format, v...) }
