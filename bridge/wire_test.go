package bridge

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestFrameWriter: frames built by frameWriter, several in one write, arrive at a
// gorilla server as the same messages, whatever their length.
func TestFrameWriter(t *testing.T) {
	got := make(chan []byte, 16)
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			_, m, err := c.ReadMessage()
			if err != nil {
				close(got)
				return
			}
			got <- m
		}
	}))
	defer srv.Close()
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, tc := range []struct {
		name  string
		sizes []int
	}{
		{"one small", []int{7}},
		{"audio chunks", []int{236, 236, 236}},
		{"length edges", []int{0, 125, 126, 127, 65535, 65536}},
		{"large", []int{200000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var w frameWriter
			var want [][]byte
			for i, n := range tc.sizes {
				m := bytes.Repeat([]byte{byte('a' + i)}, n)
				want = append(want, m)
				w.add(m)
			}
			if !w.write(conn.NetConn(), time.Now()) {
				t.Fatal("write failed")
			}
			for i, m := range want {
				select {
				case g := <-got:
					if !bytes.Equal(g, m) {
						t.Fatalf("message %d: %d bytes, want %d", i, len(g), len(m))
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("message %d did not arrive", i)
				}
			}
		})
	}
	var _ net.Conn = conn.NetConn()
}

// TestFrameWriterAllocs: framing a chunk of caller audio allocates nothing once the
// buffer has grown.
func TestFrameWriterAllocs(t *testing.T) {
	var w frameWriter
	audio := make([]byte, 160)
	var msg []byte
	allocs := testing.AllocsPerRun(100, func() {
		msg = append(msg[:0], audio...)
		w.add(msg)
		w.reset()
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per chunk, want 0", allocs)
	}
}
