package agentconnect

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/bridgeworks/bridge/connector"
)

// creatingPrefix keys the record of each create_session command in the
// state store: "pending" while the platform call may be under way, then
// the session id it created. AgentConnect cannot list a user's sessions,
// so this record is the only way a run that takes over after a crash can
// tell whether the command already created its session.
const creatingPrefix = "creating/"

const creatingPending = "pending"

func creatingKey(cmdID string) string {
	h := sha256.Sum256([]byte(cmdID))
	return creatingPrefix + hex.EncodeToString(h[:16])
}

// createSessionOnce runs create_session at most once per command id: a
// command an earlier run may have executed (cmd.MaybeExecuted) answers
// from the record instead of creating a second session — with the session
// it created, or an unknown outcome when that run was cut off before the
// platform answered.
func (c *Connector) createSessionOnce(ctx context.Context, cmd connector.Command, args json.RawMessage) (connector.Response, error) {
	if c.state == nil || cmd.ID == "" {
		return c.createSession(ctx, cmd.Room, args)
	}
	key := creatingKey(cmd.ID)
	if cmd.MaybeExecuted {
		b, _, err := c.state.Get(ctx, key)
		switch {
		case err == nil && string(b) == creatingPending:
			return connector.Response{}, connector.Sent(errors.New("agentconnect: create_session: a run that crashed may have created this session; not creating a second one"))
		case err == nil:
			sid := string(b)
			data, _ := json.Marshal(map[string]string{"session_id": sid})
			return connector.Response{Status: http.StatusOK, Data: data, Ref: sid}, nil
		case !errors.Is(err, connector.ErrStateNotFound):
			return connector.Response{}, fmt.Errorf("agentconnect: create_session: read %s: %w", key, err)
		}
	}
	if _, err := c.state.Put(ctx, key, []byte(creatingPending)); err != nil {
		return connector.Response{}, fmt.Errorf("agentconnect: create_session: record the attempt: %w", err)
	}
	resp, err := c.createSessionAs(ctx, args, key)
	if err != nil || resp.Ref == "" {
		return resp, err // the record stays pending: a crash now leaves the outcome unknown
	}
	if _, perr := c.state.Put(ctx, key, []byte(resp.Ref)); perr != nil {
		c.log.Warn().Err(perr).Str("session_id", resp.Ref).Msg("state: the created session is not recorded for its command; a crashed run would answer unknown_outcome")
	}
	return resp, nil
}
