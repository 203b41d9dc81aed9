// Command bridge runs the gateway between AI-agent chat platforms and NATS.
//
//	bridge [run] --config FILE     run the bridge (the default subcommand)
//	bridge check-config --config FILE
//	bridge demo                    the whole flow on embedded defaults
//	bridge emulate PLATFORM        run a platform emulator alone
//	bridge dlq list|show|redrive   inspect and redrive dead letters
//	bridge version
//
// main is the only place that exits; everything else returns errors.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/bridge"
	"github.com/bridgeworks/bridge/config"
	"github.com/bridgeworks/bridge/platforms"
	"github.com/bridgeworks/bridge/tracing"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, cancel := context.WithCancelCause(context.Background())
	ctx, stop := watchSignals(ctx, cancel)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	cancel(nil)
	os.Exit(code)
}

// watchSignals ends ctx (through cancel) on SIGINT or SIGTERM and hands
// each SIGHUP to the command through the returned context (see hangups);
// stop ends the watch. Until stop, none of the three signals ends the
// process by itself.
func watchSignals(ctx context.Context, cancel context.CancelCauseFunc) (_ context.Context, stop func()) {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	hup := make(chan struct{}, 1)
	done := make(chan struct{})
	ended := make(chan struct{})
	go func() { // owned: ends when stop closes done
		defer close(ended)
		for {
			select {
			case sig := <-sigs:
				if sig == syscall.SIGHUP {
					select {
					case hup <- struct{}{}:
					default: // a reload is pending already; it reads the newest file
					}
					continue
				}
				cancel(fmt.Errorf("%w: %s", errSignal, sig))
			case <-done:
				return
			}
		}
	}()
	return withHangups(ctx, hup), func() {
		signal.Stop(sigs)
		close(done)
		<-ended
	}
}

// errSignal is the cause of a context ended by SIGINT or SIGTERM.
var errSignal = errors.New("signal")

type hangupKey struct{}

// withHangups gives the commands that care (run) the SIGHUPs received.
func withHangups(ctx context.Context, hup <-chan struct{}) context.Context {
	return context.WithValue(ctx, hangupKey{}, hup)
}

func hangups(ctx context.Context) <-chan struct{} {
	ch, _ := ctx.Value(hangupKey{}).(<-chan struct{})
	return ch // nil (never ready) outside main
}

// errUsage marks a command-line mistake (exit code 2).
var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 {
		switch a := args[0]; {
		case a == "-h" || a == "-help" || a == "--help":
			cmd, args = "help", args[1:]
		case a == "-version" || a == "--version":
			cmd, args = "version", args[1:]
		case len(a) > 0 && a[0] != '-':
			cmd, args = a, args[1:]
		}
	}
	var err error
	switch cmd {
	case "run":
		err = cmdRun(ctx, args, stderr)
	case "check-config":
		err = cmdCheckConfig(args, stdout, stderr)
	case "demo":
		err = cmdDemo(ctx, args, stdout, stderr)
	case "emulate":
		err = cmdEmulate(ctx, args, stdout, stderr)
	case "dlq":
		err = cmdDLQ(ctx, args, stdout, stderr)
	case "status":
		err = cmdStatus(ctx, args, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, versionString())
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "bridge: unknown command %q\n%s", cmd, usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		printErr(stderr, cmd, err)
		return 2
	default:
		printErr(stderr, cmd, err)
		return 1
	}
}

// printErr prints err, one line per mistake (a config may have several),
// each line starting with the command.
func printErr(w io.Writer, cmd string, err error) {
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintf(w, "bridge %s: %s\n", cmd, line)
	}
}

const usage = `usage: bridge <command> [flags]

commands:
  run --config FILE          run the bridge (default command)
  check-config --config FILE load and validate a config, then exit
  demo                       run the whole flow on embedded defaults
                             (--platform band, polyai, chatapi or agentconnect)
  emulate PLATFORM           run a platform emulator alone: band, chatapi,
                             polyai, agentconnect (e.g. bridge emulate band)
  dlq list|show|redrive      inspect dead letters; publish them again (see "bridge dlq")
  status --config FILE       which replica holds which connection, across the cluster
  version                    print the version (also --version)
  help                       print this text (also --help)

"bridge <command> --help" lists a command's flags.

signals (run): SIGTERM or SIGINT stop taking new work and drain within
shutdown.drain_timeout; SIGHUP reloads the config file: connections and
dispatch rules added, removed or changed are started, stopped or
restarted, the others keep running; a config with a mistake is refused
(each mistake logged) and the running one kept. The nats, http, lease, log
and shutdown sections are read only at start.
`

func versionString() string {
	if bi, ok := debug.ReadBuildInfo(); ok && version == "dev" {
		return fmt.Sprintf("bridge %s (%s)", buildVersion(), bi.GoVersion)
	}
	return "bridge " + buildVersion()
}

// buildVersion is version, with the VCS revision when it is "dev".
func buildVersion() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += "+" + s.Value[:12]
			}
		}
	}
	return v
}

type logFlags struct{ level, format string }

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.level, "log-level", "", "log level: trace, debug, info, warn, error (overrides log.level)")
	fs.StringVar(&l.format, "log-format", "", "log format: json or console (overrides log.format)")
}

func (l *logFlags) apply(c *config.Config) error {
	if l.level != "" {
		c.Log.Level = l.level
	}
	if l.format != "" {
		c.Log.Format = l.format
	}
	return c.Validate()
}

func newLogger(c config.Log, w io.Writer) zerolog.Logger {
	lvl, err := zerolog.ParseLevel(c.Level)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	w = zerolog.SyncWriter(w) // goroutines log concurrently; w may be any writer
	if c.Format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000"}
	}
	return zerolog.New(w).Level(lvl).Hook(msTime{})
}

// msTime stamps each line with the time in UTC to the millisecond. It is
// a hook rather than zerolog.TimeFieldFormat, a package global that tests
// running commands in parallel would race on.
type msTime struct{}

func (msTime) Run(e *zerolog.Event, _ zerolog.Level, _ string) {
	e.Str(zerolog.TimestampFieldName, time.Now().UTC().Format("2006-01-02T15:04:05.000Z07:00"))
}

// loadConfig reads the config named by the flags and checks all of it:
// the config itself, the NATS section's files, and every connection
// against its platform (settings and secrets). Every mistake is reported,
// one line each.
func loadConfig(fs *flag.FlagSet, args []string, path *string, lf *logFlags) (*config.Config, error) {
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if *path == "" {
		return nil, fmt.Errorf("%w: --config FILE is required", errUsage)
	}
	return readConfig(*path, lf)
}

// readConfig loads path and checks all of it (see loadConfig).
func readConfig(path string, lf *logFlags) (*config.Config, error) {
	c, err := config.Load(path, os.Environ())
	if c == nil {
		return nil, err
	}
	errs := []error{err}
	if lf != nil && err == nil {
		if err := lf.apply(c); err != nil {
			errs = append(errs, config.Lines("config: ", err))
		}
	}
	errs = append(errs, config.Lines("config: ", c.CheckFiles()))
	if _, err := bridge.New(c, bridge.Options{Log: zerolog.Nop(), Registry: platforms.All()}); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

func cmdRun(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", os.Getenv("BRIDGE_CONFIG"), "config file (TOML); env BRIDGE_CONFIG")
	var lf logFlags
	lf.register(fs)
	c, err := loadConfig(fs, args, path, &lf)
	if err != nil {
		return err
	}
	log := newLogger(c.Log, stderr)
	opts := bridge.Options{Log: log, Registry: platforms.All(), ShutdownTimeout: c.Shutdown.DrainTimeout.D(), Version: buildVersion()}
	if _, set := os.LookupEnv("GOGC"); !set {
		// Less of the starting connections' garbage is left between what
		// they keep (see bridge.StartGCPercent); an operator's GOGC wins.
		opts.StartGCPercent = bridge.StartGCPercent
	}
	if c.Tracing.Enabled {
		tp, flush, err := tracing.New(ctx, tracing.Config{Enabled: true, Endpoint: c.Tracing.Endpoint,
			ServiceName: c.Tracing.ServiceName, SampleRatio: c.Tracing.SampleRatio})
		if err != nil {
			return err
		}
		defer func() {
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := flush(fctx); err != nil {
				log.Warn().Err(err).Msg("traces not flushed")
			}
		}()
		opts.TracerProvider = tp
		log.Info().Float64("sample_ratio", c.Tracing.SampleRatio).Msg("tracing on")
	}
	b, err := bridge.New(c, opts)
	if err != nil {
		return err
	}
	watchCtx, stopWatch := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() { // owned: cmdRun waits for it below
		defer close(watched)
		handleSignals(watchCtx, ctx, log, c.Shutdown.DrainTimeout.D(), func() { reload(ctx, b, *path, &lf, log) })
	}()
	err = b.Run(ctx)
	stopWatch()
	<-watched
	return err
}

// handleSignals reloads the config at each SIGHUP and logs the signal that
// stops run (with the drain deadline), until watch ends.
func handleSignals(watch, run context.Context, log zerolog.Logger, drain time.Duration, reload func()) {
	hup := hangups(run)
	for {
		select {
		case <-hup:
			log.Info().Str("signal", "SIGHUP").Msg("signal received; reloading the config")
			reload()
		case <-run.Done():
			if cause := context.Cause(run); errors.Is(cause, errSignal) {
				log.Info().Str("signal", strings.TrimPrefix(cause.Error(), errSignal.Error()+": ")).Int64("drain_timeout_ms", drain.Milliseconds()).Msg("signal received; draining")
			}
			return
		case <-watch.Done():
			return
		}
	}
}

// reload reads path again and hands it to the running bridge; a config
// with mistakes is refused, each mistake logged on a line of its own.
func reload(ctx context.Context, b *bridge.Bridge, path string, lf *logFlags, log zerolog.Logger) {
	c, err := readConfig(path, lf)
	if err == nil {
		err = b.Reload(ctx, c)
	}
	if err == nil {
		return
	}
	if ctx.Err() != nil {
		log.Warn().Err(err).Msg("config reload cut short: the bridge is stopping")
		return
	}
	msg := "config reload refused; the running config is kept"
	if errors.Is(err, bridge.ErrReloadIncomplete) {
		msg = "config reloaded, but a connection did not start"
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		log.Error().Str("problem", line).Str("config", path).Msg(msg)
	}
}

func cmdCheckConfig(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", os.Getenv("BRIDGE_CONFIG"), "config file (TOML); env BRIDGE_CONFIG")
	c, err := loadConfig(fs, args, path, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ok (%d connections, %d dispatch rules)\n", *path, len(c.Connection), len(c.Dispatch))
	return nil
}
