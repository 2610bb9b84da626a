package lockservice

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchyard-dev/switchyard/lockservice/zklock"
	lockv1 "github.com/switchyard-dev/switchyard/proto/switchyard/lock/v1"
)

// DefaultWatchBuffer is how many events a Watch stream may have waiting
// to be sent, by default (Config.WatchBuffer).
const DefaultWatchBuffer = 1024

// Watch streams the changes of holder of the locks whose names start
// with req.prefix, as seen in ZooKeeper: a stream at any replica sees the
// locks of every replica.
//
// A stream begins with the current holders: one GRANTED event for each
// lock under the prefix that this replica's reading of ZooKeeper shows
// held when the stream starts. Then, whenever a lock's holder changes, it
// carries an end event for the holder that went — RELEASED (released, or
// withdrawn before its grant was handed out), EXPIRED (its lease ran out)
// or LOST (its node went with its replica's session, or was deleted by
// another party) — then GRANTED for the new one, if any. The events of one
// lock come in the order they happened. ZooKeeper's watches fire once and
// are set again by a read, so a holder that comes and goes between two
// readings of its lock may not be seen at all; a holder that is seen
// always gets its end event.
//
// A client that reads slower than the events come, by more than
// Config.WatchBuffer events, is ended with RESOURCE_EXHAUSTED ("watch fell
// behind") rather than slowing the others or losing events silently. A bad
// prefix is INVALID_ARGUMENT. The stream ends when the caller cancels, and
// with UNAVAILABLE when the replica drains or closes.
func (s *Server) Watch(req *lockv1.WatchRequest, stream grpc.ServerStreamingServer[lockv1.WatchResponse]) error {
	if err := zklock.ValidatePrefix(req.GetPrefix()); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	ctx := stream.Context()
	w, ws, err := s.subscribe(ctx, req.GetPrefix())
	if err != nil {
		return s.toStatus(err)
	}
	defer s.unsubscribe(w, ws)
	err = s.pump(ctx, w, ws, func(ev *lockv1.LockEvent, _ bool) error {
		return stream.Send(&lockv1.WatchResponse{Event: ev})
	})
	switch {
	case errors.Is(err, errFellBehind):
		return status.Errorf(codes.ResourceExhausted, "watch fell behind: more than %d events waited to be sent", cap(ws.events))
	case errors.Is(err, errDraining):
		return status.Error(codes.Unavailable, "the replica is draining; watch elsewhere")
	case errors.Is(err, errWatcherStopped):
		return status.Error(codes.Unavailable, "the replica is closing; watch elsewhere")
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return s.toStatus(err)
	}
	return err
}

var (
	// errFellBehind ends a stream that overflowed: events were dropped, so
	// going on would hide a gap.
	errFellBehind = errors.New("the watch fell behind: events were dropped")
	// errDraining ends a stream of a replica that drains.
	errDraining = errors.New("the replica is draining")
	// errWatcherStopped ends a stream whose watcher stopped: the replica
	// closes.
	errWatcherStopped = errors.New("the replica's watcher stopped")
)

// pump hands ws's events to send, in order: once the watcher has started
// the stream, the holders at that moment (initial true, by name), then
// every change since. It returns send's error, or, without sending what
// is buffered, errFellBehind once the stream dropped events, ctx's error,
// errDraining or errWatcherStopped. Watch and the broadcaster share it.
func (s *Server) pump(ctx context.Context, w *watcher, ws *watchStream, send func(ev *lockv1.LockEvent, initial bool) error) error {
	select {
	case <-ws.started:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.draining.Done():
		return errDraining
	case <-w.done:
		return errWatcherStopped
	}
	initial := ws.initial
	ws.initial = nil
	for _, ev := range initial {
		if err := send(ev, true); err != nil {
			return err
		}
	}
	for {
		select { // a gap ends the stream before anything buffered is sent
		case <-ws.fell:
			return errFellBehind
		default:
		}
		select {
		case ev := <-ws.events:
			if err := send(ev, false); err != nil {
				return err
			}
		case <-ws.fell:
			return errFellBehind
		case <-ctx.Done():
			return ctx.Err()
		case <-s.draining.Done():
			return errDraining
		case <-w.done:
			return errWatcherStopped
		}
	}
}

// watchStream is one Watch stream, as its watcher sees it.
type watchStream struct {
	prefix  string
	started chan struct{}          // closed once initial is set and events flow
	initial []*lockv1.LockEvent    // the current holders, set by the watcher
	events  chan *lockv1.LockEvent // what happened since
	fell    chan struct{}          // closed by the watcher when events was full
	left    chan struct{}          // closed by the stream when it ends
}

// subscribe joins a new stream to the Server's watcher, starting the
// watcher if the stream is the only one. The stream's first reading is
// still to come: its started closes once it is there. If ctx ends before
// the watcher takes the stream in (it may be busy with ZooKeeper),
// subscribe leaves, stopping the watcher if it started it for this stream
// alone, and returns ctx.Err(). Otherwise the caller must unsubscribe.
func (s *Server) subscribe(ctx context.Context, prefix string) (*watcher, *watchStream, error) {
	size := s.cfg.WatchBuffer
	if size == 0 {
		size = DefaultWatchBuffer
	}
	ws := &watchStream{
		prefix:  prefix,
		started: make(chan struct{}),
		events:  make(chan *lockv1.LockEvent, size),
		fell:    make(chan struct{}),
		left:    make(chan struct{}),
	}
	s.watchMu.Lock()
	if s.draining.Err() != nil || s.ctx.Err() != nil {
		s.watchMu.Unlock()
		return nil, nil, status.Error(codes.Unavailable, "the replica is draining; watch elsewhere")
	}
	if s.watch == nil {
		s.watch = startWatcher(s)
	}
	w := s.watch
	s.streams++
	s.watchMu.Unlock()
	select {
	case w.joins <- ws:
	case <-w.done:
	case <-ctx.Done():
		s.unsubscribe(w, ws)
		return nil, nil, ctx.Err()
	}
	return w, ws, nil
}

// unsubscribe ends a stream, and stops its watcher if it was the last.
func (s *Server) unsubscribe(w *watcher, ws *watchStream) {
	close(ws.left)
	s.watchMu.Lock()
	s.streams--
	last := s.streams == 0 && s.watch == w
	if last {
		s.watch = nil
	}
	s.watchMu.Unlock()
	if last {
		w.stop()
	}
}

// stopWatcher stops the watcher, at Close.
func (s *Server) stopWatcher() {
	s.watchMu.Lock()
	w := s.watch
	s.watch = nil
	s.watchMu.Unlock()
	if w != nil {
		w.stop()
	}
}

// watcher follows, in ZooKeeper, the holders of the locks that at least
// one of a Server's Watch streams selects, and sends each stream the
// events of its locks. It keeps one children watch on the lock root (to
// learn of new locks) and one on each followed lock's directory — never
// one per contender — and reads a directory again when its watch fires,
// and everything again when the session changes. Its goroutine, run, owns
// all of its state but the channels; stop ends it.
type watcher struct {
	s      *Server
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // run and the watch forwarders
	done   chan struct{}  // closed once they have all stopped
	joins  chan *watchStream
	fired  chan string // the lock whose watch fired, or rootKey

	// Owned by run.
	streams     map[*watchStream]bool
	joining     *watchStream         // selects locks, gets no events yet
	locks       map[string]*followed // by name
	rootWatched bool
	dirtyRoot   bool
	dirty       map[string]bool // locks to read again
}

// rootKey stands for the lock root in watcher.fired: no lock name has a
// control character.
const rootKey = "\x00root"

// followed is what a watcher knows of one lock.
type followed struct {
	holder  *zklock.Contender // as last read; nil if none
	watched bool              // a children watch is set on its directory
}

func startWatcher(s *Server) *watcher {
	w := &watcher{
		s:       s,
		done:    make(chan struct{}),
		joins:   make(chan *watchStream),
		fired:   make(chan string),
		streams: map[*watchStream]bool{},
		locks:   map[string]*followed{},
		dirty:   map[string]bool{},
	}
	w.ctx, w.cancel = context.WithCancel(s.ctx)
	w.wg.Go(w.run)
	go func() {
		w.wg.Wait()
		close(w.done)
	}()
	return w
}

// stop stops the watcher and waits for its goroutines.
func (w *watcher) stop() {
	w.cancel()
	<-w.done
}

func (w *watcher) run() {
	notify, unsubscribe := w.s.conn.Subscribe()
	defer unsubscribe()
	var (
		retry   *time.Timer
		retryC  <-chan time.Time
		backoff time.Duration
	)
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	for {
		if w.sync() {
			backoff = 0
		} else if retryC == nil {
			backoff = min(max(2*backoff, 20*time.Millisecond), time.Second)
			retry = time.NewTimer(backoff)
			retryC = retry.C
		}
		select {
		case <-w.ctx.Done():
			return
		case ws := <-w.joins:
			w.join(ws)
		case <-notify:
			if w.s.conn.Connected() {
				// Perhaps a new session: whatever happened meanwhile, read it.
				w.dirtyRoot = true
				for name := range w.locks {
					w.dirty[name] = true
				}
			}
		case key := <-w.fired:
			if key == rootKey {
				w.rootWatched, w.dirtyRoot = false, true
			} else if f := w.locks[key]; f != nil {
				f.watched, w.dirty[key] = false, true
			}
		case <-retryC:
			retryC = nil
		}
	}
}

// join reads what the new stream selects, then hands it the current
// holders and counts it in: the events it gets next are the changes from
// those.
func (w *watcher) join(ws *watchStream) {
	w.joining = ws
	w.dirtyRoot = true
	w.sync()
	w.joining = nil
	w.streams[ws] = true
	at := timestamppb.Now()
	for name, f := range w.locks {
		if f.holder != nil && strings.HasPrefix(name, ws.prefix) {
			ws.initial = append(ws.initial, event(lockv1.LockEvent_TYPE_GRANTED, name, *f.holder, at))
		}
	}
	slices.SortFunc(ws.initial, func(a, b *lockv1.LockEvent) int { return cmp.Compare(a.GetName(), b.GetName()) })
	close(ws.started)
}

// selects reports whether a stream selects the lock name.
func (w *watcher) selects(name string) bool {
	if w.joining != nil && strings.HasPrefix(name, w.joining.prefix) {
		return true
	}
	for ws := range w.streams {
		if !isClosed(ws.left) && strings.HasPrefix(name, ws.prefix) {
			return true
		}
	}
	return false
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// sync reads what is to be read again, emitting what changed; it reports
// whether it read all of it.
func (w *watcher) sync() bool {
	ok := true
	if w.dirtyRoot {
		names, ch, err := w.s.locker.Locks(w.ctx, "", !w.rootWatched)
		if ch != nil {
			w.rootWatched = true
			w.forward(ch, rootKey)
		}
		if err != nil {
			w.debug("reading the locks", "", err)
			return false
		}
		w.dirtyRoot = false
		present := make(map[string]bool, len(names))
		for _, name := range names {
			present[name] = true
			if w.locks[name] == nil && w.selects(name) {
				w.locks[name] = &followed{}
				w.dirty[name] = true
			}
		}
		for name := range w.locks {
			if !present[name] {
				w.dirty[name] = true // swept: its reading ends it
			}
		}
	}
	for name := range w.dirty {
		if err := w.refresh(name); err != nil {
			w.debug("reading a lock", name, err)
			ok = false
			continue
		}
		delete(w.dirty, name)
	}
	return ok
}

// refresh reads the holder of the lock name and emits the change: an end
// event for the holder that went, then GRANTED for the new one. A lock no
// stream selects any more, or whose directory is gone, is no longer
// followed.
func (w *watcher) refresh(name string) error {
	f := w.locks[name]
	if f == nil {
		return nil
	}
	if !w.selects(name) {
		delete(w.locks, name) // its watch, if any, fires unheeded
		return nil
	}
	h, ch, err := w.s.locker.Holder(w.ctx, name, !f.watched)
	if ch != nil {
		f.watched = true
		w.forward(ch, name)
	}
	gone := errors.Is(err, zklock.ErrNoLock)
	if err != nil && !gone {
		return err
	}
	if old := f.holder; old != nil && (h == nil || h.Path != old.Path || h.Token != old.Token) {
		how, err := w.s.locker.HowEnded(w.ctx, *old)
		if err != nil {
			return err
		}
		w.emit(event(endType(how), name, *old, timestamppb.Now()))
		f.holder = nil
	}
	if gone {
		delete(w.locks, name)
		return nil
	}
	if h != nil && f.holder == nil {
		f.holder = h
		w.emit(event(lockv1.LockEvent_TYPE_GRANTED, name, *h, timestamppb.Now()))
	}
	return nil
}

func endType(how zklock.End) lockv1.LockEvent_Type {
	switch how {
	case zklock.EndExpired:
		return lockv1.LockEvent_TYPE_EXPIRED
	case zklock.EndLost:
		return lockv1.LockEvent_TYPE_LOST
	}
	return lockv1.LockEvent_TYPE_RELEASED // released, or withdrawn: never handed out
}

func event(typ lockv1.LockEvent_Type, name string, c zklock.Contender, at *timestamppb.Timestamp) *lockv1.LockEvent {
	return &lockv1.LockEvent{Type: typ, Name: name, Token: uint64(c.Token), Contender: contenderOf(c), At: at}
}

// emit hands ev to every stream that selects it. A stream whose buffer is
// full has fallen behind: it is ended, never waited for.
func (w *watcher) emit(ev *lockv1.LockEvent) {
	for ws := range w.streams {
		if isClosed(ws.left) {
			delete(w.streams, ws)
			continue
		}
		if !strings.HasPrefix(ev.GetName(), ws.prefix) {
			continue
		}
		select {
		case ws.events <- ev:
		default:
			close(ws.fell)
			delete(w.streams, ws)
		}
	}
}

// forward reports the firing of a watch to run, as key.
func (w *watcher) forward(ch <-chan zk.Event, key string) {
	w.wg.Go(func() {
		select {
		case <-ch:
		case <-w.ctx.Done():
			return
		}
		select {
		case w.fired <- key:
		case <-w.ctx.Done():
		}
	})
}

func (w *watcher) debug(what, name string, err error) {
	if w.ctx.Err() == nil {
		w.s.cfg.Logger.Debug("lockservice: watch: "+what, "lock", name, "err", err)
	}
}
