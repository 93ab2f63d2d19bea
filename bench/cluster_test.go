//go:build linux

package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// sseServer serves the events seqs, with the ids id(seq), then holds the
// stream open until the client goes.
func sseServer(t *testing.T, seqs []int, id func(int) string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, ": hello\n\n")
		for _, seq := range seqs {
			fmt.Fprintf(w, "id: %s\ndata: {\"seq\":%d,\"sent\":1,\"ch\":0}\n\n", id(seq), seq)
		}
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestCompareIDs(t *testing.T) {
	same := func(seq int) string { return fmt.Sprintf("1700000000000-%d", seq) }
	a := sseServer(t, []int{1, 2, 3, 4}, same)
	b := sseServer(t, []int{2, 3, 4, 5}, same)
	c := sseServer(t, []int{3, 4, 5}, func(seq int) string {
		if seq == 4 {
			return "other"
		}
		return same(seq)
	})
	compared, differ, example, err := compareIDs([]string{a, b, c}, "/feed/0", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if compared != 2 || differ != 1 {
		t.Errorf("compared %d, differ %d; want 2 and 1", compared, differ)
	}
	if want := "event 3 has id 1700000000000-3"; example != want {
		t.Errorf("example %q, want %q", example, want)
	}
}
