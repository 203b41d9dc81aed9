package subjects

import (
	"fmt"
	"strconv"
	"strings"
)

// A message that would exceed NATS's max_payload is not dropped and does not
// block the ones behind it: the bridge keeps its payload as an object in a
// JetStream object store bucket of the connection and sends a reference
// instead (the claim-check pattern). Events, work requests and dead letters
// all use the same reference, a [DataRef].

// DataRefScheme is the URI scheme of [DataRef.URI].
const DataRefScheme = "nats-object"

// Header names of a dead letter whose body is kept by reference; the body of
// such a dead letter is empty.
const (
	HeaderDataRef    = "Bridge-Data-Ref"    // DataRef.URI()
	HeaderDataBucket = "Bridge-Data-Bucket" // DataRef.Bucket
	HeaderDataObject = "Bridge-Data-Object" // DataRef.Object
	HeaderDataSize   = "Bridge-Data-Size"   // DataRef.Size, decimal
	HeaderDataSHA256 = "Bridge-Data-Sha256" // DataRef.SHA256
)

// DataRef points at a payload kept in a JetStream object store bucket.
type DataRef struct {
	Bucket string // the connection's bucket, see PayloadBucket
	Object string // the object's name: the payload's SHA-256, lower-case hex
	Size   int64  // the payload's length in bytes
	SHA256 string // the payload's SHA-256, lower-case hex
}

// PayloadBucket is the object store bucket holding the offloaded payloads
// of connection conn: "<PREFIX>_PAYLOADS_<conn>" (BRIDGE_PAYLOADS_support-bot;
// its stream is OBJ_BRIDGE_PAYLOADS_support-bot). One bucket per connection,
// so a worker can be allowed to read its own connection's payloads only.
func PayloadBucket(prefix, conn string) string { return StreamName(prefix, "PAYLOADS") + "_" + conn }

// URI is the reference as a URI: "nats-object://<bucket>/<object>", the
// value of the CloudEvents dataref attribute.
func (r DataRef) URI() string { return DataRefScheme + "://" + r.Bucket + "/" + r.Object }

// Headers returns the dead-letter headers of r, name → value.
func (r DataRef) Headers() map[string]string {
	return map[string]string{
		HeaderDataRef: r.URI(), HeaderDataBucket: r.Bucket, HeaderDataObject: r.Object,
		HeaderDataSize: strconv.FormatInt(r.Size, 10), HeaderDataSHA256: r.SHA256,
	}
}

// DataRefFromHeaders reads the reference of a dead letter; ok is false when
// the dead letter carries its body inline. get is a header lookup, such as
// nats.Header.Get.
func DataRefFromHeaders(get func(string) string) (DataRef, bool, error) {
	if get(HeaderDataRef) == "" {
		return DataRef{}, false, nil
	}
	size, err := strconv.ParseInt(get(HeaderDataSize), 10, 64)
	if err != nil {
		return DataRef{}, true, fmt.Errorf("dead letter: %s %q is not a number", HeaderDataSize, get(HeaderDataSize))
	}
	r := DataRef{Bucket: get(HeaderDataBucket), Object: get(HeaderDataObject), Size: size, SHA256: get(HeaderDataSHA256)}
	return r, true, r.check()
}

func (r DataRef) check() error {
	switch {
	case r.Bucket == "" || strings.ContainsAny(r.Bucket, ". *>/"):
		return fmt.Errorf("data reference: bucket %q is not a bucket name", r.Bucket)
	case r.Object == "":
		return fmt.Errorf("data reference: object is empty")
	case r.Size < 0:
		return fmt.Errorf("data reference: size %d is negative", r.Size)
	case len(r.SHA256) != 64:
		return fmt.Errorf("data reference: sha256 %q is not 64 hex digits", r.SHA256)
	}
	return nil
}

// Offload replaces the event's data by a reference to where it is kept.
func (e *Event) Offload(r DataRef) {
	e.Data = nil
	e.DataRef, e.DataBucket, e.DataObject, e.DataSize, e.DataSHA256 = r.URI(), r.Bucket, r.Object, r.Size, r.SHA256
}

// Ref returns the reference of an event whose data was offloaded; ok is
// false when data is inline.
func (e Event) Ref() (r DataRef, ok bool) {
	if e.DataRef == "" {
		return DataRef{}, false
	}
	return DataRef{Bucket: e.DataBucket, Object: e.DataObject, Size: e.DataSize, SHA256: e.DataSHA256}, true
}
