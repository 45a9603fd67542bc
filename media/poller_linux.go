//go:build linux

package media

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/cxco/gateway/media/clock"
)

// The shared readers. A call's RTP socket receives a packet every 20 ms and
// its RTCP socket one every few seconds; a reader goroutine per socket costs
// a goroutine wake-up, a park and a second recvfrom (the one that finds the
// socket empty) for every packet, and a goroutine stack per socket. Instead,
// GOMAXPROCS readers each watch their share of the sockets in an epoll set
// of their own (level-triggered), which Go's netpoller watches in turn: a
// reader wakes when any of its sockets has a packet, reads one packet from
// each socket that is ready, and hands it to its stream exactly as the
// stream's own reader did (same handling, same arrival stamp: the clock when
// it is read). Under load one wake-up serves several calls' packets, and
// no recvfrom is spent on an empty socket: level-triggered, a socket with
// more packets queued is reported again by the next epoll_wait.
//
// On a wheel that runs its own shard goroutines (the gateway's), a stream's
// sockets are read by its wheel shard instead, at each tick (tickSlot below);
// the shared readers read the streams of a wheel on a Manual clock, and every
// stream with CXCO_MEDIA_TICK_READS=0. Where neither is available (another
// OS, or epoll fails), a stream runs its own reader goroutines (readRTP,
// readRTCP).

// pollSlot is one shared reader: the sockets it watches and, while it
// watches any, its epoll set and goroutine. mu is held while a batch of
// packets is handled, so removing a stream's sockets under it guarantees
// that none of its packets is being handled and that its descriptors are not
// read after they are closed.
type pollSlot struct {
	mu    sync.Mutex
	set   *epollSet
	socks sockTable    // by descriptor
	tick  *pollScratch // the buffers pollTick reads with (under mu)
}

type pollScratch struct {
	r      reader
	rsa    syscall.RawSockaddrAny
	events [128]syscall.EpollEvent
}

type pollSock struct {
	s    *Stream
	rtcp bool
}

// sockTable is a set's sockets by descriptor: a slice indexed by it (a process's
// descriptors are small and dense), looked up for every packet read. It was a
// map, whose lookup (hashing, and a bucket on a cache line of its own) was 0.4%
// of the gateway's CPU samples at 500 calls. Under its slot's mu.
type sockTable struct {
	by []pollSock
	n  int
}

func (t *sockTable) get(fd int32) (pollSock, bool) {
	if uint(fd) >= uint(len(t.by)) {
		return pollSock{}, false
	}
	sk := t.by[fd]
	return sk, sk.s != nil
}

func (t *sockTable) put(fd int32, sk pollSock) {
	if int(fd) >= len(t.by) {
		n := max(64, len(t.by))
		for n <= int(fd) {
			n *= 2
		}
		by := make([]pollSock, n)
		copy(by, t.by)
		t.by = by
	}
	if t.by[fd].s == nil {
		t.n++
	}
	t.by[fd] = sk
}

func (t *sockTable) del(fd int32) {
	if _, ok := t.get(fd); ok {
		t.by[fd] = pollSock{}
		t.n--
	}
}

func (t *sockTable) len() int { return t.n }

// epollSet is one epoll instance and the goroutine that waits on it.
type epollSet struct {
	file *os.File // the epoll descriptor, registered with Go's netpoller
	rc   syscall.RawConn
	fd   int
	done chan struct{}
}

var (
	pollSlots = func() []pollSlot {
		return make([]pollSlot, runtime.GOMAXPROCS(0))
	}()
	pollNext atomic.Uint32
	// sharedReaders off makes every stream read its own sockets (the
	// benchmarks compare the two)
	sharedReaders = true
)

// polled is a stream's registration with a shared reader (slot) or with its
// shard's reads (tick).
type polled struct {
	slot          *pollSlot
	tick          *tickSlot
	rtpFD, rtcpFD int32
}

// startPolling registers the stream's RTP and RTCP sockets with its wheel
// shard's reads (tickReads) or with a shared reader; an error leaves nothing
// registered.
func (s *Stream) startPolling() error {
	if !sharedReaders {
		return errors.ErrUnsupported
	}
	rtpFD, err := sockFD(s.rtp)
	if err != nil {
		return err
	}
	rtcpFD, err := sockFD(s.rtcp)
	if err != nil {
		return err
	}
	if tickReads && s.opt.Wheel.Ticking() {
		return s.startTickPolling(rtpFD, rtcpFD)
	}
	slot := &pollSlots[int(pollNext.Add(1)-1)%len(pollSlots)]
	slot.mu.Lock()
	if slot.set == nil {
		set, err := newEpollSet()
		if err != nil {
			slot.mu.Unlock()
			return err
		}
		slot.set = set
		go slot.run(set)
	}
	if err := epollAdd(slot.set.fd, rtpFD, rtcpFD); err != nil {
		slot.stopIfIdle() // unlocks
		return err
	}
	slot.socks.put(rtpFD, pollSock{s: s})
	slot.socks.put(rtcpFD, pollSock{s: s, rtcp: true})
	s.polled = &polled{slot: slot, rtpFD: rtpFD, rtcpFD: rtcpFD}
	slot.mu.Unlock()
	tickPolls(s.opt.Wheel)
	return nil
}

// epollAdd adds a stream's two sockets to an epoll set, both or neither.
func epollAdd(epfd int, rtpFD, rtcpFD int32) error {
	err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, int(rtpFD), &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: rtpFD})
	if err == nil {
		err = syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, int(rtcpFD), &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: rtcpFD})
		if err != nil {
			_ = syscall.EpollCtl(epfd, syscall.EPOLL_CTL_DEL, int(rtpFD), nil)
		}
	}
	if err != nil {
		return fmt.Errorf("media: epoll_ctl: %w", err)
	}
	return nil
}

// stopPolling takes the stream's sockets out of its reader before they are
// closed: once it returns, no packet of the stream is being handled or will
// be. The last stream of a reader stops its goroutine.
func (s *Stream) stopPolling() {
	p := s.polled
	if p == nil {
		return
	}
	s.polled = nil
	if p.tick != nil {
		p.tick.remove(p.rtpFD, p.rtcpFD)
		return
	}
	slot := p.slot
	slot.mu.Lock()
	for _, fd := range []int32{p.rtpFD, p.rtcpFD} {
		_ = syscall.EpollCtl(slot.set.fd, syscall.EPOLL_CTL_DEL, int(fd), nil)
		slot.socks.del(fd)
	}
	slot.stopIfIdle()
}

// stopIfIdle is called with mu held and unlocks it; with no socket left it
// closes the epoll set and waits for its goroutine to end.
func (slot *pollSlot) stopIfIdle() {
	if slot.socks.len() > 0 {
		slot.mu.Unlock()
		return
	}
	set := slot.set
	slot.set = nil
	slot.mu.Unlock()
	_ = set.file.Close() // wakes the goroutine, which sees slot.set changed
	<-set.done
}

func newEpollSet() (*epollSet, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("media: epoll_create1: %w", err)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("media: epoll set: %w", err)
	}
	// A non-blocking descriptor given to os.NewFile goes to the netpoller.
	f := os.NewFile(uintptr(fd), "media-epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("media: epoll set: %w", err)
	}
	return &epollSet{file: f, rc: rc, fd: fd, done: make(chan struct{})}, nil
}

// run is a shared reader's goroutine for one epoll set: it waits (in the
// netpoller, no thread blocked) until a socket is ready, then reads one
// packet from each ready socket and handles it, under mu.
func (slot *pollSlot) run(set *epollSet) {
	defer close(set.done)
	var (
		r      reader
		rsa    syscall.RawSockaddrAny
		events [128]syscall.EpollEvent
	)
	var n int
	wait := func(fd uintptr) bool { // made once: a closure per wait would be an allocation
		var err error
		n, err = epollWait(fd, events[:])
		if err != nil {
			n = 0
			return err != syscall.EINTR && err != syscall.EAGAIN // EBADF: the set is closed
		}
		return n > 0 // nothing ready: wait for the netpoller
	}
	for {
		if err := set.rc.Read(wait); err != nil {
			return
		}
		slot.mu.Lock()
		if slot.set != set {
			slot.mu.Unlock()
			return
		}
		slot.handle(events[:n], &r, &rsa)
		slot.mu.Unlock()
	}
}

// handle reads one packet from each socket the events name and hands it to its
// stream (under mu). A socket read meanwhile (by pollTick, or the other way
// round) gives EAGAIN and is skipped.
func (slot *pollSlot) handle(events []syscall.EpollEvent, r *reader, rsa *syscall.RawSockaddrAny) {
	handleReady(&slot.socks, events, r, rsa)
}

// handleReady reads one packet from each socket of socks the events name and
// hands it to its stream.
func handleReady(socks *sockTable, events []syscall.EpollEvent, r *reader, rsa *syscall.RawSockaddrAny) {
	for _, ev := range events {
		sk, ok := socks.get(ev.Fd)
		if !ok {
			continue
		}
		m, from, errno := recvfrom(ev.Fd, r.buf[:], rsa)
		if errno != 0 {
			continue // EAGAIN (read meanwhile), or an error the next read clears
		}
		if sk.rtcp {
			sk.s.rtcpPacket(r, r.buf[:m], from)
		} else {
			sk.s.rtpPacket(r, r.buf[:m], from)
		}
	}
}

// pollTick is the wheel's OnTick: each shard, at each 1 ms tick, reads what is
// ready on its shared reader's set (one epoll_wait with a zero timeout), unless
// the reader's goroutine is at it. The goroutine wakes through Go's netpoller,
// which a busy process polls only when a P runs out of work or every 10 ms (the
// runtime's sysmon): with both cores full, packets waited up to that long to be
// read, and the jitter buffer took the delay for network jitter. The shards'
// timers are run on time even then, so no packet now waits for more than a
// tick. Arrivals are stamped when read, as before.
func pollTick(shard int) {
	slot := &pollSlots[shard%len(pollSlots)]
	if !slot.mu.TryLock() {
		return
	}
	if set := slot.set; set != nil {
		if slot.tick == nil {
			slot.tick = new(pollScratch)
		}
		t := slot.tick
		if n, err := epollWait(uintptr(set.fd), t.events[:]); err == nil && n > 0 {
			slot.handle(t.events[:n], &t.r, &t.rsa)
		}
	}
	slot.mu.Unlock()
}

// The shard's reads (tickReads). A stream's sockets are read by the wheel
// shard that runs its timers, at each tick, before the timers due then run:
// one epoll_wait with a zero timeout on the shard's set, one recvfrom per ready
// socket, on the goroutine that then plays the packets out. No goroutine waits
// on the sockets: a reader goroutine woken through Go's netpoller (the shared
// readers above) costs a wake-up and two epoll_waits (the second finds
// nothing) for every few packets, and a packet it reads between ticks is
// played at the next tick anyway. A packet waits at most a tick to be read
// (and its arrival is stamped when it is read, as before, which is when the
// jitter buffer has it); one that comes in while the shard runs the tick's
// timers, after the tick's read, is read by its stream's playout if its frame
// is due (readLate): without that, a reader goroutine on the other P had read
// some of them in time, and late drops rose at 500 calls (4 of 4 runs). The
// shard keeps ticking while it has sockets to read (Shard.OnTick), timers
// pending or not. A wheel that runs no shard goroutines (a Manual clock) has
// its streams read by the shared readers.

// tickSlot is one wheel shard's sockets and epoll set, while it has sockets.
type tickSlot struct {
	mu    sync.Mutex
	shard *clock.Shard
	fd    int // the epoll set; -1 once the last socket left
	socks sockTable
	read  func() // t.tick, made once
	pollScratch
}

var (
	tickSlotsMu sync.Mutex
	tickSlots   = map[*clock.Shard]*tickSlot{}
	// tickReads off (CXCO_MEDIA_TICK_READS=0): the shared readers' goroutines
	// read every stream's sockets, and the shards read them too at each tick
	// (pollTick), as before the shards' own reads; for an A/B.
	tickReads = os.Getenv("CXCO_MEDIA_TICK_READS") != "0"
)

// startTickPolling adds the stream's sockets to its shard's set (made with
// the shard's first socket: tickSlotsMu, then mu, are held while a slot is
// made, filled or emptied and dropped).
func (s *Stream) startTickPolling(rtpFD, rtcpFD int32) error {
	tickSlotsMu.Lock()
	defer tickSlotsMu.Unlock()
	t := tickSlots[s.shard]
	if t == nil {
		fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			return fmt.Errorf("media: epoll_create1: %w", err)
		}
		t = &tickSlot{shard: s.shard, fd: fd}
		t.read = t.tick
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := epollAdd(t.fd, rtpFD, rtcpFD); err != nil {
		if t.socks.len() == 0 {
			syscall.Close(t.fd)
		}
		return err
	}
	t.socks.put(rtpFD, pollSock{s: s})
	t.socks.put(rtcpFD, pollSock{s: s, rtcp: true})
	s.polled = &polled{tick: t, rtpFD: rtpFD, rtcpFD: rtcpFD}
	if tickSlots[s.shard] == nil {
		tickSlots[s.shard] = t
		t.shard.OnTick(t.read)
	}
	return nil
}

// remove takes a stream's sockets out; once it returns, none of its packets
// is being handled or will be. The shard's last stream closes the set and
// lets the shard sleep.
func (t *tickSlot) remove(rtpFD, rtcpFD int32) {
	tickSlotsMu.Lock()
	defer tickSlotsMu.Unlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, fd := range []int32{rtpFD, rtcpFD} {
		_ = syscall.EpollCtl(t.fd, syscall.EPOLL_CTL_DEL, int(fd), nil)
		t.socks.del(fd)
	}
	if t.socks.len() > 0 {
		return
	}
	t.shard.OnTick(nil)
	delete(tickSlots, t.shard)
	syscall.Close(t.fd)
	t.fd = -1 // a tick already under way finds nothing to read
}

// lateReads off (CXCO_MEDIA_LATE_READ=0): no last look at the socket before a
// frame is played without its packet (readLate); for an A/B.
var lateReads = os.Getenv("CXCO_MEDIA_LATE_READ") != "0"

const lateReadWithin = 200 * time.Millisecond

// lateReadWanted (under in.mu) and readLate, on the shard's reads, have a
// playout whose frame is due without all of its audio read the stream's RTP
// socket first: a packet that came in
// since the tick's read (the shard's timers may run a while after it, and
// longer when the thread is preempted) is then played instead of concealed and
// dropped late. A reader goroutine would have read it meanwhile. Only while the
// caller sends (a packet in the last 200 ms: the deepest buffer, 120 ms, and a
// few frames): a sender that stops in silence costs a few empty reads, not one
// per frame.
func (s *Stream) lateReadWanted(now time.Time) bool {
	p := s.polled
	if p == nil || p.tick == nil || !lateReads {
		return false
	}
	in := &s.in
	var waiting bool
	if in.wb != nil {
		waiting = in.wb.Waiting(now)
	} else if in.jb != nil {
		waiting = in.jb.Waiting(now)
	}
	return waiting && now.Sub(in.lastRecv) < lateReadWithin
}

// readLate is the late read lateReadWanted asked for (without in.mu).
func (s *Stream) readLate() {
	p := s.polled
	// The tick slot's scratch: its reads and this playout run on the same
	// shard goroutine, one at a time. The socket is open: Close stops the
	// playout timer before stopPolling.
	t := p.tick
	for range 4 {
		m, from, errno := recvfrom(p.rtpFD, t.r.buf[:], &t.rsa)
		if errno != 0 {
			return
		}
		s.rtpPacket(&t.r, t.r.buf[:m], from)
	}
}

// maxTickRounds bounds the epoll_waits of one tick: a set that returns a full
// array is asked again (more sockets ready than the array holds, or a socket
// with several packets queued after a stall).
const maxTickRounds = 4

// tick is the shard's Shard.OnTick: it reads what is ready.
func (t *tickSlot) tick() {
	t.mu.Lock()
	for range maxTickRounds {
		if t.fd < 0 {
			break
		}
		n, err := epollWait(uintptr(t.fd), t.events[:])
		if err != nil || n <= 0 {
			break
		}
		handleReady(&t.socks, t.events[:n], &t.r, &t.rsa)
		if n < len(t.events) {
			break
		}
	}
	t.mu.Unlock()
}

// tickPolls has the wheel's shards poll the shared readers' sets (pollTick).
func tickPolls(w *clock.Wheel) {
	if sharedReaders && shardPolls {
		w.OnTick(pollTick)
	}
}

// shardPolls off: only the readers' goroutines read (the benchmarks' A/B,
// CXCO_BENCH_NO_TICK_POLL=1).
var shardPolls = true

// sockFD returns a socket's descriptor; it stays valid until the socket is
// closed, which stopPolling precedes.
func sockFD(c udpConn) (int32, error) {
	switch c := c.(type) {
	case *rawSock:
		return int32(c.fd), nil
	case *net.UDPConn:
		return connFD(c)
	}
	return 0, fmt.Errorf("media: cannot poll a %T", c)
}

func connFD(c *net.UDPConn) (int32, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var fd int32
	if err := rc.Control(func(f uintptr) { fd = int32(f) }); err != nil {
		return 0, err
	}
	return fd, nil
}

// recvfrom reads one datagram from a non-blocking socket without allocating
// (syscall.Recvfrom allocates the sender's address).
func recvfrom(fd int32, buf []byte, rsa *syscall.RawSockaddrAny) (int, netip.AddrPort, syscall.Errno) {
	l := uint32(syscall.SizeofSockaddrAny)
	n, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])),
		uintptr(len(buf)), 0, uintptr(unsafe.Pointer(rsa)), uintptr(unsafe.Pointer(&l)))
	if errno != 0 {
		return 0, netip.AddrPort{}, errno
	}
	var from netip.AddrPort
	switch rsa.Addr.Family {
	case syscall.AF_INET:
		a := (*syscall.RawSockaddrInet4)(unsafe.Pointer(rsa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&a.Port))[:])
		from = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), port)
	case syscall.AF_INET6:
		a := (*syscall.RawSockaddrInet6)(unsafe.Pointer(rsa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&a.Port))[:])
		addr := netip.AddrFrom16(a.Addr)
		if a.Scope_id != 0 {
			addr = addr.WithZone(strconv.FormatUint(uint64(a.Scope_id), 10)) // a link-local peer; Go resolves numeric zones
		}
		from = netip.AddrPortFrom(addr, port)
	}
	return int(n), from, 0
}

// rawSock is a stream's UDP socket as a bare non-blocking descriptor: the
// shared readers read it, so Go's netpoller need not watch it (a *net.UDPConn
// is always in the netpoller, which would be told of every packet a second
// time). The pacer's and RTCP's sends are one sendto each; a full socket
// buffer drops the packet (EAGAIN) instead of blocking the wheel's shard.
type rawSock struct {
	fd     int
	v6     bool // an AF_INET6 socket (dual-stack when bound to every address)
	local  *net.UDPAddr
	closed atomic.Bool
}

// listenRaw binds a rawSock as net.ListenUDP("udp") would: every local
// address (invalid or unspecified ip), IPv6 and IPv4 on one socket; an IPv4
// address, an IPv4 socket; an IPv6 one, an IPv6-only socket.
func listenRaw(ip netip.Addr, port int) (udpConn, error) {
	ip = ip.Unmap()
	wild := !ip.IsValid() || ip.IsUnspecified()
	v6 := wild || ip.Is6()
	family := syscall.AF_INET
	if v6 {
		family = syscall.AF_INET6
	}
	fd, err := syscall.Socket(family, syscall.SOCK_DGRAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, syscall.IPPROTO_UDP)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	fail := func(op string, err error) (udpConn, error) {
		syscall.Close(fd)
		return nil, &net.OpError{Op: "listen", Net: "udp", Addr: net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))),
			Err: os.NewSyscallError(op, err)}
	}
	var sa syscall.Sockaddr
	switch {
	case wild:
		if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY, 0); err != nil {
			return fail("setsockopt", err)
		}
		sa = &syscall.SockaddrInet6{Port: port}
	case v6:
		if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY, 1); err != nil {
			return fail("setsockopt", err)
		}
		sa = &syscall.SockaddrInet6{Port: port, Addr: ip.As16(), ZoneId: zoneID(ip.Zone())}
	default:
		sa = &syscall.SockaddrInet4{Port: port, Addr: ip.As4()}
	}
	if err := syscall.Bind(fd, sa); err != nil {
		return fail("bind", err)
	}
	got, err := syscall.Getsockname(fd)
	if err != nil {
		return fail("getsockname", err)
	}
	r := &rawSock{fd: fd, v6: v6}
	switch a := got.(type) {
	case *syscall.SockaddrInet4:
		r.local = &net.UDPAddr{IP: append(net.IP(nil), a.Addr[:]...), Port: a.Port}
	case *syscall.SockaddrInet6:
		r.local = &net.UDPAddr{IP: append(net.IP(nil), a.Addr[:]...), Port: a.Port, Zone: ip.Zone()}
	}
	return r, nil
}

func zoneID(zone string) uint32 {
	if zone == "" {
		return 0
	}
	if n, err := strconv.ParseUint(zone, 10, 32); err == nil {
		return uint32(n)
	}
	if ifi, err := net.InterfaceByName(zone); err == nil {
		return uint32(ifi.Index)
	}
	return 0
}

func (r *rawSock) LocalAddr() net.Addr { return r.local }

// WriteToUDPAddrPort sends one datagram without blocking and without
// allocating.
func (r *rawSock) WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	if !addr.IsValid() || len(b) == 0 {
		return 0, &net.OpError{Op: "write", Net: "udp", Err: syscall.EINVAL}
	}
	a := addr.Addr()
	var (
		sa4 syscall.RawSockaddrInet4
		sa6 syscall.RawSockaddrInet6
		p   unsafe.Pointer
		l   uintptr
	)
	switch {
	case r.v6:
		sa6.Family = syscall.AF_INET6
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa6.Port))[:], addr.Port())
		sa6.Addr = a.As16() // an IPv4 address as IPv4-mapped
		if a.Is6() && !a.Is4In6() {
			sa6.Scope_id = zoneID(a.Zone())
		}
		p, l = unsafe.Pointer(&sa6), syscall.SizeofSockaddrInet6
	case a.Unmap().Is4():
		sa4.Family = syscall.AF_INET
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:], addr.Port())
		sa4.Addr = a.Unmap().As4()
		p, l = unsafe.Pointer(&sa4), syscall.SizeofSockaddrInet4
	default:
		return 0, &net.OpError{Op: "write", Net: "udp", Err: syscall.EAFNOSUPPORT}
	}
	// A raw system call (no entersyscall/exitsyscall): the socket never blocks, so
	// the wheel's shard keeps its P through the send, and the runtime's sysmon
	// does not find it "in a system call", take its P away and wake another
	// thread for it (see rawSyscalls).
	n, _, errno := sendto(uintptr(r.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(p), l)
	if errno != 0 {
		return 0, &net.OpError{Op: "write", Net: "udp", Err: os.NewSyscallError("sendto", errno)}
	}
	return int(n), nil
}

// ReadFromUDPAddrPort reads one datagram if one is queued (the socket does
// not block: a stream that reads its own sockets has them as net.UDPConns,
// see ownSockets).
func (r *rawSock) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	var rsa syscall.RawSockaddrAny
	n, from, errno := recvfrom(int32(r.fd), b, &rsa)
	if errno != 0 {
		return 0, from, &net.OpError{Op: "read", Net: "udp", Err: os.NewSyscallError("recvfrom", errno)}
	}
	return n, from, nil
}

func (r *rawSock) Close() error {
	if r.closed.Swap(true) {
		return net.ErrClosed
	}
	return syscall.Close(r.fd)
}

// netConn turns the socket into a *net.UDPConn (Go's netpoller then watches
// it; the descriptor is duplicated and this one closed).
func (r *rawSock) netConn() (*net.UDPConn, error) {
	if err := syscall.SetNonblock(r.fd, true); err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(r.fd), "udp")
	r.closed.Store(true)
	defer f.Close()
	c, err := net.FilePacketConn(f)
	if err != nil {
		return nil, err
	}
	u, ok := c.(*net.UDPConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("media: %T from a UDP socket", c)
	}
	return u, nil
}

// ownSockets gives a stream whose sockets the shared readers cannot read
// sockets its own reader goroutines can.
func (s *Stream) ownSockets() error {
	for _, c := range []*udpConn{&s.rtp, &s.rtcp} {
		if r, ok := (*c).(*rawSock); ok {
			u, err := r.netConn()
			if err != nil {
				return err
			}
			*c = u
		}
	}
	return nil
}

// rawSyscalls: the media path's system calls on its non-blocking sockets (sendto,
// recvfrom, the readers' epoll_wait with a zero timeout) return in microseconds
// and never block, so they are made as raw system calls. A Go system call
// (syscall.Syscall) marks its P as in a system call; the runtime's sysmon, which
// wakes every 20 µs while it finds such Ps, takes the P of one that lasts past
// its tick away and starts another thread on it, and the caller then has to get
// a P back: at 25,000 sends a second that was a context switch storm and
// sysmon's own wake-ups (5% of the gateway's CPU in a perf profile at 500 calls).
// A raw call keeps the P; the cost is that the P runs nothing else for those
// microseconds, and a stop-the-world waits for them.
var rawSyscalls = true // false: Go system calls (the benchmarks' A/B, CXCO_BENCH_GO_SYSCALLS=1)

func sendto(fd, p, n, sa, salen uintptr) (uintptr, uintptr, syscall.Errno) {
	if rawSyscalls {
		return syscall.RawSyscall6(syscall.SYS_SENDTO, fd, p, n, 0, sa, salen)
	}
	return syscall.Syscall6(syscall.SYS_SENDTO, fd, p, n, 0, sa, salen)
}

// epollWait polls the set without blocking (timeout 0).
func epollWait(fd uintptr, events []syscall.EpollEvent) (int, error) {
	if !rawSyscalls {
		return syscall.EpollWait(int(fd), events, 0)
	}
	n, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, fd, uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
