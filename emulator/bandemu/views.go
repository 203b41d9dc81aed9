package bandemu

import (
	"encoding/json"
	"time"
)

// JSON shapes of the REST bodies and socket payloads (band.md §8, §9).

type obj = map[string]any

func ts(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000Z") }

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte("{}") // only maps of plain values reach here
	}
	return b
}

func roomJSON(r *roomState) obj {
	return obj{"id": r.id, "title": r.title, "task_id": nullable(r.taskID),
		"inserted_at": ts(r.insertedAt), "updated_at": ts(r.updated)}
}

func roomRemovedJSON(r *roomState, at time.Time) obj {
	o := roomJSON(r)
	o["status"] = "removed"
	o["removed_at"] = ts(at)
	return o
}

func mentionsJSON(ms []Mention) []obj {
	out := make([]obj, 0, len(ms))
	for _, m := range ms {
		o := obj{"id": m.ID, "name": m.Name, "handle": m.Handle}
		if m.Kind == "reference" {
			o["kind"] = m.Kind
		}
		out = append(out, o)
	}
	return out
}

func messageMetadata(m *messageState) any {
	if m.MessageType == "text" {
		return obj{"mentions": mentionsJSON(m.Mentions)}
	}
	if len(m.Metadata) == 0 {
		return obj{}
	}
	return json.RawMessage(m.Metadata)
}

// messageJSON is the REST ChatMessage.
func messageJSON(m *messageState) obj {
	o := messagePushJSON(m)
	o["chat_room_id"] = m.RoomID
	return o
}

// messagePushJSON is the message_created payload. Like the documented
// one it has no chat_room_id: clients take the room from the topic.
func messagePushJSON(m *messageState) obj {
	return obj{
		"id": m.ID, "content": m.Content, "message_type": m.MessageType,
		"sender_id": m.SenderID, "sender_type": m.SenderType, "sender_name": m.SenderName,
		"metadata":    messageMetadata(m),
		"inserted_at": ts(m.InsertedAt), "updated_at": ts(m.InsertedAt),
	}
}

// participantJSON is the REST ChatParticipant.
func (s *Server) participantJSONLocked(p participant) obj {
	name, handle, _, _ := s.entityLocked(p.id)
	return obj{"id": p.id, "name": name, "handle": nullable(handle), "type": p.kind,
		"role": p.role, "status": "active"}
}

// participantEventLocked is the participant_added payload.
func (s *Server) participantEventLocked(p participant) obj {
	if a := s.agents[p.id]; a != nil {
		return obj{"id": a.ID, "type": "Agent", "name": a.Name, "description": a.Description,
			"is_external": true, "is_remote": true, "handle": a.Handle, "role": p.role}
	}
	name, handle, _, _ := s.entityLocked(p.id)
	return obj{"id": p.id, "type": "User", "name": name, "handle": nullable(handle),
		"role": p.role, "status": "active"}
}

func (s *Server) peerJSONLocked(id, viewer string) obj {
	name, handle, kind, _ := s.entityLocked(id)
	source := "registry"
	isContact := s.isContactLocked(viewer, id)
	if isContact {
		source = "contact"
	}
	o := obj{"id": id, "name": name, "handle": handle, "type": kind, "source": source, "is_contact": isContact}
	if a := s.agents[id]; a != nil {
		o["description"] = a.Description
		o["is_external"] = true
		o["tags"] = []string{}
	}
	return o
}

func (s *Server) contactJSONLocked(c *contactState) obj {
	name, handle, kind, _ := s.entityLocked(c.peerID)
	o := obj{"id": c.id, "handle": handle, "name": name, "type": kind, "inserted_at": ts(c.insertedAt)}
	if a := s.agents[c.peerID]; a != nil {
		o["description"] = a.Description
		o["is_external"] = true
		o["listed_in_directory"] = false
		o["tags"] = []string{}
	}
	return o
}

func (s *Server) receivedRequestJSONLocked(cr *contactRequestState) obj {
	name, handle, _, _ := s.entityLocked(cr.FromID)
	o := obj{"id": cr.ID, "from_handle": handle, "status": cr.Status,
		"message": nullable(cr.Message), "inserted_at": ts(cr.InsertedAt)}
	if name != "" {
		o["from_name"] = name
	}
	return o
}

func (s *Server) sentRequestJSONLocked(cr *contactRequestState) obj {
	name, handle, _, _ := s.entityLocked(cr.ToID)
	return obj{"id": cr.ID, "to_handle": handle, "to_name": nullable(name), "status": cr.Status,
		"message": nullable(cr.Message), "inserted_at": ts(cr.InsertedAt)}
}

func (s *Server) agentMeJSON(a *agentState) obj {
	return obj{"id": a.ID, "name": a.Name, "handle": a.Handle, "description": a.Description,
		"owner_uuid": s.ownerID, "inserted_at": ts(a.InsertedAt), "updated_at": ts(a.InsertedAt),
		"listed_in_directory": false, "tags": []string{}}
}
