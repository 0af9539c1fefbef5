package pop3

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// stuffed returns a multi-line body of about size octets as the server
// sends it: CRLF lines of 76 characters, some starting with a dot, and the
// terminating line.
func stuffed(size int) []byte {
	var b bytes.Buffer
	line := strings.Repeat("abcdefghij", 7) + "klmnop"
	for i := 0; b.Len() < size; i++ {
		if i%10 == 0 {
			b.WriteString("..")
		}
		b.WriteString(line)
		b.WriteString("\r\n")
	}
	b.WriteString(".\r\n")
	return b.Bytes()
}

// BenchmarkDotReader measures the reader RETR streams through: dot
// unstuffing, CRLF to LF, the terminating line.
func BenchmarkDotReader(b *testing.B) {
	for _, size := range []int{4 << 10, 1 << 20} {
		data := stuffed(size)
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			src := bytes.NewReader(data)
			br := bufio.NewReaderSize(src, 32<<10)
			buf := make([]byte, 32<<10)
			for i := 0; i < b.N; i++ {
				src.Reset(data)
				br.Reset(src)
				r := newDotReader(br)
				for {
					if _, err := r.Read(buf); err == io.EOF {
						break
					} else if err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkUIDL measures reading a 50 000-message UIDL listing through the
// client: bounded line reads, parsing, the slice of results.
func BenchmarkUIDL(b *testing.B) {
	var listing bytes.Buffer
	listing.WriteString("+OK\r\n")
	for i := 1; i <= 50000; i++ {
		fmt.Fprintf(&listing, "%d %08x%08x\r\n", i, i, 0x6b029299)
	}
	listing.WriteString(".\r\n")
	data := listing.Bytes()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		c := &Client{}
		conn := &replayConn{r: bytes.NewReader(data)}
		c.tc = &timeoutConn{Conn: conn}
		c.setConn(c.tc)
		uids, err := c.UIDL(context.Background())
		if err != nil || len(uids) != 50000 {
			b.Fatal(len(uids), err)
		}
	}
}

// BenchmarkParseUIDLLine measures parsing one UIDL line.
func BenchmarkParseUIDLLine(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := parseUIDLLine("41235 000a10c36b029299"); err != nil {
			b.Fatal(err)
		}
	}
}

// replayConn is a net.Conn that reads canned server output and discards
// what is written.
type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *replayConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *replayConn) Close() error                     { return nil }
func (c *replayConn) SetDeadline(time.Time) error      { return nil }
func (c *replayConn) SetReadDeadline(time.Time) error  { return nil }
func (c *replayConn) SetWriteDeadline(time.Time) error { return nil }
