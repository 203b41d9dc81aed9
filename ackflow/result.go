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
	return PublishEncoded(nc, subject, res.CommandID, b)
}

// PublishEncoded sends the result of command id, already encoded (and
// fitted, see [claimcheck.FitResult]), on subject, as [PublishResult] does.
func PublishEncoded(nc *nats.Conn, subject, id string, b []byte) error {
	m := &nats.Msg{Subject: subject, Header: nats.Header{subjects.HeaderContentType: {"application/json"}}, Data: b}
	if err := nc.PublishMsg(m); err != nil {
		return fmt.Errorf("result %s to %s: %w", id, subject, err)
	}
	return nil
}
