package config

import (
	"strconv"
	"strings"
)

// Problem is one thing wrong with a file.
type Problem struct {
	File string // the file, as given to Load or Parse
	Line int    // 1-based; 0 when unknown
	// Key is the dotted key as the user wrote it: "server.max_clients",
	// "channel[0].upstream.ping_interval", "auth.tokens[1]". Array entries,
	// [[channel]] ones included, are numbered from 0 in file order. Empty for
	// a problem with the document itself.
	Key string
	Msg string
}

// String returns the problem as one line: "ws2sse.toml:7: server.max_clent: unknown key".
// The line is left out when it is 0, the key when it is empty.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(p.Line))
	}
	b.WriteString(": ")
	if p.Key != "" {
		b.WriteString(p.Key)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error is every problem found in a file, in line order.
type Error struct {
	Problems []Problem
}

// Error returns one line per problem.
func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}
