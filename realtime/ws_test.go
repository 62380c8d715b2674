package realtime

import (
	"net"
	"testing"
	"time"
)

// TestBatchConnWritesOnceAtFlush: frames written during a batch reach the
// peer in one write at flush, in order; outside a batch they pass through.
func TestBatchConnWritesOnceAtFlush(t *testing.T) {
	t.Parallel()
	server, client := net.Pipe()
	defer client.Close()
	bc := BatchingConn(server).(*batchConn)

	got := make(chan []byte, 4)
	go func() {
		buf := make([]byte, 64)
		for {
			n, err := client.Read(buf)
			if err != nil {
				close(got)
				return
			}
			got <- append([]byte(nil), buf[:n]...)
		}
	}()

	bc.begin()
	for _, part := range []string{"one", "two", "three"} {
		if _, err := bc.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case b := <-got:
		t.Fatalf("peer got %q before flush", b)
	default:
	}
	if err := bc.flush(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if b := <-got; string(b) != "onetwothree" {
		t.Fatalf("flush wrote %q, want onetwothree in one write", b)
	}
	if _, err := bc.Write([]byte("direct")); err != nil {
		t.Fatal(err)
	}
	if b := <-got; string(b) != "direct" {
		t.Fatalf("outside a batch got %q, want direct", b)
	}
	server.Close()
	if _, ok := <-got; ok {
		t.Fatal("peer still reading after close")
	}
}
