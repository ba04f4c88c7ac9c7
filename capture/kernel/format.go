package kernel

import (
	"fmt"
	"strings"
)

// eventFormat is what a tracepoint's `format` file says: its fields and,
// for fields printed with __print_symbolic, the names the kernel prints.
type eventFormat struct {
	Name   string
	Fields map[string]bool
	// Symbols maps a field to the names __print_symbolic prints for it, in
	// the order of the print fmt.
	Symbols map[string][]string
}

// parseFormat reads a tracepoint's format file.
func parseFormat(text string) (eventFormat, error) {
	f := eventFormat{Fields: map[string]bool{}, Symbols: map[string][]string{}}
	var printFmt string
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "name:"):
			f.Name = strings.TrimSpace(strings.TrimPrefix(line, "name:"))
		case strings.HasPrefix(line, "field:"):
			// "field:const void * skaddr;	offset:16;	size:8;	signed:0;"
			decl, _, _ := strings.Cut(strings.TrimPrefix(line, "field:"), ";")
			decl = strings.TrimSpace(decl)
			if i := strings.IndexByte(decl, '['); i >= 0 {
				decl = decl[:i]
			}
			if i := strings.LastIndexAny(decl, " *"); i >= 0 {
				decl = decl[i+1:]
			}
			if decl != "" {
				f.Fields[decl] = true
			}
		case strings.HasPrefix(line, "print fmt:"):
			printFmt = line
		}
	}
	if f.Name == "" || len(f.Fields) == 0 {
		return f, fmt.Errorf("not a tracepoint format file")
	}
	const marker = "__print_symbolic(REC->"
	for rest := printFmt; ; {
		i := strings.Index(rest, marker)
		if i < 0 {
			break
		}
		rest = rest[i+len(marker):]
		field, after, ok := strings.Cut(rest, ",")
		if !ok {
			break
		}
		names, tail := symbolicNames(after)
		f.Symbols[strings.TrimSpace(field)] = append(f.Symbols[strings.TrimSpace(field)], names...)
		rest = tail
	}
	return f, nil
}

// symbolicNames collects the quoted names of one __print_symbolic list
// ("{ 0, \"NOT_SPECIFIED\" }, ...)") up to its closing parenthesis, and
// returns what follows.
func symbolicNames(s string) ([]string, string) {
	var names []string
	depth := 1
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return names, s[i+1:]
			}
		case '"':
			j := strings.IndexByte(s[i+1:], '"')
			if j < 0 {
				return names, ""
			}
			names = append(names, s[i+1:i+1+j])
			i += j + 1
		}
	}
	return names, ""
}
