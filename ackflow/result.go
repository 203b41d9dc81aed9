package ackflow

import (
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/bridgeworks/bridge/claimcheck"
	"github.com/bridgeworks/bridge/subjects"
)

// PublishResult sends a command's result on subject (P.res…, a
// Bridge-Reply-To, an inbox) over core NATS, cut to what NATS can carry
// ([claimcheck.FitResult]). A result that cannot be encoded or sent is an
// error: the caller logs it.
func PublishResult(nc *nats.Conn, subject string, res subjects.Result) error {
	b, err := json.Marshal(claimcheck.FitResult(res, nc.MaxPayload()))
	if err != nil {
		return fmt.Errorf("result %s: %w", res.CommandID, err)
	}
	m := nats.NewMsg(subject)
	m.Header.Set(subjects.HeaderContentType, "application/json")
	m.Data = b
	if err := nc.PublishMsg(m); err != nil {
		return fmt.Errorf("result %s to %s: %w", res.CommandID, subject, err)
	}
	return nil
}
