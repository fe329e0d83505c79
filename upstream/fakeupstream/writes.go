package fakeupstream

import (
	"encoding/json"
	"errors"
	"io"
	"maps"
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

// serveDelete soft-deletes tenant's user id, as the API does (is_deleted
// "1"), and answers 200 with the new body (404 for an unknown id).
func (h *Handler) serveDelete(w http.ResponseWriter, tenant, id string) {
	h.mu.Lock()
	old, found := h.users[tenant][id]
	if !found && h.isLazySeed(id) {
		old, found = newUser(tenant, id), true
	}
	if !found {
		h.mu.Unlock()
		writeJSON(w, http.StatusNotFound, userNotFoundBody)
		return
	}
	u := old.clone() // copy on write, as in serveUpdate
	u.fields["is_deleted"] = "1"
	u.encode()
	h.users[tenant][id] = u
	h.mu.Unlock()
	writeJSON(w, http.StatusOK, u.body)
}

// serveRole renames role roleID to the JSON body's "name" in every user of
// tenant that has it (built users only: a lazily seeded user not yet read
// keeps its seed), and answers 200 with how many users changed.
func (h *Handler) serveRole(w http.ResponseWriter, r *http.Request, tenant, roleID string) {
	patch, ok := readPatch(w, r)
	if !ok {
		return
	}
	var name string
	if err := json.Unmarshal(patch["name"], &name); err != nil || name == "" {
		writeError(w, http.StatusBadRequest, "body must be {\"name\":\"…\"}")
		return
	}
	h.mu.Lock()
	changed := 0
	for id, old := range h.users[tenant] {
		if _, has := old.roles[roleID]; !has {
			continue
		}
		u := old.clone()
		u.roles = maps.Clone(old.roles) // clone shares it
		u.roles[roleID] = name
		u.encode()
		h.users[tenant][id] = u
		changed++
	}
	h.mu.Unlock()
	writeJSON(w, http.StatusOK, []byte(`{"id":`+strconv.Quote(roleID)+`,"name":`+strconv.Quote(name)+`,"users_changed":`+strconv.Itoa(changed)+`}`))
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
