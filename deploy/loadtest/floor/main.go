//go:build linux

// Command floor measures the part of a call's CPU cost that no gateway can avoid
// on this machine: the system calls themselves. It runs a process that does only
// the I/O an AI voice call needs and nothing else: for each call, every 20 ms, it
// reads one RTP packet the caller sent (recvfrom), sends one RTP packet to the
// caller (sendto), and writes one websocket frame of caller audio to the
// provider's TCP connection (write). No jitter buffer, no codec, no JSON, no
// base64, no timers per call: one goroutine on a locked thread, a 1 ms tick, one
// epoll_wait(0) per tick and the three calls per packet, made as raw system calls.
//
// The other ends (the callers and the provider) are a second process, started by
// this one, so their work is not counted, exactly as deploy/loadtest counts only
// the gateway: on loopback, a send also does the receiver's part of the kernel's
// work (the softirq runs in the sender's context), and so it does here.
//
//	go run ./deploy/loadtest/floor -calls 500 -seconds 20
//	go run ./deploy/loadtest/floor -calls 500 -seconds 20 -chunk-ms 40   # one write per 40 ms
//
// It prints the floor's CPU per call-second (user and system), the system calls
// it made and what the peer received. Bounded: at most 2000 calls and 120 s, all
// on 127.0.0.1.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

func main() {
	calls := flag.Int("calls", 500, "calls (each: a UDP socket and a TCP connection)")
	seconds := flag.Int("seconds", 20, "measured seconds, after a 3 s warm-up")
	rtpBytes := flag.Int("rtp", 172, "RTP packet size (12-byte header + 160 bytes of G.711)")
	wsBytes := flag.Int("ws", 248, "websocket frame size per 20 ms of caller audio (a masked text frame of {\"user_audio_chunk\":\"…\"} with 160 bytes of µ-law in base64)")
	chunkMs := flag.Int("chunk-ms", 20, "caller audio per websocket frame, a multiple of 20 ms")
	connected := flag.Bool("connected", false, "connect each UDP socket to its caller and send without an address (the kernel keeps the route)")
	peer := flag.Bool("peer", false, "internal: run as the callers and the provider")
	flag.Parse()
	if *peer {
		runPeer(*rtpBytes)
		return
	}
	if *calls < 1 || *calls > 2000 || *seconds < 1 || *seconds > 120 || *chunkMs < 20 || *chunkMs%20 != 0 {
		fmt.Fprintln(os.Stderr, "floor: -calls 1..2000, -seconds 1..120, -chunk-ms a multiple of 20")
		os.Exit(2)
	}
	if err := run(*calls, *seconds, *rtpBytes, *wsBytes*(*chunkMs/20), *chunkMs/20, *connected); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

// run is the measured process: it starts the peer, sets the calls up and runs them.
func run(calls, seconds, rtpBytes, wsBytes, wsEvery int, connected bool) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "-peer", "-rtp", strconv.Itoa(rtpBytes))
	cmd.Stderr = os.Stderr
	toPeer, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	fromPeer, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		toPeer.Close()
		cmd.Wait()
	}()
	in := bufio.NewReader(fromPeer)
	// The peer's provider port, then one UDP port per call once it has ours.
	line, err := in.ReadString('\n')
	if err != nil {
		return fmt.Errorf("peer: %w", err)
	}
	tcpPort := strings.TrimSpace(line)

	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	udp := make([]int, calls)
	ports := make([]string, calls)
	for i := range udp {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			return err
		}
		sa, err := syscall.Getsockname(fd)
		if err != nil {
			return err
		}
		udp[i], ports[i] = fd, strconv.Itoa(sa.(*syscall.SockaddrInet4).Port)
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}
		if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
			return err
		}
	}
	fmt.Fprintln(toPeer, strings.Join(ports, " "))
	line, err = in.ReadString('\n')
	if err != nil {
		return fmt.Errorf("peer: %w", err)
	}
	peerPorts := strings.Fields(line)
	if len(peerPorts) != calls {
		return fmt.Errorf("peer gave %d UDP ports for %d calls", len(peerPorts), calls)
	}
	dst := make([]syscall.RawSockaddrInet4, calls)
	for i, p := range peerPorts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return err
		}
		dst[i] = syscall.RawSockaddrInet4{Family: syscall.AF_INET, Port: uint16(n>>8) | uint16(n&0xff)<<8, Addr: [4]byte{127, 0, 0, 1}}
		if connected {
			if err := syscall.Connect(udp[i], &syscall.SockaddrInet4{Port: n, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
				return err
			}
		}
	}
	dstLen := unsafe.Sizeof(dst[0])
	if connected {
		dstLen = 0 // and a nil address: udp_sendmsg refuses a short one
	}
	tcp := make([]int, calls)
	conns := make([]net.Conn, calls) // kept so the runtime does not close them
	for i := range tcp {
		c, err := net.Dial("tcp", "127.0.0.1:"+tcpPort)
		if err != nil {
			return err
		}
		raw, err := c.(*net.TCPConn).SyscallConn()
		if err != nil {
			return err
		}
		raw.Control(func(fd uintptr) { tcp[i] = int(fd) })
		conns[i] = c
	}

	runtime.LockOSThread()
	rtp := make([]byte, rtpBytes)
	ws := make([]byte, wsBytes)
	buf := make([]byte, 1500)
	events := make([]syscall.EpollEvent, 256)
	var st counts
	var ru0 syscall.Rusage
	warm := 3000 // ms
	total := warm + seconds*1000
	start := time.Now()
	for k := 0; k < total; k++ {
		if k == warm {
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			st = counts{}
		}
		if d := time.Until(start.Add(time.Duration(k) * time.Millisecond)); d > 0 {
			time.Sleep(d)
		}
		// Read what is ready: one packet from each ready socket (level-triggered,
		// as the gateway's shared readers do).
		for {
			n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(ep), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
			st.syscalls++
			if e != 0 || n == 0 {
				break
			}
			for _, ev := range events[:n] {
				_, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(ev.Fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0, 0)
				st.syscalls++
				if e == 0 {
					st.reads++
				}
			}
			if int(n) < len(events) {
				break
			}
		}
		// The calls whose 20 ms slot this is: an RTP packet to the caller, and
		// every wsEvery-th slot a frame to the provider.
		for i := k % 20; i < calls; i += 20 {
			var to uintptr
			if dstLen != 0 {
				to = uintptr(unsafe.Pointer(&dst[i]))
			}
			_, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(udp[i]), uintptr(unsafe.Pointer(&rtp[0])), uintptr(len(rtp)), 0, to, dstLen)
			st.syscalls++
			if e == 0 {
				st.sends++
			} else {
				st.again++
			}
			if (k/20+i)%wsEvery == 0 {
				_, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(tcp[i]), uintptr(unsafe.Pointer(&ws[0])), uintptr(len(ws)))
				st.syscalls++
				if e == 0 {
					st.writes++
				} else {
					st.again++
				}
			}
		}
	}
	var ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	runtime.UnlockOSThread()
	user := time.Duration(syscall.TimevalToNsec(ru1.Utime) - syscall.TimevalToNsec(ru0.Utime))
	sys := time.Duration(syscall.TimevalToNsec(ru1.Stime) - syscall.TimevalToNsec(ru0.Stime))
	callSec := float64(calls * seconds)
	perCS := func(d time.Duration) float64 { return float64(d) / 1e6 / callSec }
	fmt.Fprintln(toPeer, "report")
	peerLine, _ := in.ReadString('\n')
	fmt.Printf("floor:    %d calls x %d s (%.0f call-seconds), load average %s\n", calls, seconds, callSec, loadavg())
	fmt.Printf("CPU:      %.3f ms per call-second (user %.3f, system %.3f); %.1f%% of one core\n",
		perCS(user+sys), perCS(user), perCS(sys), float64(user+sys)/float64(seconds)/1e7)
	fmt.Printf("syscalls: %.1f per call-second: recvfrom %.1f, sendto %.1f, write %.1f, epoll_pwait and the rest %.1f; EAGAIN %d\n",
		float64(st.syscalls)/callSec, float64(st.reads)/callSec, float64(st.sends)/callSec, float64(st.writes)/callSec,
		float64(st.syscalls-st.reads-st.sends-st.writes)/callSec, st.again)
	fmt.Printf("peer:     %s\n", strings.TrimSpace(peerLine))
	return nil
}

// counts are the floor's system calls in the measured window.
type counts struct{ reads, sends, writes, again, syscalls int64 }

// runPeer is the callers and the provider: a TCP listener whose connections are
// read and discarded, and one UDP socket per call that sends the floor an RTP
// packet every 20 ms and reads what the floor sends back.
func runPeer(rtpBytes int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "peer:", err)
		os.Exit(1)
	}
	var wsBytes, udpIn atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				b := make([]byte, 64<<10)
				for {
					n, err := c.Read(b)
					wsBytes.Add(int64(n))
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	in := bufio.NewReader(os.Stdin)
	line, err := in.ReadString('\n')
	if err != nil {
		return
	}
	var dst []*net.UDPAddr
	var socks []*net.UDPConn
	var ports []string
	for _, p := range strings.Fields(line) {
		n, _ := strconv.Atoi(p)
		dst = append(dst, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: n})
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			fmt.Fprintln(os.Stderr, "peer:", err)
			os.Exit(1)
		}
		socks = append(socks, c)
		ports = append(ports, strconv.Itoa(c.LocalAddr().(*net.UDPAddr).Port))
		go func() {
			b := make([]byte, 1500)
			for {
				if _, _, err := c.ReadFromUDP(b); err != nil {
					return
				}
				udpIn.Add(1)
			}
		}()
	}
	fmt.Println(strings.Join(ports, " "))
	done := make(chan struct{})
	go func() {
		// Until "report" (or the end of stdin): then say what arrived.
		in.ReadString('\n')
		close(done)
	}()
	pkt := make([]byte, rtpBytes)
	start := time.Now()
	for k := 0; ; k++ {
		select {
		case <-done:
			fmt.Printf("received %d RTP packets and %d bytes of websocket frames\n", udpIn.Load(), wsBytes.Load())
			return
		default:
		}
		if d := time.Until(start.Add(time.Duration(k) * time.Millisecond)); d > 0 {
			time.Sleep(d)
		}
		for i := k % 20; i < len(socks); i += 20 {
			socks[i].WriteToUDP(pkt, dst[i])
		}
	}
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
