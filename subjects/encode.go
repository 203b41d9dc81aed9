package subjects

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"
)

// AppendJSON appends e as JSON to b: the same object json.Marshal writes,
// without reflection. The bridge encodes every event on its hot path with it;
// Data must be valid JSON (platform payloads are parsed before they get here).
func (e *Event) AppendJSON(b []byte) []byte {
	b = slices.Grow(b, e.jsonSize())
	b = append(b, `{"specversion":`...)
	b = appendString(b, e.SpecVersion)
	b = append(b, `,"id":`...)
	b = appendString(b, e.ID)
	b = append(b, `,"source":`...)
	b = appendString(b, e.Source)
	b = append(b, `,"type":`...)
	b = appendString(b, e.Type)
	if e.Subject != "" {
		b = append(b, `,"subject":`...)
		b = appendString(b, e.Subject)
	}
	b = append(b, `,"time":"`...)
	b = e.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if e.DataContentType != "" {
		b = append(b, `,"datacontenttype":`...)
		b = appendString(b, e.DataContentType)
	}
	b = append(b, `,"platform":`...)
	b = appendString(b, e.Platform)
	b = append(b, `,"connection":`...)
	b = appendString(b, e.Connection)
	if e.Room != "" {
		b = append(b, `,"room":`...)
		b = appendString(b, e.Room)
	}
	if e.Transient {
		b = append(b, `,"transient":true`...)
	}
	if len(e.Data) > 0 {
		b = append(b, `,"data":`...)
		b = append(b, e.Data...)
	}
	if e.DataRef != "" {
		b = append(b, `,"dataref":`...)
		b = appendString(b, e.DataRef)
		b = append(b, `,"databucket":`...)
		b = appendString(b, e.DataBucket)
		b = append(b, `,"dataobject":`...)
		b = appendString(b, e.DataObject)
		b = append(b, `,"datasize":`...)
		b = strconv.AppendInt(b, e.DataSize, 10)
		b = append(b, `,"datasha256":`...)
		b = appendString(b, e.DataSHA256)
	}
	if e.CommandID != "" {
		b = append(b, `,"commandid":`...)
		b = appendString(b, e.CommandID)
	}
	if e.Seq != nil {
		b = append(b, `,"seq":`...)
		b = strconv.AppendInt(b, *e.Seq, 10)
	}
	return append(b, '}')
}

// jsonSize is AppendJSON's length for e when no string needs escaping: the
// room it grows b by at once, so an event is encoded without a copy.
func (e *Event) jsonSize() int {
	const keys = 256 // every key, quote, comma and number, with room to spare
	return keys + len(e.SpecVersion) + len(e.ID) + len(e.Source) + len(e.Type) + len(e.Subject) +
		len(time.RFC3339Nano) + len(e.DataContentType) + len(e.Platform) + len(e.Connection) + len(e.Room) +
		len(e.Data) + len(e.DataRef) + len(e.DataBucket) + len(e.DataObject) + len(e.DataSHA256) + len(e.CommandID)
}

// appendString appends s as a JSON string; strings that need escaping take
// encoding/json's path.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
