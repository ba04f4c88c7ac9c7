package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// errNoSpawn is the reason a row that needs a child process is skipped.
var errNoSpawn = errors.New("no child process launcher (run it as ssestress bench)")

// childTimeout bounds one exchange with a child: generous, since a stat
// after a GC of a process holding thousands of streams takes a while on a
// loaded machine.
const childTimeout = 60 * time.Second

// childProc is the parent's handle on a child process.
type childProc struct {
	role   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan []byte
	stderr *tailBuffer
	hello  hello
	mu     sync.Mutex
	waited chan error
}

// startChild starts a child in role and waits for its first line.
func (s *suite) startChild(ctx context.Context, roleName string, args ...string) (*childProc, error) {
	if s.cfg.Spawn == nil {
		return nil, errNoSpawn
	}
	cmd := s.cfg.Spawn(ctx, roleName, args)
	c := &childProc{role: roleName, cmd: cmd, lines: make(chan []byte, 16), stderr: &tailBuffer{max: 4096}, waited: make(chan error, 1)}
	cmd.Stderr = c.stderr
	var err error
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s child: %w", roleName, err)
	}
	go func() {
		br := bufio.NewReaderSize(stdout, 64<<10)
		for {
			line, err := br.ReadBytes('\n')
			if len(line) > 0 {
				c.lines <- line
			}
			if err != nil {
				close(c.lines)
				c.waited <- cmd.Wait()
				return
			}
		}
	}()
	line, err := c.read(childTimeout)
	if err != nil {
		c.kill()
		return nil, err
	}
	if err := json.Unmarshal(line, &c.hello); err != nil {
		c.kill()
		return nil, fmt.Errorf("%s child: bad first line %q", roleName, bytes.TrimSpace(line))
	}
	if c.hello.Err != "" {
		c.kill()
		return nil, fmt.Errorf("%s child: %s", roleName, c.hello.Err)
	}
	return c, nil
}

// read waits for the child's next line.
func (c *childProc) read(timeout time.Duration) ([]byte, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case line, ok := <-c.lines:
		if !ok {
			return nil, fmt.Errorf("%s child exited: %s", c.role, c.stderr.lastLine())
		}
		return line, nil
	case <-t.C:
		return nil, fmt.Errorf("%s child did not answer within %v", c.role, timeout)
	}
}

// do sends one command line and decodes the answer.
func (c *childProc) do(command string) (Usage, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var u Usage
	if _, err := io.WriteString(c.stdin, command+"\n"); err != nil {
		return u, fmt.Errorf("%s child: %w (%s)", c.role, err, c.stderr.lastLine())
	}
	line, err := c.read(childTimeout)
	if err != nil {
		return u, err
	}
	if err := json.Unmarshal(line, &u); err != nil {
		return u, fmt.Errorf("%s child: bad answer %q", c.role, bytes.TrimSpace(line))
	}
	if u.Err != "" {
		return u, fmt.Errorf("%s child: %s", c.role, u.Err)
	}
	return u, nil
}

func (c *childProc) stat() (Usage, error)   { return c.do("stat") }
func (c *childProc) statGC() (Usage, error) { return c.do("stat gc") }

// stop asks the child to quit and waits for it, killing it if it does not
// exit in time.
func (c *childProc) stop() {
	c.mu.Lock()
	io.WriteString(c.stdin, "quit\n")
	c.stdin.Close()
	c.mu.Unlock()
	go func() {
		for range c.lines { // drain: the reader goroutine must reach Wait
		}
	}()
	select {
	case <-c.waited:
	case <-time.After(30 * time.Second):
		c.kill()
	}
}

func (c *childProc) kill() {
	if c.cmd.Process != nil {
		c.cmd.Process.Kill()
	}
	c.stdin.Close()
	go func() {
		for range c.lines {
		}
	}()
	select {
	case <-c.waited:
	case <-time.After(10 * time.Second):
	}
}

// tailBuffer keeps the last max bytes written: a child's stderr, for the
// message when it fails.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) lastLine() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.TrimSpace(string(t.b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if s == "" {
		return "no message"
	}
	return s
}
