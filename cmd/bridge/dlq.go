package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/bridgeworks/bridge/bridge"
	"github.com/bridgeworks/bridge/claimcheck"
	"github.com/bridgeworks/bridge/config"
	"github.com/bridgeworks/bridge/natsbus"
	"github.com/bridgeworks/bridge/subjects"
)

const dlqUsage = `usage: bridge dlq <list|show|redrive> --config FILE [flags] [SEQ…]

  list [--conn NAME] [--limit N]   dead letters, oldest first: sequence, time, source, reason
  show SEQ                         one dead letter: its headers, then its body
  redrive SEQ…                     publish each again on its source subject with a new
                                   message id, then delete it from the DLQ (never twice)
`

// cmdDLQ inspects and redrives the dead-letter stream of a configured
// bridge's NATS.
func cmdDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprint(stderr, dlqUsage)
		return fmt.Errorf("%w: dlq takes list, show or redrive", errUsage)
	}
	verb := args[0]
	fs := flag.NewFlagSet("dlq "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", os.Getenv("BRIDGE_CONFIG"), "config file (TOML); env BRIDGE_CONFIG")
	conn := fs.String("conn", "", "list: only this connection's dead letters")
	limit := fs.Int("limit", 100, "list: at most this many")
	// Flags may come before or after the sequence numbers.
	var pos []string
	for rest := args[1:]; ; {
		if err := fs.Parse(rest); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		pos, rest = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
	if *path == "" {
		return fmt.Errorf("%w: --config FILE is required", errUsage)
	}
	c, err := config.Load(*path, os.Environ())
	if err != nil {
		return err
	}
	var seqs []uint64
	for _, a := range pos {
		n, err := strconv.ParseUint(a, 10, 64)
		if err != nil || n == 0 {
			return fmt.Errorf("%w: %q is not a dead letter's sequence number", errUsage, a)
		}
		seqs = append(seqs, n)
	}
	switch {
	case verb == "list" && len(seqs) > 0:
		return fmt.Errorf("%w: list takes no sequence numbers", errUsage)
	case verb == "show" && len(seqs) != 1:
		return fmt.Errorf("%w: show takes one sequence number", errUsage)
	case verb == "redrive" && len(seqs) == 0:
		return fmt.Errorf("%w: redrive takes one or more sequence numbers", errUsage)
	case verb != "list" && verb != "show" && verb != "redrive":
		return fmt.Errorf("%w: unknown dlq command %q", errUsage, verb)
	}
	d, err := openDLQ(ctx, c)
	if err != nil {
		return err
	}
	defer d.nc.Close()
	switch verb {
	case "list":
		return d.list(ctx, *conn, *limit, stdout)
	case "show":
		return d.show(ctx, seqs[0], stdout)
	}
	for _, s := range seqs {
		if err := d.redrive(ctx, s, stdout); err != nil {
			return err
		}
	}
	return nil
}

type dlqTool struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	prefix string
}

func openDLQ(ctx context.Context, c *config.Config) (*dlqTool, error) {
	o, err := bridge.NATSOptions(c.NATS, os.LookupEnv)
	if err != nil {
		return nil, err
	}
	if o.URL == "" {
		return nil, errors.New("nats: nats.url is empty and the embedded server listens on nothing; nothing to connect to")
	}
	o.Name = "bridge-dlq"
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	nc, err := natsbus.Connect(cctx, o, zerolog.Nop())
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	name := subjects.StreamName(c.NATS.Prefix, subjects.StreamDLQ)
	st, err := js.Stream(cctx, name)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	return &dlqTool{nc: nc, js: js, stream: st, prefix: c.NATS.Prefix}, nil
}

// list prints dead letters oldest first, walking the stream by subject.
func (d *dlqTool) list(ctx context.Context, conn string, limit int, w io.Writer) error {
	filter := subjects.Filter(d.prefix, subjects.KindDLQ, "", "")
	if conn != "" {
		filter = d.prefix + "." + string(subjects.KindDLQ) + ".*." + conn + ".>"
	}
	fmt.Fprintf(w, "%-8s %-20s %-8s %s\n", "SEQ", "TIME", "ATTEMPTS", "SOURCE / REASON")
	n := 0
	for seq := uint64(1); n < limit; n++ {
		m, err := d.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return fmt.Errorf("dlq: read from %d: %w", seq, err)
		}
		fmt.Fprintf(w, "%-8d %-20s %-8s %s\n%37s%s\n", m.Sequence, m.Time.UTC().Format(time.DateTime),
			m.Header.Get(subjects.HeaderAttempts), m.Header.Get(subjects.HeaderSourceSubject), "", m.Header.Get(subjects.HeaderError))
		seq = m.Sequence + 1
	}
	fmt.Fprintf(w, "%d dead letters shown\n", n)
	return nil
}

func (d *dlqTool) get(ctx context.Context, seq uint64) (*jetstream.RawStreamMsg, error) {
	m, err := d.stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("dlq: no dead letter with sequence %d (deleted, redriven or expired)", seq)
	}
	if err != nil {
		return nil, fmt.Errorf("dlq: read %d: %w", seq, err)
	}
	return m, nil
}

func (d *dlqTool) show(ctx context.Context, seq uint64, w io.Writer) error {
	m, err := d.get(ctx, seq)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "sequence: %d\nsubject: %s\ntime: %s\n", m.Sequence, m.Subject, m.Time.UTC().Format(time.RFC3339Nano))
	for k, vs := range m.Header {
		for _, v := range vs {
			fmt.Fprintf(w, "%s: %s\n", k, v)
		}
	}
	fmt.Fprintf(w, "\n%s\n", m.Data)
	return nil
}

// redrive publishes dead letter seq on its source subject and deletes it.
// The new message id is derived from the dead letter, so a redrive repeated
// after a failure between publish and delete is stored once (within the
// stream's duplicate window).
func (d *dlqTool) redrive(ctx context.Context, seq uint64, w io.Writer) error {
	m, err := d.get(ctx, seq)
	if err != nil {
		return err
	}
	src := m.Header.Get(subjects.HeaderSourceSubject)
	s, err := subjects.Parse(d.prefix, src)
	if err != nil || (s.Kind != subjects.KindCommand && s.Kind != subjects.KindEvent) {
		return fmt.Errorf("dlq: %d: source subject %q is not a command or event subject of prefix %q", seq, src, d.prefix)
	}
	out := nats.NewMsg(src)
	out.Data = m.Data
	ref, byRef, err := subjects.DataRefFromHeaders(m.Header.Get)
	if err != nil {
		return fmt.Errorf("dlq: %d: %w", seq, err)
	}
	if byRef { // the body was too large for the dead letter: fetch it back
		if out.Data, err = claimcheck.Fetch(ctx, d.js, ref); err != nil {
			return fmt.Errorf("dlq: %d: body by reference: %w", seq, err)
		}
	}
	for k, vs := range m.Header {
		switch {
		case strings.HasPrefix(strings.ToLower(k), "nats-"), strings.HasPrefix(k, "Bridge-Data-"),
			k == subjects.HeaderError, k == subjects.HeaderStatus, k == subjects.HeaderAttempts, k == subjects.HeaderSourceSubject:
			continue
		}
		out.Header[k] = vs
	}
	if !claimcheck.Fits(d.nc, out) {
		return fmt.Errorf("dlq: %d: %d bytes, over the server's max_payload %d: cannot be published again as one message", seq, claimcheck.PayloadSize(out), d.nc.MaxPayload())
	}
	out.Header.Set(subjects.HeaderMsgID, fmt.Sprintf("redrive:%s:%d", m.Subject, m.Sequence))
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ack, err := d.js.PublishMsg(pctx, out)
	if err != nil {
		return fmt.Errorf("dlq: %d: publish to %s: %w", seq, src, err)
	}
	if err := d.stream.DeleteMsg(pctx, seq); err != nil {
		return fmt.Errorf("dlq: %d: redriven to %s (stream %s seq %d) but not deleted from the DLQ: %w", seq, src, ack.Stream, ack.Sequence, err)
	}
	note := ""
	if ack.Duplicate {
		note = " (already redriven earlier; not stored again)"
	}
	fmt.Fprintf(w, "%d: redriven to %s (stream %s seq %d)%s\n", seq, src, ack.Stream, ack.Sequence, note)
	return nil
}
