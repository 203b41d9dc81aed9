package bandemu

import (
	"net/http"
	"slices"
	"strings"
)

// Contacts and contact requests (band.md §8, §9).

func (s *Server) listContacts(c *call) {
	page, size, bad := c.pageParams(s.opts.ChatsPageSize)
	if bad != nil {
		c.send(*bad)
		return
	}
	s.locked(c, func() reply {
		all := s.contactsOfLocked(c.agentID)
		data := []obj{}
		for _, ct := range pageOf(all, page, size) {
			data = append(data, s.contactJSONLocked(ct))
		}
		return list(data, pageMeta(page, size, len(all)))
	})
}

func (s *Server) listContactRequests(c *call) {
	page, size, bad := c.pageParams(s.opts.ChatsPageSize)
	if bad != nil {
		c.send(*bad)
		return
	}
	sentStatus := c.r.URL.Query().Get("sent_status")
	if sentStatus == "" {
		sentStatus = "pending"
	}
	if !slices.Contains([]string{"pending", "approved", "rejected", "cancelled", "all"}, sentStatus) {
		c.send(invalid("validation_error", "invalid sent_status", "/sent_status", "is invalid"))
		return
	}
	s.locked(c, func() reply {
		var received, sent []*contactRequestState
		for _, cr := range s.contactRequests {
			switch {
			case cr.ToID == c.agentID && cr.Status == "pending":
				received = append(received, cr)
			case cr.FromID == c.agentID && (sentStatus == "all" || cr.Status == sentStatus):
				sent = append(sent, cr)
			}
		}
		recv, snt := []obj{}, []obj{}
		for _, cr := range pageOf(received, page, size) {
			recv = append(recv, s.receivedRequestJSONLocked(cr))
		}
		for _, cr := range pageOf(sent, page, size) {
			snt = append(snt, s.sentRequestJSONLocked(cr))
		}
		dir := func(n int) obj { return obj{"total": n, "total_pages": (n + size - 1) / size} }
		return list(obj{"received": recv, "sent": snt},
			obj{"page": page, "page_size": size, "received": dir(len(received)), "sent": dir(len(sent))})
	})
}

func (s *Server) addContact(c *call) {
	var body struct {
		Handle  string `json:"handle"`
		Message string `json:"message"`
	}
	if !c.decode(&body) {
		return
	}
	handle := strings.TrimPrefix(strings.TrimSpace(body.Handle), "@")
	if handle == "" {
		c.send(c.errorf(http.StatusBadRequest, "bad_request", "handle is required"))
		return
	}
	if len(body.Message) > 500 {
		c.send(invalid("validation_error", "message is too long", "/message", "should be at most 500 character(s)"))
		return
	}
	s.locked(c, func() reply {
		peer, found := s.handles[handle]
		switch {
		case !found:
			return c.errorf(http.StatusNotFound, "handle_not_found", "handle not found")
		case peer == c.agentID:
			return c.errorf(http.StatusConflict, "cannot_add_self", "cannot add yourself as a contact")
		case s.isContactLocked(c.agentID, peer):
			return c.errorf(http.StatusConflict, "already_contacts", "already contacts")
		}
		for _, cr := range s.contactRequests {
			if cr.Status != "pending" {
				continue
			}
			if cr.FromID == peer && cr.ToID == c.agentID {
				s.setRequestStatusLocked(cr, "approved")
				return ok(http.StatusCreated, obj{"id": cr.ID, "status": "approved"})
			}
			if cr.FromID == c.agentID && cr.ToID == peer {
				return c.errorf(http.StatusConflict, "request_pending", "a request is already pending")
			}
		}
		cr := s.newContactRequestLocked(c.agentID, peer, body.Message)
		return ok(http.StatusCreated, obj{"id": cr.ID, "status": "pending"})
	})
}

func (s *Server) removeContact(c *call) {
	var body struct {
		Handle    string `json:"handle"`
		ContactID string `json:"contact_id"`
	}
	if !c.decode(&body) {
		return
	}
	handle := strings.TrimPrefix(body.Handle, "@")
	if handle == "" && body.ContactID == "" {
		c.send(c.errorf(http.StatusBadRequest, "bad_request", "handle or contact_id is required"))
		return
	}
	s.locked(c, func() reply {
		peer := ""
		for _, ct := range s.contactsOfLocked(c.agentID) {
			if ct.id == body.ContactID || (handle != "" && s.handles[handle] == ct.peerID) {
				peer = ct.peerID
				break
			}
		}
		if peer == "" {
			return notFound("contact")
		}
		s.unlinkContactsLocked(c.agentID, peer)
		return ok(http.StatusOK, obj{"status": "removed"})
	})
}

func (s *Server) respondContactRequest(c *call) {
	var body struct {
		Action    string `json:"action"`
		Handle    string `json:"handle"`
		RequestID string `json:"request_id"`
	}
	if !c.decode(&body) {
		return
	}
	status, valid := map[string]string{"approve": "approved", "reject": "rejected", "cancel": "cancelled"}[body.Action]
	handle := strings.TrimPrefix(body.Handle, "@")
	switch {
	case !valid:
		c.send(invalid("validation_error", "invalid action", "/action", "must be approve, reject or cancel"))
		return
	case handle == "" && body.RequestID == "":
		c.send(c.errorf(http.StatusBadRequest, "bad_request", "handle or request_id is required"))
		return
	}
	s.locked(c, func() reply {
		// approve/reject answer requests received; cancel withdraws one sent.
		mine := func(cr *contactRequestState) (me, other string) {
			if body.Action == "cancel" {
				return cr.FromID, cr.ToID
			}
			return cr.ToID, cr.FromID
		}
		var match *contactRequestState
		for _, cr := range s.contactRequests {
			me, other := mine(cr)
			if me != c.agentID {
				continue
			}
			if body.RequestID != "" && cr.ID == body.RequestID {
				match = cr
				break
			}
			if body.RequestID == "" && cr.Status == "pending" && s.handles[handle] == other {
				match = cr
				break
			}
		}
		switch {
		case match == nil:
			return c.errorf(http.StatusNotFound, "not_found", "no pending request")
		case match.Status != "pending":
			return c.errorf(http.StatusConflict, "already_resolved", "request already resolved")
		}
		s.setRequestStatusLocked(match, status)
		return ok(http.StatusOK, obj{"id": match.ID, "status": status})
	})
}
