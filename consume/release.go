package consume

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Release lets a parked engine give its consumer back to the server while
// it stays idle (Options.Release; it needs a Doorbell). A durable consumer
// costs the server its state and goroutines whether or not messages come;
// a process with thousands of mostly idle engines would keep thousands of
// them. With Release:
//
//   - once the engine has taken no message for After, holds none, has no
//     hand-back coming due and the server reports nothing pending or
//     unacknowledged, it saves the last stream sequence its consumer
//     delivered (the cursor) and deletes the consumer;
//   - a released engine wakes as a parked one does. A doorbell ring (a
//     message published, perhaps not stored yet) creates the consumer again
//     at once, starting right after the cursor, and its pull waits for the
//     message. Other wake-ups (NATS reconnect, safety timer, start) first
//     ask the stream for a message on its filters after the cursor (one
//     message get) and create the consumer only if there is one;
//   - at start, an engine with a saved cursor and an engine whose consumer
//     does not exist start released: a restart of a process with thousands
//     of idle engines creates no consumer.
//
// The cursor is the only state kept while released. Everything up to it
// was settled (nothing was pending or unacknowledged when it was saved),
// and a message stored after it is delivered by the next consumer, however
// late it came (a message published between the check and the delete rings
// the doorbell). A consumer lost while held (deleted by someone else) is
// created again after the last sequence known settled. A consumer that
// still exists when the engine wakes (a crash between the save and the
// delete, or a run that created it again and crashed) is taken as it is,
// with its pending messages and the crash barrier.
type Release struct {
	// After is how long an engine must have taken no message before its
	// consumer is released; default 2m.
	After time.Duration
	// Stream is the stream's handle, used for the check of messages after
	// the cursor; required.
	Stream jetstream.Stream
	// Cursor keeps the cursor across releases and restarts; required. The
	// caller fences it: a Save refused because another process may now
	// consume keeps the consumer.
	Cursor Cursor
	// Fence, when set, is asked again right before the consumer is
	// deleted: an error (another process may hold the consumer now) keeps
	// it.
	Fence func() error
}

// Cursor stores an engine's released position: the last stream sequence
// its consumer delivered, all of it settled.
type Cursor interface {
	// Load returns the saved cursor; found is false when none was saved.
	Load(ctx context.Context) (seq uint64, found bool, err error)
	Save(ctx context.Context, seq uint64) error
}

const defaultReleaseAfter = 2 * time.Minute

// released says whether the engine runs without a consumer (only with
// Release). It is read and changed on the starter goroutine before the
// first ring and on the fetch loop's afterwards, never both at once.
func (e *engine) released() bool { return e.cons == nil }

// releasedStart is the engine's setup with Release (after the handler's
// Setup): the saved cursor; without one, the existing consumer (created by
// an earlier version, or a first run that never released), else a start
// released from the beginning of the stream.
func (e *engine) releasedStart(ctx context.Context) (*jetstream.ConsumerInfo, bool, error) {
	seq, found, err := e.sp.Release.Cursor.Load(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("consumer %s: cursor: %w", e.sp.Durable, err)
	}
	if found {
		e.cursor = seq
		return nil, false, nil
	}
	prev, missing, err := e.lookupConsumer(ctx)
	if err != nil || missing {
		return nil, false, err // missing: nothing consumed yet, released at the stream's start
	}
	return e.bind(ctx, prev, false)
}

// storedAfter says whether the stream holds a message on the consumer's
// filters after the cursor.
func (e *engine) storedAfter(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	filters := e.sp.FilterSubjects
	if e.sp.FilterSubject != "" {
		filters = []string{e.sp.FilterSubject}
	}
	if len(filters) == 0 {
		filters = []string{">"}
	}
	for _, f := range filters {
		_, err := e.sp.Release.Stream.GetMsg(ctx, e.cursor+1, jetstream.WithGetMsgSubject(f))
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, jetstream.ErrMsgNotFound) {
			return false, fmt.Errorf("stream %s after %d: %w", e.o.Stream, e.cursor, err)
		}
	}
	return false, nil
}

// reacquire creates the consumer again after the cursor (or takes the one
// that exists), on the fetch loop's goroutine.
func (e *engine) reacquire(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	info, created, err := e.bindConsumer(ctx)
	if err != nil {
		return err
	}
	e.takenAt = time.Now()
	if !created && !e.barrier.Active() {
		if e.barrier = newBarrier(info, e.o.AckWait); e.barrier.Active() {
			e.logger().Info().Int("pending", e.barrier.Pending()).Uint64("barrier", e.barrier.Seq()).
				Msg("messages of a previous run still pending; newer ones wait for them")
		}
	}
	e.logger().Debug().Bool("created", created).Uint64("after", e.cursor).Msg("consumer taken back")
	return nil
}

// releaseDue runs on the fetch loop's goroutine when the release timer
// rang: it releases the consumer if the engine is idle enough, else it
// arms the timer again for the rest of the wait.
func (e *engine) releaseDue(ctx context.Context, b *bell) {
	after := e.sp.Release.After
	if e.released() {
		return
	}
	if idle := time.Since(e.takenAt); idle < after {
		b.armRelease(after - idle)
		return
	}
	e.mu.Lock()
	busy := len(e.inHand) > 0 || len(e.held) > 0
	e.mu.Unlock()
	if busy || b.hasDues() {
		b.armRelease(after)
		return
	}
	if err := e.giveBack(ctx); err != nil {
		if ctx.Err() == nil {
			e.logger().Debug().Err(err).Msg("consumer not released; trying again later")
		}
		b.armRelease(after)
	}
}

// giveBack saves the cursor and deletes the consumer, if the server has
// nothing pending or unacknowledged on it. Once the cursor is saved the
// engine counts as released whatever the delete answers: a consumer left
// behind is taken as it is at the next wake-up, never created again from
// an older position.
func (e *engine) giveBack(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	info, err := e.cons.Info(ctx)
	if err != nil {
		return err
	}
	if info.NumPending > 0 || info.NumAckPending > 0 {
		return fmt.Errorf("%d pending, %d unacknowledged", info.NumPending, info.NumAckPending)
	}
	seq := max(e.cursor, info.Delivered.Stream)
	// Finished even when the engine stops meanwhile: the save and the
	// delete go together.
	ctx, cancelSave := context.WithTimeout(context.WithoutCancel(ctx), setupTimeout)
	defer cancelSave()
	if err := e.sp.Release.Cursor.Save(ctx, seq); err != nil {
		return fmt.Errorf("cursor: %w", err)
	}
	e.cons, e.cursor = nil, seq
	if f := e.sp.Release.Fence; f != nil {
		if err := f(); err != nil {
			e.logger().Debug().Err(err).Msg("idle consumer kept: this process may no longer hold it")
			return nil
		}
	}
	err = e.o.JS.DeleteConsumer(ctx, e.o.Stream, e.sp.Durable)
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		e.logger().Debug().Err(err).Msg("idle consumer not deleted; taken as it is when work comes")
		return nil
	}
	e.logger().Debug().Uint64("cursor", seq).Msg("idle consumer released")
	return nil
}
