// Command loadgen is benchmarks/loadgen.py's client in Go: C keep-alive HTTP/1.1 connections to 127.0.0.1, each
// sending the same request back to back and timing every answer. On a 2-core machine the client takes CPU from the
// servers it measures; this one takes a fraction of what the asyncio client does. loadgen.py builds it when a Go
// toolchain is there and falls back to asyncio otherwise.
//
// Usage: loadgen -port P -count N -connections C [-ok 200,201] < request   (the request's raw bytes on stdin)
// Prints one JSON object: samples (seconds), statuses, errors, first_error, seconds.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

type outcome struct {
	Samples    []float64      `json:"samples"`
	Statuses   map[string]int `json:"statuses"`
	Errors     int            `json:"errors"`
	FirstError *string        `json:"first_error"`
	Seconds    float64        `json:"seconds"`
}

type connection struct {
	port    int
	conn    net.Conn
	reader  *bufio.Reader
	request []byte
}

func (c *connection) open() error {
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", c.port))
	if err != nil {
		return err
	}
	c.conn, c.reader = conn, bufio.NewReaderSize(conn, 64*1024)
	return nil
}

func (c *connection) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// roundTrip sends the request and reads one answer: its status and whether the connection stays open.
func (c *connection) roundTrip() (int, bool, error) {
	if c.conn == nil {
		if err := c.open(); err != nil {
			return 0, false, err
		}
	}
	if err := c.conn.SetDeadline(time.Now().Add(120 * time.Second)); err != nil {
		return 0, false, err
	}
	if _, err := c.conn.Write(c.request); err != nil {
		return 0, false, err
	}
	line, err := c.reader.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	if len(line) < 12 {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, false, err
	}
	length, chunked, keepAlive := 0, false, true
	for {
		header, err := c.reader.ReadSlice('\n')
		if err != nil {
			return 0, false, err
		}
		header = bytes.TrimRight(header, "\r\n")
		if len(header) == 0 {
			break
		}
		name, value, _ := bytes.Cut(header, []byte(":"))
		value = bytes.ToLower(bytes.TrimSpace(value))
		switch string(bytes.ToLower(bytes.TrimSpace(name))) {
		case "content-length":
			if length, err = strconv.Atoi(string(value)); err != nil {
				return 0, false, err
			}
		case "transfer-encoding":
			chunked = bytes.Contains(value, []byte("chunked"))
		case "connection":
			keepAlive = !bytes.Contains(value, []byte("close"))
		}
	}
	if chunked {
		for {
			sizeLine, err := c.reader.ReadSlice('\n')
			if err != nil {
				return 0, false, err
			}
			sizeText, _, _ := bytes.Cut(bytes.TrimSpace(sizeLine), []byte(";"))
			size, err := strconv.ParseInt(string(sizeText), 16, 64)
			if err != nil {
				return 0, false, err
			}
			if _, err := c.reader.Discard(int(size) + 2); err != nil {
				return 0, false, err
			}
			if size == 0 {
				break
			}
		}
	} else if _, err := c.reader.Discard(length); err != nil {
		return 0, false, err
	}
	return status, keepAlive, nil
}

func main() {
	port := flag.Int("port", 0, "port on 127.0.0.1")
	count := flag.Int("count", 0, "requests in all")
	connections := flag.Int("connections", 1, "keep-alive connections")
	okList := flag.String("ok", "200,201", "statuses that are not errors")
	flag.Parse()
	ok := map[int]bool{}
	for _, text := range strings.Split(*okList, ",") {
		status, err := strconv.Atoi(strings.TrimSpace(text))
		if err != nil {
			fmt.Fprintln(os.Stderr, "-ok: not a status:", text)
			os.Exit(2)
		}
		ok[status] = true
	}
	request, err := io.ReadAll(os.Stdin)
	if err != nil || *port <= 0 || *count <= 0 || *connections <= 0 {
		fmt.Fprintln(os.Stderr, "usage: loadgen -port P -count N -connections C < request")
		os.Exit(2)
	}

	results := make([]outcome, *connections)
	var group sync.WaitGroup
	started := time.Now()
	for i := 0; i < *connections; i++ {
		share := *count / *connections
		if i < *count%*connections {
			share++
		}
		group.Add(1)
		go func(result *outcome, share int) {
			defer group.Done()
			result.Statuses = map[string]int{}
			c := &connection{port: *port, request: request}
			defer c.close()
			for n := 0; n < share; n++ {
				began := time.Now()
				status, keepAlive, err := c.roundTrip()
				if err != nil {
					result.Errors++
					if result.FirstError == nil {
						text := err.Error()
						result.FirstError = &text
					}
					c.close()
					continue
				}
				result.Samples = append(result.Samples, time.Since(began).Seconds())
				result.Statuses[strconv.Itoa(status)]++
				if !ok[status] {
					result.Errors++
				}
				if !keepAlive {
					c.close()
				}
			}
		}(&results[i], share)
	}
	group.Wait()

	total := outcome{Statuses: map[string]int{}, Seconds: time.Since(started).Seconds()}
	for _, r := range results {
		total.Samples = append(total.Samples, r.Samples...)
		for status, n := range r.Statuses {
			total.Statuses[status] += n
		}
		total.Errors += r.Errors
		if total.FirstError == nil {
			total.FirstError = r.FirstError
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(total); err != nil {
		os.Exit(1)
	}
}
