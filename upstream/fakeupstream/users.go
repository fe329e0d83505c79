package fakeupstream

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"maps"
	"strconv"
	"strings"
)

// scalarFields are the seed page's string fields, in the page's order; the
// JSON object lists them in this order, then desks, roles and groups.
var scalarFields = [...]string{
	"id", "username", "email", "registration_password", "is_active",
	"is_clockedin", "sip_uri", "auto_dial", "is_deleted", "use_extended_ip_acl",
	"user_route_caller_id", "timezone_id", "use_webrtc", "first_name",
	"last_name", "virtual_extension", "default_language", "max_session_time",
	"max_concurrent_sessions", "twofa_type", "member_all_desks",
}

// isScalarField reports whether name is one of scalarFields.
func isScalarField(name string) bool {
	for _, f := range scalarFields {
		if f == name {
			return true
		}
	}
	return false
}

// Small pools the generator picks from. Names are common and fictional in
// combination; ids in desks/roles/groups look like database keys.
var (
	firstNames = [...]string{"Olivia", "Liam", "Emma", "Noah", "Sofia", "Lucas", "Mia", "Mateo", "Chloe", "Elias", "Hannah", "Adam"}
	lastNames  = [...]string{"Martin", "Garcia", "Schmidt", "Rossi", "Novak", "Silva", "Dubois", "Kowalski", "Jensen", "Cohen", "Ivanova", "Murphy"}
	timezones  = [...]string{"1", "23", "35", "44", "57", "102", "181"}
	languages  = [...]string{"en", "en", "de", "fr", "es", "it", "pt"}
	twofa      = [...]string{"none", "none", "email", "totp"}
	sessions   = [...]string{"0", "14400", "28800"}
	desks      = [...]idName{{"3", "Sales EU"}, {"4", "Sales LATAM"}, {"7", "Retention"}, {"9", "Support"}, {"12", "VIP"}}
	roles      = [...]idName{{"2", "Agent"}, {"2", "Agent"}, {"2", "Agent"}, {"5", "Supervisor"}, {"1", "Administrator"}}
	groups     = [...]idName{{"11", "Morning shift"}, {"12", "Evening shift"}, {"20", "English"}, {"21", "German"}, {"30", "Trainees"}}
)

// idName is one desk or group as the API lists it.
type idName struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// user is one tenant's user. Its body is computed once per change and never
// mutated afterwards, so it may be written outside the lock that guards the
// map holding the user.
type user struct {
	fields map[string]string // scalarFields → value
	desks  []idName
	roles  map[string]string // role id → role name
	groups []idName
	body   []byte // the exact GET response body
}

// newUser returns the deterministic seeded user id of tenant.
func newUser(tenant, id string) *user {
	hf := fnv.New64a()
	hf.Write([]byte(tenant))
	hf.Write([]byte{0})
	hf.Write([]byte(id))
	seed := hf.Sum64()
	// pick consumes the seed a few bits at a time so each field varies
	// independently of the others.
	pick := func(n int) int {
		v := int(seed % uint64(n))
		seed = seed/uint64(n) ^ seed*0x9E3779B97F4A7C15
		return v
	}
	flag := func(oneIn int) string {
		if pick(oneIn) == 0 {
			return "1"
		}
		return "0"
	}
	first := firstNames[pick(len(firstNames))]
	last := lastNames[pick(len(lastNames))]
	local := strings.ToLower(first) + "." + strings.ToLower(last)
	ext := "1000" + id
	u := &user{
		fields: map[string]string{
			"id":                      id,
			"username":                local + id,
			"email":                   local + "@" + tenant + ".example",
			"registration_password":   fmt.Sprintf("rp%012x", pick(1<<48)),
			"is_active":               notFlag(flag(10)),
			"is_clockedin":            flag(2),
			"sip_uri":                 "sip:" + ext + "@" + tenant + ".sip.example",
			"auto_dial":               flag(3),
			"is_deleted":              "0",
			"use_extended_ip_acl":     flag(5),
			"user_route_caller_id":    fmt.Sprintf("+1555%07d", pick(10_000_000)),
			"timezone_id":             timezones[pick(len(timezones))],
			"use_webrtc":              notFlag(flag(4)),
			"first_name":              first,
			"last_name":               last,
			"virtual_extension":       ext,
			"default_language":        languages[pick(len(languages))],
			"max_session_time":        sessions[pick(len(sessions))],
			"max_concurrent_sessions": strconv.Itoa(1 + pick(3)),
			"twofa_type":              twofa[pick(len(twofa))],
			"member_all_desks":        flag(6),
		},
		desks:  pickDistinct(desks[:], 1+pick(2), pick),
		groups: pickDistinct(groups[:], pick(3), pick),
		roles:  map[string]string{},
	}
	role := roles[pick(len(roles))]
	u.roles[role.ID] = role.Name
	u.encode()
	return u
}

func notFlag(s string) string {
	if s == "1" {
		return "0"
	}
	return "1"
}

// pickDistinct returns n distinct entries of pool, in pool order.
func pickDistinct(pool []idName, n int, pick func(int) int) []idName {
	chosen := make([]bool, len(pool))
	for range n {
		chosen[pick(len(pool))] = true
	}
	out := []idName{} // never null in JSON: the API documents arrays
	for i, c := range chosen {
		if c {
			out = append(out, pool[i])
		}
	}
	return out
}

// clone returns a deep copy of u (the body is shared: it is immutable).
func (u *user) clone() *user {
	return &user{
		fields: maps.Clone(u.fields),
		desks:  u.desks,
		roles:  u.roles,
		groups: u.groups,
		body:   u.body,
	}
}

// encode computes u.body: a JSON array holding one object with the 24
// fields in the seed page's order.
func (u *user) encode() {
	var b bytes.Buffer
	b.WriteString("[{")
	for i, name := range scalarFields {
		if i > 0 {
			b.WriteByte(',')
		}
		writeMember(&b, name, u.fields[name])
	}
	b.WriteByte(',')
	writeMember(&b, "desks", u.desks)
	b.WriteByte(',')
	writeMember(&b, "roles", u.roles) // json sorts map keys: stable
	b.WriteByte(',')
	writeMember(&b, "groups", u.groups)
	b.WriteString("}]")
	u.body = b.Bytes()
}

// writeMember writes `"name":value` to b. Marshalling strings, maps and
// slices of idName cannot fail.
func writeMember(b *bytes.Buffer, name string, v any) {
	k, _ := json.Marshal(name)
	val, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("fakeupstream: encoding %s: %v", name, err))
	}
	b.Write(k)
	b.WriteByte(':')
	b.Write(val)
}

// merge applies the string members of a PUT/POST body to u (all but id,
// which is the path's) and re-encodes it. Members that are not seed fields
// are ignored, like an API that ignores unknown input; a seed field whose
// value is not a string is an error.
func (u *user) merge(patch map[string]json.RawMessage) error {
	for name, raw := range patch {
		if name == "id" || !isScalarField(name) {
			continue
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf("field %s must be a string", name)
		}
		u.fields[name] = s
	}
	u.encode()
	return nil
}
