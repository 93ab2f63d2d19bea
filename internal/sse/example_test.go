package sse_test

import (
	"fmt"
	"time"

	"github.com/ws2sse/ws2sse/internal/sse"
)

func ExampleAppendEvent() {
	var buf []byte
	buf = sse.AppendRetry(buf, 2*time.Second)
	buf = sse.AppendEvent(buf, "1700000000000-0", "tick", []byte("line one\r\nline two"))
	buf = sse.AppendEvent(buf, "1700000000000-1", "message", []byte(" bad \xff byte"))
	fmt.Printf("%s", buf)
	// Output:
	// retry: 2000
	//
	// id: 1700000000000-0
	// event: tick
	// data: line one
	// data: line two
	//
	// id: 1700000000000-1
	// data:  bad � byte
}

func ExampleParser() {
	stream := sse.AppendEvent(nil, "1", "tick", []byte("a\nb"))
	stream = sse.AppendComment(stream, "heartbeat")
	stream = sse.AppendEvent(stream, "", "", []byte("c"))
	evs, _ := sse.ParseAll(stream)
	for _, ev := range evs {
		fmt.Printf("id=%s name=%s data=%q\n", ev.ID, ev.Name, ev.Data)
	}
	// Output:
	// id=1 name=tick data="a\nb"
	// id=1 name=message data="c"
}
