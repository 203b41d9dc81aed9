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
//
// [Kinds], [Headers], [ErrorCodes] and [Stores] describe the contract for
// its readers: go generate ./subjects renders them, with the types' field
// descriptions, into docs/contract.md, README.md, docs/workers.md,
// docs/asyncapi.yaml and docs/schemas (internal/gen), and a test fails when
// those files fall behind this package.
package subjects
