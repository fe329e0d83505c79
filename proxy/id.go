package proxy

// validID is the default user id rule, ^[A-Za-z0-9_-]{1,64}$, as a byte loop:
// it runs on every request, before any I/O, and needs no regexp.
func validID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}
