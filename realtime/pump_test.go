package realtime

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// TestFlushInlineNeverBlocks: the fan-out's inline write gives a socket
// whose peer does not read what its kernel buffer takes and leaves the
// rest to the writer goroutine, without blocking; every frame then arrives
// whole and in order, and a close asked for meanwhile comes after the
// frame the stream stopped inside, never within it.
func TestFlushInlineNeverBlocks(t *testing.T) {
	t.Parallel()
	server, client := tcpPair(t)
	rc, err := server.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	c := &Client{closingCh: make(chan struct{})}
	q := newSendQueue(1<<30, 1<<20)
	closeFrame := []byte("<close>")
	p := newPump(c, q, func(batch [][]byte) {
		bufs := net.Buffers(batch)
		if _, err := bufs.WriteTo(server); err != nil {
			t.Errorf("blocking write: %v", err)
		}
	}, func() {
		if _, err := server.Write(closeFrame); err != nil {
			t.Errorf("close write: %v", err)
		}
		_ = server.(*net.TCPConn).CloseWrite()
	})
	p.writeNow = func(b []byte) int { return writeNonBlocking(rc, b) }

	var want []byte
	var frames [][]byte
	var buf []byte
	for i := range 200 { // far more than a loopback socket buffers
		frame := bytes.Repeat([]byte{byte('a' + i%26)}, 64<<10)
		frame = fmt.Appendf(frame, "#%d;", i)
		want = append(want, frame...)
		q.push(frame)
		done := make(chan struct{})
		go func() {
			frames, buf, _ = p.flushInline(frames, buf)
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("flushInline blocked on frame %d while the peer does not read", i)
		}
	}
	c.closed.Store(true)
	close(c.closingCh)
	p.kick()

	got, err := io.ReadAll(client)
	if err != nil {
		t.Fatal(err)
	}
	// A close wins over what is still queued (a slow peer does not get its
	// backlog first), but never over the rest of a frame begun.
	body, ok := bytes.CutSuffix(got, closeFrame)
	if !ok {
		t.Fatalf("stream does not end with the close frame: ...%q", got[max(0, len(got)-20):])
	}
	if !bytes.HasPrefix(want, body) || len(body) == 0 || body[len(body)-1] != ';' {
		t.Fatalf("read %d bytes before the close: not whole frames in order", len(body))
	}
}

func TestUnwritten(t *testing.T) {
	t.Parallel()
	frames := [][]byte{[]byte("abc"), []byte("de"), []byte("f")}
	for n, want := range []string{"[abc de f]", "[bc de f]", "[c de f]", "[de f]", "[e f]", "[f]", "[]"} {
		if got := fmt.Sprintf("%s", unwritten(frames, n)); got != want {
			t.Errorf("unwritten(%d) = %s, want %s", n, got, want)
		}
	}
}
