package config

import (
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// keyPath is a key as the user wrote it, one element per part: a name, bare
// or quoted as TOML would need it, or an array index such as "[2]".
type keyPath []string

func (k keyPath) child(name string) keyPath {
	return append(k[:len(k):len(k)], quoteKey(name))
}

func (k keyPath) index(i int) keyPath {
	return append(k[:len(k):len(k)], "["+strconv.Itoa(i)+"]")
}

func (k keyPath) String() string {
	var b strings.Builder
	for i, part := range k {
		if i > 0 && part[0] != '[' {
			b.WriteByte('.')
		}
		b.WriteString(part)
	}
	return b.String()
}

// quoteKey returns name as a TOML key part: bare when it can be.
func quoteKey(name string) string {
	if name == "" {
		return `""`
	}
	for i := 0; i < len(name); i++ {
		if !isBareKeyChar(name[i]) {
			return strconv.Quote(name)
		}
	}
	return name
}

func isBareKeyChar(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

// lineIndex maps every key of a document, and every element of its arrays, to
// the line it is written on.
type lineIndex map[string]int

// line returns the line of key, or of its closest parent that has one.
func (ix lineIndex) line(key keyPath) int {
	for n := len(key); n > 0; n-- {
		if line, ok := ix[key[:n].String()]; ok {
			return line
		}
	}
	return 0
}

// indexLines walks a document that go-toml accepted. Tables are recorded at
// their header, keys at their key, array elements at their value, and
// [[array]] entries are numbered in order of appearance.
func indexLines(data []byte) lineIndex {
	ix := &indexer{lines: lineIndex{}, arrays: map[string]int{}}
	for i, c := range data {
		if c == '\n' {
			ix.starts = append(ix.starts, i+1)
		}
	}
	var p unstable.Parser
	p.Reset(data)
	var table keyPath
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = ix.header(e)
		case unstable.KeyValue:
			ix.keyValue(table, e)
		}
	}
	return ix.lines
}

type indexer struct {
	lines  lineIndex
	arrays map[string]int // entries of each [[array]] so far, by key
	starts []int          // offset of the first byte of each line after the first
}

// lineAt returns the 1-based line of a byte offset.
func (ix *indexer) lineAt(offset uint32) int {
	return 1 + sort.SearchInts(ix.starts, int(offset)+1)
}

// record sets the line of key and of any parent not seen before.
func (ix *indexer) record(key keyPath, line int) {
	for n := 1; n <= len(key); n++ {
		s := key[:n].String()
		if _, ok := ix.lines[s]; !ok {
			ix.lines[s] = line
		}
	}
}

// header records a [table] or [[array]] header and returns the key of the
// table it opens.
func (ix *indexer) header(e *unstable.Node) keyPath {
	var key keyPath
	line := 0
	it := e.Key()
	for it.Next() {
		n := it.Node()
		if line == 0 {
			line = ix.lineAt(n.Raw.Offset)
		}
		key = key.child(string(n.Data))
		s := key.String()
		switch {
		case it.IsLast() && e.Kind == unstable.ArrayTable:
			i := ix.arrays[s]
			ix.arrays[s] = i + 1
			ix.record(key, line)
			key = key.index(i)
		case ix.arrays[s] > 0:
			key = key.index(ix.arrays[s] - 1)
		}
	}
	ix.record(key, line)
	return key
}

func (ix *indexer) keyValue(table keyPath, e *unstable.Node) {
	key := table
	line := 0
	it := e.Key()
	for it.Next() {
		n := it.Node()
		if line == 0 {
			line = ix.lineAt(n.Raw.Offset)
		}
		key = key.child(string(n.Data))
	}
	ix.record(key, line)
	ix.value(key, e.Value(), line)
}

// value records the keys of an inline table and the elements of an array.
func (ix *indexer) value(key keyPath, v *unstable.Node, line int) {
	switch v.Kind {
	case unstable.InlineTable:
		it := v.Children()
		for it.Next() {
			if kv := it.Node(); kv.Kind == unstable.KeyValue {
				ix.keyValue(key, kv)
			}
		}
	case unstable.Array:
		i := 0
		it := v.Children()
		for it.Next() {
			n := it.Node()
			if n.Kind == unstable.Comment {
				continue
			}
			elemLine := line
			if n.Kind != unstable.Array { // arrays carry no position of their own
				elemLine = ix.lineAt(n.Raw.Offset)
			}
			elem := key.index(i)
			ix.record(elem, elemLine)
			ix.value(elem, n, elemLine)
			i++
		}
	}
}
