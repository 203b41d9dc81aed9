// Package subjects is the bridge's NATS contract: the subject grammar, the
// CloudEvents envelope, command results, managed-dispatch replies and header
// names. It depends on the standard library only, so worker authors and the
// documentation generator can rely on it without pulling in the bridge.
//
// Start with [Subject] (build with [Subject.String], parse with [Parse]) and
// [EscapeToken], which maps any platform id to exactly one NATS token and back.
// [Event] is the envelope every platform event is published in; [Result] is
// what each executed command yields; [WorkReply] is what a managed-dispatch
// worker answers. [Lifecycles] lists every lifecycle event (P.sys…) the
// bridge publishes.
package subjects
