// Package zkserver runs real Apache ZooKeeper servers, from the Debian
// package's jar in Java child processes, on the loopback interface: a single
// standalone server, or an ensemble of several servers on one machine (the
// "pseudo-cluster" of the ZooKeeper administrator's guide) whose members can
// be stopped, killed and started again to exercise leader loss.
//
// It serves tests (through package zktest) and `yard up`. Every server gets
// its own data directory and free loopback ports, allows all four-letter-word
// commands, and has its admin HTTP server off. The JVM runs in its own
// process group with a parent-death signal, so a crashed parent does not
// leave a Java process behind; Close stops every process and waits for it.
//
// Servers are tuned for tests and development, not for durability: a tick
// of 200ms (so sessions may be as short as 400ms) and no fsync per
// transaction unless Config.Fsync is set.
package zkserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/switchyard-dev/switchyard/internal/freeport"
)

// DefaultJar is where the Debian package zookeeper installs the server jar;
// its manifest's Class-Path names the jars it needs.
const DefaultJar = "/usr/share/java/zookeeper.jar"

// slf4jSimple gives the server a logger; without a binding ZooKeeper logs
// nothing, and a server that fails to start says nothing about why.
const slf4jSimple = "/usr/share/java/slf4j-simple.jar"

// ErrNotInstalled reports that Java or the ZooKeeper jar is missing.
// scripts/ensure-deps installs both.
var ErrNotInstalled = errors.New("zkserver: ZooKeeper is not installed (run scripts/ensure-deps, or apt-get install zookeeper)")

// Config says what to start. The zero value starts one standalone server in
// a new temporary directory.
type Config struct {
	// Servers is the number of servers: 0 or 1 for a standalone server, 3
	// or 5 for an ensemble.
	Servers int
	// Dir holds one subdirectory per server (config, data, server.log).
	// Empty: a new temporary directory, removed by Close. A Dir given here
	// is left in place.
	Dir string
	// ClientPorts fixes the client port of server i when ClientPorts[i] is
	// not 0; the others get free ports.
	ClientPorts []int
	// TickTime is ZooKeeper's basic time unit; the shortest session
	// timeout the servers grant is two ticks. Default 200ms.
	TickTime time.Duration
	// MaxSessionTimeout is the longest session timeout granted. Default 60s.
	MaxSessionTimeout time.Duration
	// StartTimeout bounds the wait for a started server to serve. Default
	// 60s: a JVM under a -race test run on two cores can be slow.
	StartTimeout time.Duration
	// Java is the java binary. Default: $JAVA_HOME/bin/java, else java on
	// $PATH.
	Java string
	// Classpath for the server. Default: $SWITCHYARD_ZK_CLASSPATH, else
	// DefaultJar (plus the slf4j-simple binding where it is installed).
	Classpath string
	// Fsync makes every transaction wait for fsync, as production servers
	// do. Off by default: throwaway servers need speed, not durability.
	Fsync bool
	// ContainerCheckInterval is how often the servers delete container
	// znodes that have had children and have none left (ZooKeeper's
	// znode.container.checkIntervalMs). 0 keeps ZooKeeper's one minute.
	ContainerCheckInterval time.Duration
}

func (c Config) withDefaults() (Config, error) {
	if c.Servers == 0 {
		c.Servers = 1
	}
	if c.Servers < 0 || c.Servers > 9 {
		return c, fmt.Errorf("zkserver: %d servers: want 1 to 9", c.Servers)
	}
	if len(c.ClientPorts) > c.Servers {
		return c, fmt.Errorf("zkserver: %d client ports for %d servers", len(c.ClientPorts), c.Servers)
	}
	if c.TickTime == 0 {
		c.TickTime = 200 * time.Millisecond
	}
	if c.TickTime < 10*time.Millisecond {
		return c, fmt.Errorf("zkserver: tick time %v is below 10ms", c.TickTime)
	}
	if c.MaxSessionTimeout == 0 {
		c.MaxSessionTimeout = time.Minute
	}
	if c.MaxSessionTimeout < 2*c.TickTime {
		return c, fmt.Errorf("zkserver: max session timeout %v is below two ticks", c.MaxSessionTimeout)
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = time.Minute
	}
	if c.ContainerCheckInterval < 0 {
		return c, fmt.Errorf("zkserver: container check interval %v is negative", c.ContainerCheckInterval)
	}
	if c.Java == "" {
		c.Java = "java"
		if home := os.Getenv("JAVA_HOME"); home != "" {
			c.Java = filepath.Join(home, "bin", "java")
		}
	}
	java, err := exec.LookPath(c.Java)
	if err != nil {
		return c, fmt.Errorf("%w: java: %w", ErrNotInstalled, err)
	}
	c.Java = java
	if c.Classpath == "" {
		c.Classpath = os.Getenv("SWITCHYARD_ZK_CLASSPATH")
	}
	if c.Classpath == "" {
		if _, err := os.Stat(DefaultJar); err != nil {
			return c, fmt.Errorf("%w: %w", ErrNotInstalled, err)
		}
		c.Classpath = DefaultJar
		if _, err := os.Stat(slf4jSimple); err == nil {
			c.Classpath += string(os.PathListSeparator) + slf4jSimple
		}
	}
	return c, nil
}

// Ensemble is a set of running ZooKeeper servers: one standalone server, or
// the members of one ensemble. Its methods are safe for concurrent use.
// Server indexes are 0-based; server i has ZooKeeper id (myid) i+1.
type Ensemble struct {
	cfg     Config
	dir     string
	ownsDir bool

	mu      sync.Mutex
	servers []*server
	closed  bool
}

type server struct {
	id                                   int
	dir                                  string
	clientPort, quorumPort, electionPort int

	// Set while a process runs; guarded by Ensemble.mu.
	proc *process
}

// process is one run of a server's JVM. done is closed once the process has
// exited and been reaped.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start starts the servers of cfg and returns once every one serves: it
// answers "ruok" with "imok" and "srvr" shows it standalone or part of a
// quorum. If ctx ends first, or a server fails, everything started is
// stopped again and the error carries the tail of the failing server's log.
func Start(ctx context.Context, cfg Config) (*Ensemble, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	e := &Ensemble{cfg: cfg, dir: cfg.Dir}
	if e.dir == "" {
		e.dir, err = os.MkdirTemp("", "switchyard-zk-")
		if err != nil {
			return nil, fmt.Errorf("zkserver: %w", err)
		}
		e.ownsDir = true
	}
	if err := e.layout(); err != nil {
		e.Close()
		return nil, err
	}
	e.mu.Lock()
	for _, s := range e.servers {
		if err := e.spawn(s); err != nil {
			e.mu.Unlock()
			e.Close()
			return nil, err
		}
	}
	e.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	for i := range e.servers {
		if err := e.waitServing(ctx, i); err != nil {
			e.Close()
			return nil, err
		}
	}
	return e, nil
}

// layout picks the ports and writes each server's directory and config.
func (e *Ensemble) layout() error {
	n := e.cfg.Servers
	ports, err := freeport.Get(3 * n)
	if err != nil {
		return err
	}
	for i := range n {
		s := &server{
			id:           i + 1,
			dir:          filepath.Join(e.dir, fmt.Sprintf("zk%d", i+1)),
			clientPort:   ports[3*i],
			quorumPort:   ports[3*i+1],
			electionPort: ports[3*i+2],
		}
		if i < len(e.cfg.ClientPorts) && e.cfg.ClientPorts[i] != 0 {
			s.clientPort = e.cfg.ClientPorts[i]
		}
		e.servers = append(e.servers, s)
	}
	for _, s := range e.servers {
		if err := os.MkdirAll(filepath.Join(s.dir, "data"), 0o755); err != nil {
			return fmt.Errorf("zkserver: %w", err)
		}
		if n > 1 {
			myid := filepath.Join(s.dir, "data", "myid")
			if err := os.WriteFile(myid, []byte(strconv.Itoa(s.id)+"\n"), 0o644); err != nil {
				return fmt.Errorf("zkserver: %w", err)
			}
		}
		if err := os.WriteFile(s.configPath(), []byte(e.config(s)), 0o644); err != nil {
			return fmt.Errorf("zkserver: %w", err)
		}
	}
	return nil
}

func (s *server) configPath() string { return filepath.Join(s.dir, "zoo.cfg") }
func (s *server) logPath() string    { return filepath.Join(s.dir, "server.log") }
func (s *server) addr() string       { return "127.0.0.1:" + strconv.Itoa(s.clientPort) }

// config renders zoo.cfg for s. initLimit and syncLimit are generous (10s
// and 5s) so that a follower on a loaded test machine is not dropped from
// the quorum by a scheduling hiccup.
func (e *Ensemble) config(s *server) string {
	tick := e.cfg.TickTime.Milliseconds()
	fsync := "no"
	if e.cfg.Fsync {
		fsync = "yes"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "tickTime=%d\n", tick)
	fmt.Fprintf(&b, "initLimit=%d\n", max(10, 10000/tick))
	fmt.Fprintf(&b, "syncLimit=%d\n", max(5, 5000/tick))
	fmt.Fprintf(&b, "dataDir=%s\n", filepath.Join(s.dir, "data"))
	fmt.Fprintf(&b, "clientPort=%d\n", s.clientPort)
	b.WriteString("clientPortAddress=127.0.0.1\n")
	fmt.Fprintf(&b, "minSessionTimeout=%d\n", 2*tick)
	fmt.Fprintf(&b, "maxSessionTimeout=%d\n", e.cfg.MaxSessionTimeout.Milliseconds())
	b.WriteString("maxClientCnxns=0\n")
	b.WriteString("4lw.commands.whitelist=*\n")
	b.WriteString("admin.enableServer=false\n")
	fmt.Fprintf(&b, "forceSync=%s\n", fsync)
	if len(e.servers) > 1 {
		b.WriteString("standaloneEnabled=false\n")
		for _, p := range e.servers {
			fmt.Fprintf(&b, "server.%d=127.0.0.1:%d:%d\n", p.id, p.quorumPort, p.electionPort)
		}
	}
	return b.String()
}

// spawn starts s's JVM. e.mu must be held.
func (e *Ensemble) spawn(s *server) error {
	logf, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("zkserver: %w", err)
	}
	args := []string{"-Xms32m", "-Xmx512m", "-XX:+UseSerialGC",
		"-Dzookeeper.jmx.log4j.disable=true",
		"-Dorg.slf4j.simpleLogger.showDateTime=true"}
	if d := e.cfg.ContainerCheckInterval; d > 0 {
		// A system property, not a zoo.cfg key: the config file would
		// prefix it with "zookeeper.".
		args = append(args, fmt.Sprintf("-Dznode.container.checkIntervalMs=%d", max(d.Milliseconds(), 1)))
	}
	args = append(args, "-cp", e.cfg.Classpath,
		"org.apache.zookeeper.server.quorum.QuorumPeerMain", s.configPath())
	cmd := exec.Command(e.cfg.Java, args...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("zkserver: starting server %d: %w", s.id, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	s.proc = p
	return nil
}

// waitServing polls server i until it serves, its process exits, or ctx ends.
func (e *Ensemble) waitServing(ctx context.Context, i int) error {
	e.mu.Lock()
	s := e.servers[i]
	p := s.proc
	e.mu.Unlock()
	if p == nil {
		return fmt.Errorf("zkserver: server %d is not running", s.id)
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if mode, err := serverMode(ctx, s.addr()); err == nil && mode != "" {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("zkserver: server %d exited (%v) before serving:\n%s", s.id, p.err, tail(s.logPath()))
		case <-ctx.Done():
			return fmt.Errorf("zkserver: server %d not serving on %s: %w\n%s", s.id, s.addr(), ctx.Err(), tail(s.logPath()))
		case <-tick.C:
		}
	}
}

// serverMode returns the server's mode once it is healthy ("ruok" answers
// "imok") and serving ("srvr" has a Mode line); "" with no error otherwise.
func serverMode(ctx context.Context, addr string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	ok, err := FourLetter(ctx, addr, "ruok")
	if err != nil {
		return "", err
	}
	if ok != "imok" {
		return "", nil
	}
	srvr, err := FourLetter(ctx, addr, "srvr")
	if err != nil {
		return "", err
	}
	return ParseStats(srvr)["Mode"], nil
}

// tail returns the last lines of a log file, for error messages.
func tail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	defer f.Close()
	const n = 4096
	if st, err := f.Stat(); err == nil && st.Size() > n {
		if _, err := f.Seek(-n, io.SeekEnd); err != nil {
			return "(log unreadable: " + err.Error() + ")"
		}
	}
	b, _ := io.ReadAll(f)
	return "--- " + path + " (tail) ---\n" + string(b)
}

// Size returns the number of servers.
func (e *Ensemble) Size() int { return len(e.servers) }

// Addr returns the client address (127.0.0.1:port) of server i.
func (e *Ensemble) Addr(i int) string { return e.servers[i].addr() }

// Addrs returns the client addresses of all servers, running or not.
func (e *Ensemble) Addrs() []string {
	out := make([]string, len(e.servers))
	for i, s := range e.servers {
		out[i] = s.addr()
	}
	return out
}

// ConnectString returns the addresses joined by commas, as ZooKeeper
// clients and the --zk flags take them.
func (e *Ensemble) ConnectString() string { return strings.Join(e.Addrs(), ",") }

// Pid returns the process id of server i, or 0 while it is stopped.
func (e *Ensemble) Pid(i int) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p := e.servers[i].proc; p != nil {
		return p.cmd.Process.Pid
	}
	return 0
}

// Mode returns what server i says of itself in "srvr": standalone, leader,
// follower or observer. It fails while the server is down or not serving.
func (e *Ensemble) Mode(ctx context.Context, i int) (string, error) {
	mode, err := serverMode(ctx, e.Addr(i))
	if err != nil {
		return "", err
	}
	if mode == "" {
		return "", fmt.Errorf("zkserver: server %d is not serving", i+1)
	}
	return mode, nil
}

// Find returns the index of the first running server whose mode is mode
// ("leader", "follower"), polling until one is found or ctx ends.
func (e *Ensemble) Find(ctx context.Context, mode string) (int, error) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		for i := range e.servers {
			if e.Pid(i) == 0 {
				continue
			}
			if m, err := e.Mode(ctx, i); err == nil && m == mode {
				return i, nil
			}
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("zkserver: no %s: %w", mode, ctx.Err())
		case <-tick.C:
		}
	}
}

// StopServer stops server i as an operator would: SIGTERM, and SIGKILL if
// it has not exited within five seconds. Its data directory is kept, so
// StartServer brings it back with its state. Stopping a stopped server does
// nothing.
func (e *Ensemble) StopServer(i int) error { return e.stop(i, syscall.SIGTERM, 5*time.Second) }

// KillServer kills server i with SIGKILL, as a crash would, and waits for
// the process to be gone.
func (e *Ensemble) KillServer(i int) error { return e.stop(i, syscall.SIGKILL, 0) }

func (e *Ensemble) stop(i int, sig syscall.Signal, grace time.Duration) error {
	e.mu.Lock()
	s := e.servers[i]
	p := s.proc
	s.proc = nil
	e.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.stop(sig, grace)
}

// stop signals the process group and waits until the JVM has been reaped.
func (p *process) stop(sig syscall.Signal, grace time.Duration) error {
	pgid := p.cmd.Process.Pid
	if err := syscall.Kill(-pgid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("zkserver: signalling %d: %w", pgid, err)
	}
	if sig != syscall.SIGKILL {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-p.done:
			return nil
		case <-t.C:
		}
		if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("zkserver: killing %d: %w", pgid, err)
		}
	}
	<-p.done
	return nil
}

// StartServer starts stopped server i again, on the same ports and data,
// and waits until it serves. A member of an ensemble serves only once it
// has joined a quorum; if a majority is down it cannot, and StartServer
// returns ctx's error while the process keeps trying (Close stops it).
func (e *Ensemble) StartServer(ctx context.Context, i int) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return errors.New("zkserver: ensemble is closed")
	}
	s := e.servers[i]
	if s.proc != nil {
		e.mu.Unlock()
		return fmt.Errorf("zkserver: server %d is running", s.id)
	}
	err := e.spawn(s)
	e.mu.Unlock()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.StartTimeout)
	defer cancel()
	return e.waitServing(ctx, i)
}

// Close stops every server, waits for the processes to exit, and removes
// the directory if Start created it. It is safe to call more than once.
func (e *Ensemble) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	var procs []*process
	for _, s := range e.servers {
		if s.proc != nil {
			procs = append(procs, s.proc)
			s.proc = nil
		}
	}
	e.mu.Unlock()

	var errs []error
	var wg sync.WaitGroup
	var emu sync.Mutex
	for _, p := range procs {
		wg.Go(func() {
			if err := p.stop(syscall.SIGTERM, 3*time.Second); err != nil {
				emu.Lock()
				errs = append(errs, err)
				emu.Unlock()
			}
		})
	}
	wg.Wait()
	if e.ownsDir {
		if err := os.RemoveAll(e.dir); err != nil {
			errs = append(errs, fmt.Errorf("zkserver: %w", err))
		}
	}
	return errors.Join(errs...)
}
