package connector

import (
	"errors"
	"testing"
	"time"
)

func TestErrorVocabulary(t *testing.T) {
	t.Parallel()
	base := errors.New("cooling down")
	if got := RetryAfter(BackOff(base, 3*time.Second)); got != 3*time.Second {
		t.Errorf("RetryAfter(BackOff) = %s", got)
	}
	if IsPermanent(BackOff(base, time.Second)) || IsPermanent(HoldRoom(base, time.Second)) {
		t.Error("BackOff and HoldRoom are transient")
	}
	if d, ok := RoomHold(HoldRoom(base, 7*time.Second)); !ok || d != 7*time.Second {
		t.Errorf("RoomHold = %s, %v", d, ok)
	}
	if _, ok := RoomHold(BackOff(base, time.Second)); ok {
		t.Error("a BackOff is not a room hold")
	}
	if got := RetryAfter(HoldRoom(base, 2*time.Second)); got != 2*time.Second {
		t.Errorf("RetryAfter(HoldRoom) = %s", got)
	}
	if !WasSent(Sent(base)) || WasSent(base) || !errors.Is(Sent(base), base) {
		t.Error("Sent marks and unwraps")
	}
	if BackOff(nil, time.Second) != nil || HoldRoom(nil, time.Second) != nil || Sent(nil) != nil {
		t.Error("nil stays nil")
	}
	if Processed.String() != "processed" || ProcessingState(9).String() == "" {
		t.Error("ProcessingState names")
	}
}
