package config

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	toml "github.com/pelletier/go-toml/v2"
)

// parser turns a decoded document into a Config, collecting problems.
type parser struct {
	file      string
	lines     lineIndex
	lookupEnv func(string) (string, bool)
	problems  []Problem
}

// add reports a problem with key, at the line key is written on.
func (p *parser) add(key keyPath, format string, args ...any) {
	p.problems = append(p.problems, Problem{
		File: p.file,
		Line: p.lines.line(key),
		Key:  key.String(),
		Msg:  fmt.Sprintf(format, args...),
	})
}

// table is one TOML table of the document. Its readers report what is wrong
// with a value, set their destination only from a valid value, and return
// whether they did.
type table struct {
	p    *parser
	key  keyPath
	m    map[string]any
	used map[string]bool // keys read so far; the rest are unknown
}

func (p *parser) newTable(key keyPath, m map[string]any) *table {
	return &table{p: p, key: key, m: m, used: map[string]bool{}}
}

// asTable returns v as a table at key, or reports that it is not one.
func (p *parser) asTable(key keyPath, v any) (*table, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		p.add(key, "expected a table, got %s", typeName(v))
		return nil, false
	}
	return p.newTable(key, m), true
}

// take marks name as known and returns its value, if present.
func (t *table) take(name string) (any, keyPath, bool) {
	key := t.key.child(name)
	v, ok := t.m[name]
	if ok {
		t.used[name] = true
	}
	return v, key, ok
}

// has reports whether name is written in this table.
func (t *table) has(name string) bool {
	_, ok := t.m[name]
	return ok
}

// blame returns the key to report a problem between two keys on: the first
// one written in this table.
func (t *table) blame(names ...string) keyPath {
	for _, name := range names {
		if t.has(name) {
			return t.key.child(name)
		}
	}
	return t.key.child(names[0])
}

// sub returns the table at name; nil when absent or not a table.
func (t *table) sub(name string) *table {
	v, key, ok := t.take(name)
	if !ok {
		return nil
	}
	sub, _ := t.p.asTable(key, v)
	return sub
}

// done reports every key of the table that was not read.
func (t *table) done() {
	var unknown []string
	for name := range t.m {
		if !t.used[name] {
			unknown = append(unknown, name)
		}
	}
	slices.Sort(unknown)
	for _, name := range unknown {
		t.p.add(t.key.child(name), "unknown key")
	}
}

// text is a string value after ${NAME} expansion.
type text struct {
	val string // expanded
	raw string // as written
	env bool   // val holds the value of an environment variable
}

// String quotes the value as written, so that a message never shows what came
// from the environment.
func (s text) String() string {
	if s.env {
		return strconv.Quote(s.raw) + " (after expansion)"
	}
	return strconv.Quote(s.raw)
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expand replaces every ${NAME} in s. It reports each variable that is not
// set and then returns false.
func (p *parser) expand(key keyPath, s string) (text, bool) {
	t := text{val: s, raw: s}
	if !strings.Contains(s, "${") {
		return t, true
	}
	ok := true
	var unset []string
	t.val = envRef.ReplaceAllStringFunc(s, func(ref string) string {
		name := ref[2 : len(ref)-1]
		v, set := p.lookupEnv(name)
		if !set {
			if !slices.Contains(unset, name) {
				unset = append(unset, name)
				p.add(key, "environment variable %s is not set", name)
			}
			ok = false
			return ""
		}
		t.env = true
		return v
	})
	return t, ok
}

func (p *parser) asText(key keyPath, v any) (text, bool) {
	s, ok := v.(string)
	if !ok {
		p.add(key, "expected a string, got %s", typeName(v))
		return text{}, false
	}
	return p.expand(key, s)
}

// text reads a string.
func (t *table) text(name string) (text, keyPath, bool) {
	v, key, ok := t.take(name)
	if !ok {
		return text{}, key, false
	}
	s, ok := t.p.asText(key, v)
	return s, key, ok
}

func (t *table) str(name string, dst *string) bool {
	s, _, ok := t.text(name)
	if ok {
		*dst = s.val
	}
	return ok
}

// texts reads an array of strings; it reports every bad element and returns
// false if there was one.
func (t *table) texts(name string) ([]text, keyPath, bool) {
	v, key, present := t.take(name)
	if !present {
		return nil, key, false
	}
	arr, ok := v.([]any)
	if !ok {
		t.p.add(key, "expected an array of strings, got %s", typeName(v))
		return nil, key, false
	}
	out := make([]text, 0, len(arr))
	ok = true
	for i, elem := range arr {
		s, good := t.p.asText(key.index(i), elem)
		ok = ok && good
		out = append(out, s)
	}
	return out, key, ok
}

// oneOf reads a string that must be one of allowed.
func (t *table) oneOf(name string, dst *string, allowed ...string) bool {
	s, key, ok := t.text(name)
	if !ok {
		return false
	}
	if !slices.Contains(allowed, s.val) {
		quoted := make([]string, len(allowed))
		for i, a := range allowed {
			quoted[i] = strconv.Quote(a)
		}
		t.p.add(key, "must be %s, not %s", strings.Join(quoted, " or "), s)
		return false
	}
	*dst = s.val
	return true
}

func (t *table) boolean(name string, dst *bool) bool {
	v, key, ok := t.take(name)
	if !ok {
		return false
	}
	b, ok := v.(bool)
	if !ok {
		t.p.add(key, "expected a boolean (true or false), got %s", typeName(v))
		return false
	}
	*dst = b
	return true
}

// integer reads an integer of at least min.
func (t *table) integer(name string, dst *int, min int) bool {
	v, key, ok := t.take(name)
	if !ok {
		return false
	}
	n, ok := v.(int64)
	switch {
	case !ok:
		t.p.add(key, "expected an integer, got %s", typeName(v))
	case n < int64(min) && min == 0:
		t.p.add(key, "must not be negative, got %d", n)
	case n < int64(min):
		t.p.add(key, "must be at least %d, got %d", min, n)
	case int64(int(n)) != n:
		t.p.add(key, "%d is too large", n)
	default:
		*dst = int(n)
		return true
	}
	return false
}

// duration reads a Go duration string that is not negative and, when
// positive is true, not 0 either.
func (t *table) duration(name string, dst *time.Duration, positive bool) bool {
	v, key, ok := t.take(name)
	if !ok {
		return false
	}
	if _, isString := v.(string); !isString {
		t.p.add(key, `expected a duration string like "15s", got %s`, typeName(v))
		return false
	}
	s, ok := t.p.asText(key, v)
	if !ok {
		return false
	}
	d, err := time.ParseDuration(s.val)
	switch {
	case err != nil:
		t.p.add(key, `bad duration %s: expected a number and a unit (ns, us, ms, s, m, h), like "15s"`, s)
	case d < 0:
		t.p.add(key, "bad duration %s: must not be negative", s)
	case d == 0 && positive:
		t.p.add(key, "must be more than 0s")
	default:
		*dst = d
		return true
	}
	return false
}

var sizeRE = regexp.MustCompile(`^([0-9]+) ?(B|KiB|MiB|GiB)?$`)

// size reads a size in bytes, more than 0: an integer, or a string with a
// unit ("512KiB", "1MiB").
func (t *table) size(name string, dst *int64) bool {
	v, key, ok := t.take(name)
	if !ok {
		return false
	}
	var n int64
	switch v := v.(type) {
	case int64:
		n = v
	case string:
		s, ok := t.p.expand(key, v)
		if !ok {
			return false
		}
		n, ok = parseSize(s.val)
		if !ok {
			t.p.add(key, `bad size %s: expected a number of bytes with an optional unit B, KiB, MiB or GiB, like "1MiB"`, s)
			return false
		}
	default:
		t.p.add(key, `expected a size (a number of bytes, or a string like "1MiB"), got %s`, typeName(v))
		return false
	}
	if n <= 0 {
		t.p.add(key, "must be more than 0 bytes")
		return false
	}
	*dst = n
	return true
}

func parseSize(s string) (int64, bool) {
	m := sizeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, false
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, false
	}
	unit := map[string]int64{"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[m[2]]
	if n > (1<<63-1)/unit {
		return 0, false
	}
	return n * unit, true
}

// typeName names the TOML type of a decoded value, with its article.
func typeName(v any) string {
	switch v := v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case time.Time, toml.LocalDateTime:
		return "a date-time"
	case toml.LocalDate:
		return "a date"
	case toml.LocalTime:
		return "a time"
	case map[string]any:
		return "a table"
	case []any:
		if len(v) > 0 {
			if _, ok := v[0].(map[string]any); ok {
				return "an array of tables"
			}
		}
		return "an array"
	default:
		return "a value of another kind"
	}
}
