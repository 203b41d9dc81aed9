package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/bridgeworks/bridge/subjects"
)

// Config is the whole bridge configuration. Field docs state each default.
type Config struct {
	Log        Log          `toml:"log"`
	NATS       NATS         `toml:"nats"`
	HTTP       HTTP         `toml:"http"`
	Lease      Lease        `toml:"lease"`
	Shutdown   Shutdown     `toml:"shutdown"`
	Tracing    Tracing      `toml:"tracing"`
	Dial       Dial         `toml:"dial"`
	CatchUp    CatchUp      `toml:"catchup"`
	Connection []Connection `toml:"connection"`
	Dispatch   []Dispatch   `toml:"dispatch"`
}

// Log configures logging.
type Log struct {
	Level  string `toml:"level"`  // trace, debug, info (default), warn, error
	Format string `toml:"format"` // json (default) or console
}

// NATS configures the NATS connection, or the embedded server when URL is empty.
type NATS struct {
	URL    string `toml:"url"`    // comma-separated server URLs; empty starts the embedded server
	Prefix string `toml:"prefix"` // subject prefix, default "bridge"
	Name   string `toml:"name"`   // client connection name, default "bridge"

	User         string `toml:"user"`
	PasswordEnv  string `toml:"password_env"`
	PasswordFile string `toml:"password_file"`
	TokenEnv     string `toml:"token_env"`
	TokenFile    string `toml:"token_file"`
	NKeySeedFile string `toml:"nkey_seed_file"`
	CredsFile    string `toml:"creds_file"` // JWT user credentials
	TLSCAFile    string `toml:"tls_ca_file"`
	TLSCertFile  string `toml:"tls_cert_file"`
	TLSKeyFile   string `toml:"tls_key_file"`

	Replicas        int      `toml:"replicas"`         // stream replicas, default 1 (use 3 on a cluster)
	DuplicateWindow Duration `toml:"duplicate_window"` // JetStream dedupe window, default 20m, at least 10m
	EventsMaxAge    Duration `toml:"events_max_age"`   // BRIDGE_EVENTS retention, default 168h
	CommandsMaxAge  Duration `toml:"commands_max_age"` // BRIDGE_COMMANDS retention, default 24h
	DLQMaxAge       Duration `toml:"dlq_max_age"`      // BRIDGE_DLQ retention, default 720h

	Embedded Embedded `toml:"embedded"`
}

// Embedded configures the in-process nats-server used when nats.url is empty.
type Embedded struct {
	Listen   string `toml:"listen"`    // client listener, default "127.0.0.1:4222"; "none" for in-process only
	StoreDir string `toml:"store_dir"` // JetStream file store, default "./data/nats"
	// MaxStore caps what JetStream keeps in store_dir ("10GiB"). Default 0:
	// nats-server's own default, 75% of the disk space free when the bridge
	// starts. Set it below the volume's size when anything else writes there.
	MaxStore ByteSize `toml:"max_store"`
}

// HTTP configures the health, status and metrics listener.
type HTTP struct {
	Listen string `toml:"listen"` // default "127.0.0.1:8080"; "none" disables it
	// PProf serves Go's profiler on /debug/pprof/ on the same listener,
	// default false. It shows stacks and memory, never secrets, but costs
	// CPU while a profile runs: keep the listener private when it is on.
	PProf bool `toml:"pprof"`
}

// Lease configures how replicas share connections: each connection runs on
// the one replica holding its lease in a JetStream KV bucket.
type Lease struct {
	TTL   Duration `toml:"ttl"`   // a holder's lease expires this long after its last renewal, default 15s
	Owner string   `toml:"owner"` // this replica's name, default the host name (stable per pod)
}

// Tracing configures OpenTelemetry tracing (OTLP over HTTP); off by default.
type Tracing struct {
	Enabled bool `toml:"enabled"` // default false
	// Endpoint is the OTLP/HTTP collector URL, e.g. "http://otel-collector:4318";
	// empty means the exporter's default (or the OTEL_EXPORTER_OTLP_* variables).
	Endpoint    string  `toml:"endpoint"`
	ServiceName string  `toml:"service_name"` // default "bridge"
	SampleRatio float64 `toml:"sample_ratio"` // share of new traces kept, default 1
}

// Shutdown configures how the bridge stops on SIGTERM or SIGINT.
type Shutdown struct {
	// DrainTimeout bounds how long in-flight work (publishes, commands,
	// dispatch attempts) may take to finish before it is cut short and
	// handed back to JetStream for redelivery, default 15s. Keep the pod's
	// terminationGracePeriodSeconds above it.
	DrainTimeout Duration `toml:"drain_timeout"`
}

// Dial paces the platform sockets every connection of this process opens,
// first dials and redials alike, so a restart with thousands of connections
// does not dial them all in the same second.
type Dial struct {
	// Rate is the number of new sockets per second, default 100. Each dial
	// also waits a random fraction of 1/rate first (jitter), so connections
	// started together do not line up.
	Rate float64 `toml:"rate"`
	// Burst is how many dials may go at once after a quiet spell, default
	// 20. No one-second window sees more than rate + burst dials.
	Burst int `toml:"burst"`
}

// CatchUp bounds the catch-up reads (the platform's lists of unprocessed
// messages and rooms) that run at once across every connection of this
// process.
type CatchUp struct {
	Parallel int `toml:"parallel"` // default 64
}

// Connection is one platform account / agent identity. Keys every
// platform shares live here; the platform's own keys live in its
// [connection.settings] table.
type Connection struct {
	Name     string `toml:"name"`     // [a-z0-9_-]{1,64}, unique
	Platform string `toml:"platform"` // band, thenvoi (alias of band with Thenvoi hosts), …
	Enabled  *bool  `toml:"enabled"`  // default true

	// Settings is the platform's own table, [connection.settings]: decoded
	// and checked by the platform (unknown keys are errors). Every
	// <name>_env / <name>_file key in it is a secret, read from that
	// environment variable or file; secrets are never written in plain.
	// Band: agent_id, base_url, ws_url, heartbeat_interval, api_key_env /
	// api_key_file (see config.example.toml).
	Settings map[string]any `toml:"settings"`

	// ReconnectInitial is the first wait before reconnecting after a lost
	// session or a failed connect, default 500ms; each further failure
	// doubles it (with jitter) up to ReconnectMax.
	ReconnectInitial Duration `toml:"reconnect_initial"`
	// ReconnectMax caps the reconnect wait, default 30s. A platform's own
	// ask (Retry-After) may be longer, up to retry_after_max.
	ReconnectMax Duration `toml:"reconnect_max"`

	// MaxParallelRooms bounds how many rooms' commands run at once, default 16.
	MaxParallelRooms int `toml:"max_parallel_rooms"`
	// CommandMaxAttempts bounds executions of one command on transient errors, default 8.
	CommandMaxAttempts int `toml:"command_max_attempts"`
	// CommandBackoffMax caps the retry delay of one command, default 30s;
	// it also caps a platform's Retry-After between a command's attempts.
	CommandBackoffMax Duration `toml:"command_backoff_max"`
	// RetryAfterMax caps every wait the platform asks for (Retry-After on
	// REST, retry_after on a refused socket upgrade), default 5m, between
	// 1s and 24h. A longer ask is cut to it and logged at warn level.
	RetryAfterMax Duration `toml:"retry_after_max"`
	// SupersedeCooloff is how long the connection waits, plus up to half
	// as long again at random, before it connects again after another
	// session of the same platform identity took over (Band keeps one
	// socket per agent; each new one ends the older), default 5m, between
	// 1s and 24h. Two processes using one identity thus take it from each
	// other at most once per cool-off instead of in a tight loop.
	SupersedeCooloff Duration `toml:"supersede_cooloff"`
	// RefusedRetryMax caps the waits after the platform refused the
	// connection (401/403: a wrong or revoked key) or failed it in a way a
	// quick retry does not cure, default 10m, between reconnect_max and
	// 24h. The waits start at reconnect_max and double (with jitter); a
	// key file is read again at every try, so a rotated key heals.
	RefusedRetryMax Duration `toml:"refused_retry_max"`
}

// IsEnabled reports whether the connection runs.
func (c Connection) IsEnabled() bool { return c.Enabled == nil || *c.Enabled }

// Dispatch is one managed-dispatch rule.
type Dispatch struct {
	Connection         string   `toml:"connection"`             // a connection's name
	Events             []string `toml:"events"`                 // event names, default ["message_created"]
	Timeout            Duration `toml:"timeout"`                // per attempt, restarted by "processing"; default 120s
	MaxAttempts        int      `toml:"max_attempts"`           // default 5
	MaxInFlightPerRoom int      `toml:"max_in_flight_per_room"` // default 1
	BackoffInitial     Duration `toml:"backoff_initial"`        // first retry delay, default 1s
	BackoffMax         Duration `toml:"backoff_max"`            // retry delay cap, default 60s
	// Start is where a new rule starts: "new" (default; the events stored
	// from the bridge's start on), "all" (the whole events stream) or a
	// duration such as "24h" (the events stored that long before). Kept
	// from the rule's first run on; changing it later has no effect.
	Start string `toml:"start"`
}

// Duration is a time.Duration written as a Go duration string ("120s").
type Duration time.Duration

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration like \"30s\" or \"5m\"", string(b))
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Load reads path (TOML), applies environment overrides from env (use
// os.Environ()), fills defaults and validates. A config that decodes but
// is wrong gets every mistake reported, one line each (a joined error; see
// [Lines]), and is returned with the error, so a checker can look further
// (its platforms, its files); never run one.
func Load(path string, env []string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(b, env)
}

// Parse is [Load] on bytes.
func Parse(b []byte, env []string) (*Config, error) {
	var c Config
	if err := movedKeys(b); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	dec := toml.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("config: %s", describeTOMLError(err))
	}
	envErr := ApplyEnv(&c, env)
	c.SetDefaults()
	if err := errors.Join(envErr, c.Validate()); err != nil {
		return &c, Lines("config: ", err)
	}
	return &c, nil
}

// movedToSettings are the platform keys that left [[connection]] for its
// [connection.settings] table.
var movedToSettings = []string{"agent_id", "base_url", "ws_url", "heartbeat_interval", "api_key_env", "api_key_file"}

// movedKeys names a key written where it used to live: one line saying
// where it goes now, instead of "unknown key".
func movedKeys(b []byte) error {
	var loose struct {
		Connection []map[string]any `toml:"connection"`
	}
	if toml.Unmarshal(b, &loose) != nil {
		return nil // the strict decode reports it
	}
	for i, cn := range loose.Connection {
		name, _ := cn["name"].(string)
		who := fmt.Sprintf("connection[%d]", i)
		if name != "" {
			who = fmt.Sprintf("connection %q", name)
		}
		for _, k := range movedToSettings {
			if _, ok := cn[k]; ok {
				return fmt.Errorf("%s: %s moved to [connection.settings] (write it under that table, below this [[connection]])", who, k)
			}
		}
	}
	return nil
}

func describeTOMLError(err error) string {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) && len(strict.Errors) > 0 {
		keys := make([]string, 0, len(strict.Errors))
		for _, e := range strict.Errors {
			keys = append(keys, strings.Join(e.Key(), "."))
		}
		return fmt.Sprintf("unknown key %s", strings.Join(keys, ", "))
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, col := de.Position()
		key := strings.Join(de.Key(), ".")
		if key != "" {
			return fmt.Sprintf("key %s (line %d, column %d): %s", key, row, col, de.Error())
		}
		return fmt.Sprintf("line %d, column %d: %s", row, col, de.Error())
	}
	return err.Error()
}

// SetDefaults fills every unset field with its documented default.
func (c *Config) SetDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	defD := func(d *Duration, v time.Duration) {
		if *d == 0 {
			*d = Duration(v)
		}
	}
	defI := func(i *int, v int) {
		if *i == 0 {
			*i = v
		}
	}
	def(&c.Log.Level, "info")
	def(&c.Log.Format, "json")
	def(&c.NATS.Prefix, subjects.DefaultPrefix)
	def(&c.NATS.Name, "bridge")
	defI(&c.NATS.Replicas, 1)
	defD(&c.NATS.DuplicateWindow, 20*time.Minute)
	defD(&c.NATS.EventsMaxAge, 168*time.Hour)
	defD(&c.NATS.CommandsMaxAge, 24*time.Hour)
	defD(&c.NATS.DLQMaxAge, 720*time.Hour)
	def(&c.NATS.Embedded.Listen, "127.0.0.1:4222")
	def(&c.NATS.Embedded.StoreDir, "./data/nats")
	def(&c.HTTP.Listen, "127.0.0.1:8080")
	defD(&c.Lease.TTL, 15*time.Second)
	defD(&c.Shutdown.DrainTimeout, 15*time.Second)
	def(&c.Tracing.ServiceName, "bridge")
	if c.Tracing.SampleRatio == 0 {
		c.Tracing.SampleRatio = 1
	}
	if c.Dial.Rate == 0 {
		c.Dial.Rate = 100
	}
	defI(&c.Dial.Burst, 20)
	defI(&c.CatchUp.Parallel, 64)
	for i := range c.Connection {
		cn := &c.Connection[i]
		defD(&cn.ReconnectInitial, 500*time.Millisecond)
		defD(&cn.ReconnectMax, 30*time.Second)
		defI(&cn.MaxParallelRooms, 16)
		defI(&cn.CommandMaxAttempts, 8)
		defD(&cn.CommandBackoffMax, 30*time.Second)
		defD(&cn.RetryAfterMax, 5*time.Minute)
		defD(&cn.SupersedeCooloff, 5*time.Minute)
		defD(&cn.RefusedRetryMax, 10*time.Minute)
	}
	for i := range c.Dispatch {
		d := &c.Dispatch[i]
		if len(d.Events) == 0 {
			d.Events = []string{"message_created"}
		}
		defD(&d.Timeout, 120*time.Second)
		defI(&d.MaxAttempts, 5)
		defI(&d.MaxInFlightPerRoom, 1)
		defD(&d.BackoffInitial, time.Second)
		defD(&d.BackoffMax, 60*time.Second)
		if d.Start == "" {
			d.Start = "new"
		}
	}
}

// Validate checks the whole config and reports every mistake it finds, one
// line each naming the key and what is wrong (joined with errors.Join).
// Platforms are checked by the caller, which knows them; files by
// [Config.CheckFiles].
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch c.Log.Level {
	case "trace", "debug", "info", "warn", "error":
	default:
		bad("log.level %q is not one of trace, debug, info, warn, error", c.Log.Level)
	}
	if c.Log.Format != "json" && c.Log.Format != "console" {
		bad("log.format %q is not json or console", c.Log.Format)
	}
	if err := subjects.ValidatePrefix(c.NATS.Prefix); err != nil {
		bad("nats.prefix: %w", err)
	}
	if err := checkNATSURLs(c.NATS.URL); err != nil {
		errs = append(errs, err)
	}
	if c.NATS.Replicas < 1 || c.NATS.Replicas > 5 {
		bad("nats.replicas %d is not between 1 and 5", c.NATS.Replicas)
	}
	if c.NATS.DuplicateWindow.D() < 10*time.Minute {
		bad("nats.duplicate_window %s is shorter than 10m (it must outlast any gap-fill)", c.NATS.DuplicateWindow.D())
	}
	for _, a := range []struct {
		key string
		d   Duration
	}{{"nats.events_max_age", c.NATS.EventsMaxAge}, {"nats.commands_max_age", c.NATS.CommandsMaxAge}, {"nats.dlq_max_age", c.NATS.DLQMaxAge}} {
		if a.d.D() < c.NATS.DuplicateWindow.D() {
			bad("%s %s is shorter than nats.duplicate_window %s", a.key, a.d.D(), c.NATS.DuplicateWindow.D())
		}
	}
	if c.NATS.URL == "" && c.NATS.Embedded.Listen != "none" {
		if _, _, err := net.SplitHostPort(c.NATS.Embedded.Listen); err != nil {
			bad("nats.embedded.listen %q is not host:port or \"none\"", c.NATS.Embedded.Listen)
		}
	}
	if c.NATS.Embedded.MaxStore != 0 && c.NATS.Embedded.MaxStore < 1<<20 {
		bad("nats.embedded.max_store %d bytes is below 1MiB", c.NATS.Embedded.MaxStore)
	}
	if c.NATS.PasswordEnv != "" && c.NATS.PasswordFile != "" {
		bad("nats.password_env and nats.password_file are both set; choose one")
	}
	if c.NATS.TokenEnv != "" && c.NATS.TokenFile != "" {
		bad("nats.token_env and nats.token_file are both set; choose one")
	}
	if (c.NATS.TLSCertFile == "") != (c.NATS.TLSKeyFile == "") {
		bad("nats.tls_cert_file and nats.tls_key_file must be set together")
	}
	if c.HTTP.Listen != "none" {
		if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
			bad("http.listen %q is not host:port or \"none\"", c.HTTP.Listen)
		}
	}
	if c.Lease.TTL.D() < 100*time.Millisecond {
		bad("lease.ttl %s is shorter than 100ms", c.Lease.TTL.D())
	}
	if d := c.Shutdown.DrainTimeout.D(); d < 100*time.Millisecond || d > time.Hour {
		bad("shutdown.drain_timeout %s is not between 100ms and 1h", d)
	}
	if r := c.Tracing.SampleRatio; r <= 0 || r > 1 {
		bad("tracing.sample_ratio %g is not in (0, 1]", r)
	}
	if u := c.Tracing.Endpoint; u != "" && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		bad("tracing.endpoint %q is not an http:// or https:// URL", u)
	}
	if r := c.Dial.Rate; !(r >= 0.1 && r <= 100000) {
		bad("dial.rate %v is not between 0.1 and 100000 (sockets per second)", r)
	}
	if b := c.Dial.Burst; b < 1 || b > 100000 {
		bad("dial.burst %d is not between 1 and 100000", b)
	}
	if p := c.CatchUp.Parallel; p < 1 || p > 10000 {
		bad("catchup.parallel %d is not between 1 and 10000", p)
	}
	names := map[string]bool{}
	for i, cn := range c.Connection {
		key := fmt.Sprintf("connection[%d]", i)
		if !subjects.IsConnName(cn.Name) {
			bad("%s.name %q does not match [a-z0-9_-]{1,64}", key, cn.Name)
		}
		key = fmt.Sprintf("connection %q", cn.Name)
		if names[cn.Name] {
			bad("%s: name is used twice", key)
		}
		names[cn.Name] = true
		if cn.Platform == "" {
			bad("%s: platform is missing", key)
		}
		if ri, rm := cn.ReconnectInitial.D(), cn.ReconnectMax.D(); ri < time.Millisecond || rm > time.Hour || rm < ri {
			bad("%s: reconnect_initial %s and reconnect_max %s must satisfy 1ms <= reconnect_initial <= reconnect_max <= 1h", key, ri, rm)
		}
		if cn.MaxParallelRooms < 1 || cn.CommandMaxAttempts < 1 {
			bad("%s: max_parallel_rooms and command_max_attempts must be at least 1", key)
		}
		if d := cn.RetryAfterMax.D(); d < time.Second || d > 24*time.Hour {
			bad("%s: retry_after_max %s is not between 1s and 24h", key, d)
		}
		if d := cn.SupersedeCooloff.D(); d < time.Second || d > 24*time.Hour {
			bad("%s: supersede_cooloff %s is not between 1s and 24h", key, d)
		}
		if d := cn.RefusedRetryMax.D(); d < cn.ReconnectMax.D() || d > 24*time.Hour {
			bad("%s: refused_retry_max %s is not between reconnect_max %s and 24h", key, d, cn.ReconnectMax.D())
		}
	}
	ruled := map[string]bool{}
	for i, d := range c.Dispatch {
		key := fmt.Sprintf("dispatch[%d]", i)
		if !names[d.Connection] {
			bad("%s.connection %q names no [[connection]]", key, d.Connection)
		}
		if ruled[d.Connection] {
			bad("%s.connection %q already has a dispatch rule; list all its events in one rule", key, d.Connection)
		}
		ruled[d.Connection] = true
		for j, e := range d.Events {
			if e == "" || subjects.EventName(e) != e {
				bad("%s.events[%d] %q is not a lower-case event name", key, j, e)
			}
		}
		if d.Timeout.D() <= 0 || d.MaxAttempts < 1 || d.MaxInFlightPerRoom < 1 {
			bad("%s: timeout, max_attempts and max_in_flight_per_room must be positive", key)
		}
		if d.BackoffMax.D() < d.BackoffInitial.D() {
			bad("%s.backoff_max %s is shorter than backoff_initial %s", key, d.BackoffMax.D(), d.BackoffInitial.D())
		}
		if d.Start != "new" && d.Start != "all" {
			if v, err := time.ParseDuration(d.Start); err != nil || v <= 0 {
				bad("%s.start %q is not \"new\", \"all\" or a duration like \"24h\"", key, d.Start)
			}
		}
	}
	return errors.Join(errs...)
}

// Secret resolves a secret from an environment variable name or a file path
// (exactly one may be set). what names the key for the error message; the
// value never appears in an error.
func Secret(what, envName, file string, env func(string) (string, bool)) (string, error) {
	switch {
	case envName != "":
		v, ok := env(envName)
		if !ok || v == "" {
			return "", fmt.Errorf("%s_env: environment variable %s is not set", what, envName)
		}
		return v, nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s_file: %w", what, err)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", fmt.Errorf("%s_file: %s is empty", what, file)
		}
		return v, nil
	}
	return "", nil
}
