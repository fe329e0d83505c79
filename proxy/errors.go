package proxy

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// jsonError is the proxy's own error body, {"error":"…","status":N}, with
// its trailing newline.
func jsonError(status int, msg string) []byte {
	body, _ := json.Marshal(struct {
		Error  string `json:"error"`
		Status int    `json:"status"`
	}{msg, status}) // cannot fail: a string and an int
	return append(body, '\n')
}

// writeJSONError writes the proxy's own error answer.
func writeJSONError(w http.ResponseWriter, status int, msg string) {
	body := jsonError(status, msg)
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	hdr.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(body)
}

// refuseID answers a user id the id rule refuses: 400, before any I/O.
func refuseID(w http.ResponseWriter) {
	w.Header()["Cache-Status"] = statusInvalidID
	writeJSONError(w, http.StatusBadRequest, msgInvalidID)
}

// writeJSON writes v as a JSON 200.
func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
