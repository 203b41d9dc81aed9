package claimcheck

import (
	"encoding/json"
	"fmt"

	"github.com/bridgeworks/bridge/subjects"
)

// ResultHeadroom is what [FitResult] keeps free under max_payload for the
// headers a result travels with (Content-Type and the like).
const ResultHeadroom = 1024

// FitResult returns res when its JSON fits in one NATS message of at most
// limit bytes (less [ResultHeadroom]); otherwise an ok:false result with
// code too_large, not retryable, whose message names the size and the limit.
// A result is not offloaded: it answers a caller that can ask again for
// less (a smaller page), and the executed-id store keeps the same small
// result, so a redelivery answers the same way.
func FitResult(res subjects.Result, limit int64) subjects.Result {
	budget := limit - ResultHeadroom
	var msg int
	if res.Error != nil {
		msg = len(res.Error.Message) + len(res.Error.Code)
	}
	if int64(len(res.Data)+msg+len(res.CommandID)+len(res.Command))+256 <= budget {
		return res // the common case, without encoding it
	}
	b, err := json.Marshal(res)
	if err != nil || int64(len(b)) <= budget {
		return res
	}
	return subjects.Result{CommandID: res.CommandID, Command: res.Command, Status: res.Status, Attempts: res.Attempts,
		Error: &subjects.Error{Code: subjects.ErrCodeTooLarge, Retryable: false, Message: fmt.Sprintf(
			"the result of %s is %d bytes, over the %d bytes a result may take (NATS max_payload %d less %d for headers); the command was executed (status %d) but its data is not returned: ask for less (a smaller page_size or limit) and page through",
			res.Command, len(b), budget, limit, ResultHeadroom, res.Status)}}
}
