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
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	hup := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() { // owned: ends when main stops it below
		for {
			select {
			case sig := <-sigs:
				if sig == syscall.SIGHUP {
					select {
					case hup <- struct{}{}:
					default:
					}
					continue
				}
				cancel(fmt.Errorf("%w: %s", errSignal, sig))
			case <-done:
				return
			}
		}
	}()
	code := run(withHangups(ctx, hup), os.Args[1:], os.Stdout, os.Stderr)
	signal.Stop(sigs)
	close(done)
	cancel(nil)
	os.Exit(code)
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
		fmt.Fprintf(stderr, "bridge %s: %v\n", cmd, err)
		return 2
	default:
		fmt.Fprintf(stderr, "bridge %s: %v\n", cmd, err)
		return 1
	}
}

const usage = `usage: bridge <command> [flags]

commands:
  run --config FILE          run the bridge (default command)
  check-config --config FILE load and validate a config, then exit
  demo                       run the whole flow on embedded defaults
  emulate PLATFORM           run a platform emulator alone: band, chatapi,
                             polyai, agentconnect
  dlq list|show|redrive      inspect dead letters; publish them again (see "bridge dlq")
  version                    print the version (also --version)
  help                       print this text (also --help)

"bridge <command> --help" lists a command's flags.

signals (run): SIGTERM or SIGINT stop taking new work and drain within
shutdown.drain_timeout; SIGHUP is logged and ignored (the process keeps
running; restart it to load a changed config).
`

func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += "+" + s.Value[:12]
			}
		}
		return fmt.Sprintf("bridge %s (%s)", v, bi.GoVersion)
	}
	return "bridge " + v
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
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger()
}

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
	c, err := config.Load(*path, os.Environ())
	if err != nil {
		return nil, err
	}
	if lf != nil {
		if err := lf.apply(c); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
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
	b, err := bridge.New(c, bridge.Options{Log: log, Registry: platforms.All(), ShutdownTimeout: c.Shutdown.DrainTimeout.D()})
	if err != nil {
		return err
	}
	watchCtx, stopWatch := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() { // owned: cmdRun waits for it below
		defer close(watched)
		logSignals(watchCtx, ctx, log, c.Shutdown.DrainTimeout.D())
	}()
	err = b.Run(ctx)
	stopWatch()
	<-watched
	return err
}

// logSignals logs each SIGHUP and the signal that stops run (with the
// drain deadline) until watch ends.
func logSignals(watch, run context.Context, log zerolog.Logger, drain time.Duration) {
	hup := hangups(run)
	for {
		select {
		case <-hup:
			log.Warn().Str("signal", "SIGHUP").Msg("signal received; config reload is not supported, ignoring it (restart to load a changed config)")
		case <-run.Done():
			if cause := context.Cause(run); errors.Is(cause, errSignal) {
				log.Info().Str("signal", strings.TrimPrefix(cause.Error(), errSignal.Error()+": ")).Dur("drain_timeout", drain).Msg("signal received; draining")
			}
			return
		case <-watch.Done():
			return
		}
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
	if _, err := bridge.New(c, bridge.Options{Log: zerolog.Nop(), Registry: platforms.All()}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ok (%d connections, %d dispatch rules)\n", *path, len(c.Connection), len(c.Dispatch))
	return nil
}
