package redisproc

import (
	"os"
	"strings"
	"testing"
)

// TestStartOnlyOwnServer: a server started on a port that another
// redis-server holds is not taken for started, though PING is answered
// there.
func TestStartOnlyOwnServer(t *testing.T) {
	path, err := Path()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err) // .ci/run installs redis-server
		}
		t.Skip(err)
	}
	opts := Options{Dir: t.TempDir()}
	a, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Stop)
	if pid, err := serverPID(a.Addr()); err != nil || pid != a.PID() {
		t.Fatalf("serverPID = %d, %v; want %d", pid, err, a.PID())
	}

	b := &Proc{opts: opts, path: path, port: a.Port()}
	err = b.start()
	if err == nil {
		b.Stop()
		t.Fatal("a second server on a taken port was reported started")
	}
	if !strings.Contains(err.Error(), "another redis-server") {
		t.Errorf("error %q, want one naming another redis-server", err)
	}
	if err := Ping(a.Addr()); err != nil {
		t.Errorf("the first server stopped answering: %v", err)
	}
}
