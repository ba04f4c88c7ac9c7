// Package redact says which request fields hold credentials and replaces
// their values, wherever a request travels into a record, a message or an
// argument list: headers (Authorization, Cookie, X-Api-Key, X-Auth-Token,
// ...), query parameters (token, access_token, api_key, key, sig, ...),
// the password of a URL's user info, and the same inside free text (an
// error message quoting a URL).
//
// A name is a credential when it is one of the standard credential headers,
// when one of its words (split at '-', '_', '.' and the like) is a
// credential word (token, key, sig, secret, password, auth, session, ...),
// or when it contains token, secret, passw, apikey, credential or sessionid
// anywhere (accessToken, jsessionid). Names given to Also (--redact) are credentials too, as
// headers and as query parameters. Redacting more than needed costs a
// replay a value; redacting less leaks it, so the rule leans wide.
package redact

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
)

// Marker replaces every redacted value (the same marker recordings and
// stored arguments always used).
const Marker = "[redacted]"

// standardHeaders are credential headers by name.
var standardHeaders = map[string]bool{
	"authorization": true, "proxy-authorization": true, "cookie": true, "set-cookie": true,
}

// credentialWords are the words that make a name a credential.
var credentialWords = map[string]bool{
	"token": true, "key": true, "apikey": true, "sig": true, "signature": true, "secret": true,
	"password": true, "passwd": true, "pwd": true, "pass": true, "auth": true, "authorization": true,
	"session": true, "sessionid": true, "credential": true, "credentials": true, "jwt": true,
	"bearer": true, "cookie": true,
}

// credentialParts are substrings that make a name a credential wherever
// they appear (camelCase names are one word).
var credentialParts = []string{"token", "secret", "passw", "apikey", "api_key", "credential", "sessionid"}

var (
	mu    sync.RWMutex
	extra = map[string]bool{} // lower-cased names given to Also
)

// Also makes names (headers or query parameters, any case) credentials too,
// for the whole process: the --redact flag. Blank names are ignored.
func Also(names ...string) {
	mu.Lock()
	defer mu.Unlock()
	for _, n := range names {
		if n = strings.ToLower(strings.TrimSpace(n)); n != "" {
			extra[n] = true
		}
	}
}

func isExtra(lower string) bool {
	mu.RLock()
	defer mu.RUnlock()
	return extra[lower]
}

// Name reports whether a header or query parameter name holds a
// credential.
func Name(name string) bool {
	n := strings.ToLower(strings.TrimSpace(name))
	if n == "" {
		return false
	}
	if standardHeaders[n] || isExtra(n) {
		return true
	}
	for _, p := range credentialParts {
		if strings.Contains(n, p) {
			return true
		}
	}
	for _, w := range strings.FieldsFunc(n, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9') }) {
		if credentialWords[w] {
			return true
		}
	}
	return false
}

// Header reports whether a header's value is a credential.
func Header(name string) bool { return Name(name) }

// Headers returns h with every credential header's values replaced by
// Marker (h itself when it holds none), and the names it redacted.
func Headers(h http.Header) (http.Header, []string) {
	var names []string
	for k := range h {
		if Header(k) {
			names = append(names, k)
		}
	}
	if len(names) == 0 {
		return h, nil
	}
	out := h.Clone()
	for _, k := range names {
		vs := out[k]
		for i := range vs {
			vs[i] = Marker
		}
	}
	return out, names
}

// Query returns a raw query with the value of every credential parameter
// replaced by Marker; the rest is kept byte for byte.
func Query(raw string) string {
	if raw == "" || !strings.Contains(raw, "=") {
		return raw
	}
	var b strings.Builder
	changed := false
	for i, part := range strings.Split(raw, "&") {
		if i > 0 {
			b.WriteByte('&')
		}
		name, _, ok := strings.Cut(part, "=")
		if ok && paramName(name) {
			b.WriteString(name)
			b.WriteString("=" + Marker)
			changed = true
			continue
		}
		b.WriteString(part)
	}
	if !changed {
		return raw
	}
	return b.String()
}

// paramName reads a query parameter's (escaped) name.
func paramName(escaped string) bool {
	n, err := url.QueryUnescape(escaped)
	if err != nil {
		n = escaped
	}
	return Name(n)
}

// URL returns raw with the password of its user info and the values of
// its credential query parameters replaced. Text that does not parse as a
// URL goes through Text.
func URL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return Text(raw)
	}
	changed := false
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), Marker)
			changed = true
		}
	}
	if q := Query(u.RawQuery); q != u.RawQuery {
		u.RawQuery = q
		changed = true
	}
	if !changed {
		return Text(raw) // a path parameter (;jsessionid=...) still goes
	}
	return Text(u.String())
}

// Text replaces credentials inside free text: the values of credential
// parameters (name=value after '?', '&', ';', a space, a quote or the
// start), passwords in URLs' user info (scheme://user:password@), and the
// credential after an authorization scheme (Bearer xyz, Basic xyz), as a
// server quoting a request's Authorization in an error shows it.
func Text(s string) string {
	return schemes(params(s))
}

// authSchemes are the authorization schemes whose next word is a
// credential, lower-cased with the space after them. A word shorter than
// minCredential is taken for prose ("a bearer of news").
var authSchemes = []string{"bearer ", "basic "}

const minCredential = 8

// schemes replaces the word after an authorization scheme.
func schemes(s string) string {
	lower := ""
	for _, sc := range authSchemes {
		if len(s) < len(sc) {
			continue
		}
		if lower == "" {
			lower = strings.ToLower(s)
		}
		for from := 0; ; {
			i := strings.Index(lower[from:], sc)
			if i < 0 {
				break
			}
			i += from
			start := i + len(sc)
			end := start
			for end < len(s) && tokenChar(s[end]) {
				end++
			}
			from = start
			if (i > 0 && isLetter(lower[i-1])) || end-start < minCredential || s[start:end] == Marker {
				continue
			}
			s = s[:start] + Marker + s[end:]
			lower = lower[:start] + Marker + lower[end:]
			from = start + len(Marker)
		}
	}
	return s
}

// tokenChar reports whether c may be part of an authorization credential
// (RFC 7235 token68).
func tokenChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' || c == '='
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' }

// params replaces the values of credential parameters and URL passwords.
func params(s string) string {
	if !strings.ContainsAny(s, "=@") {
		return s
	}
	var b strings.Builder
	last := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '=':
			start := i
			for start > 0 && !nameStop(s[start-1]) {
				start--
			}
			if start == i || (start > 0 && !nameLead(s[start-1])) || !paramName(s[start:i]) {
				continue
			}
			end := i + 1
			for end < len(s) && !valueStop(s[end]) {
				end++
			}
			if s[i+1:end] == Marker || end == i+1 {
				continue
			}
			b.WriteString(s[last : i+1])
			b.WriteString(Marker)
			last, i = end, end-1
		case '@':
			// scheme://user:password@host
			j := strings.LastIndex(s[last:i], "://")
			if j < 0 {
				continue
			}
			j += last + 3
			info := s[j:i]
			colon := strings.IndexByte(info, ':')
			if colon < 0 || strings.ContainsAny(info, "/ \t\"'") || info[colon+1:] == Marker {
				continue
			}
			b.WriteString(s[last : j+colon+1])
			b.WriteString(Marker)
			last = i
		}
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// nameStop ends a parameter name going left.
func nameStop(c byte) bool {
	return c == '?' || c == '&' || c == ';' || c == ' ' || c == '\t' || c == '\n' || c == '"' || c == '\'' ||
		c == '(' || c == ',' || c == '/' || c == '=' || c == '<' || c == '>' || c == '`'
}

// nameLead are the characters a parameter name may follow.
func nameLead(c byte) bool {
	return c == '?' || c == '&' || c == ';' || c == ' ' || c == '\t' || c == '\n' || c == '"' || c == '\'' || c == '(' || c == ',' || c == '`'
}

// valueStop ends a parameter value.
func valueStop(c byte) bool {
	return c == '&' || c == ';' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '"' || c == '\'' ||
		c == '#' || c == '<' || c == '>' || c == ')' || c == ',' || c == '`'
}
