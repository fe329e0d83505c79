package fakeupstream

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
)

// maxWriteBody bounds PUT/POST bodies; a user object is well under 4 KiB.
const maxWriteBody = 1 << 20

var (
	badBodyBody  = []byte(`{"error":"request body must be a JSON object"}`)
	tooLargeBody = []byte(`{"error":"request body too large"}`)
)

// serveUpdate merges r's JSON object into tenant's user id and answers 200
// with the new body (404 for an unknown id, 400 for a bad body).
func (h *Handler) serveUpdate(w http.ResponseWriter, r *http.Request, tenant, id string) {
	patch, ok := readPatch(w, r)
	if !ok {
		return
	}
	h.mu.Lock()
	old, found := h.users[tenant][id]
	if !found && h.isLazySeed(id) {
		old, found = newUser(tenant, id), true // seeded, not built yet (Options.Lazy)
	}
	if !found {
		h.mu.Unlock()
		writeJSON(w, http.StatusNotFound, userNotFoundBody)
		return
	}
	// Copy on write: readers may still be writing old.body to a client.
	u := old.clone()
	err := u.merge(patch)
	if err == nil {
		h.users[tenant][id] = u
	}
	h.mu.Unlock()
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, u.body)
}

// serveCreate creates tenant's next user, seeded like the others and then
// merged with r's JSON object, and answers 201 with its body and a Location.
func (h *Handler) serveCreate(w http.ResponseWriter, r *http.Request, tenant string) {
	patch, ok := readPatch(w, r)
	if !ok {
		return
	}
	h.mu.Lock()
	id := strconv.Itoa(h.nextID[tenant])
	u := newUser(tenant, id)
	err := u.merge(patch)
	if err == nil {
		h.users[tenant][id] = u
		h.nextID[tenant]++
	}
	h.mu.Unlock()
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	w.Header().Set("Location", usersPath+"/"+id)
	writeJSON(w, http.StatusCreated, u.body)
}

// readPatch decodes r's body as a JSON object, answering 400/413 itself
// when it cannot. An empty body is an empty object.
func readPatch(w http.ResponseWriter, r *http.Request) (map[string]json.RawMessage, bool) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWriteBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeJSON(w, http.StatusRequestEntityTooLarge, tooLargeBody)
		} else {
			writeJSON(w, http.StatusBadRequest, badBodyBody)
		}
		return nil, false
	}
	patch := map[string]json.RawMessage{}
	if len(data) == 0 {
		return patch, true
	}
	if err := json.Unmarshal(data, &patch); err != nil || patch == nil {
		writeJSON(w, http.StatusBadRequest, badBodyBody)
		return nil, false
	}
	return patch, true
}

// writeError answers status with {"error":msg}.
func writeError(w http.ResponseWriter, status int, msg string) {
	body, _ := json.Marshal(map[string]string{"error": msg}) // cannot fail
	writeJSON(w, status, body)
}
