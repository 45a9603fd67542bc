package store

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The spool file: what the spool still held when the process stopped with Redis
// away. One file per stop, named spool-<node>-<unix ns>.log in the spool
// directory, written once and fsynced (the file, then the directory), never
// rewritten. Its first line is the header, then one write per line:
//
//	cxco-spool 1
//	<crc32 (IEEE) of the JSON, 8 hex digits> <the Write as JSON>
//
// A start replays every file it can lock (another gateway on the machine may be
// replaying one), queueing its writes in order, and removes the file once they are
// all done. A line whose checksum or JSON is wrong, or a last line cut short (the
// machine died while writing), is skipped and counted: a damaged file never stops
// the gateway from starting, and its good lines are still replayed.

const spoolHeader = "cxco-spool 1"

// spoolFileName is the name of the next file node writes.
func spoolFileName(node string) string {
	clean := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.', r == '_':
			return r
		}
		return '_'
	}, node)
	if clean == "" {
		clean = "node"
	}
	return fmt.Sprintf("spool-%s-%d.log", clean, time.Now().UnixNano())
}

// encodeSpoolLine is one line of the file.
func encodeSpoolLine(w Write) ([]byte, error) {
	b, err := marshal(w)
	if err != nil {
		return nil, err
	}
	return fmt.Appendf(nil, "%08x %s\n", crc32.ChecksumIEEE(b), b), nil
}

// writeSpoolFile writes ws, in order, to a new file in dir, as many as fit in
// maxBytes, and syncs it to disk. It returns the file and how many were written.
func writeSpoolFile(dir, node string, ws []Write, maxBytes int64) (string, int, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", 0, err
	}
	path := filepath.Join(dir, spoolFileName(node))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return "", 0, err
	}
	bw := bufio.NewWriter(f)
	size := int64(len(spoolHeader) + 1)
	_, _ = bw.WriteString(spoolHeader + "\n")
	n := 0
	for _, w := range ws {
		line, err := encodeSpoolLine(w)
		if err != nil { // Close logged it: nothing of it can be kept
			n++
			continue
		}
		if size+int64(len(line)) > maxBytes {
			break
		}
		if _, err := bw.Write(line); err != nil {
			break
		}
		size += int64(len(line))
		n++
	}
	err = bw.Flush()
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return path, 0, err
	}
	// The directory entry too: a file that vanishes with a power cut helps no one.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return path, n, nil
}

// readSpool reads a spool file's writes; bad counts the lines skipped (damaged, or
// a last line cut short). An unknown header makes the whole file unreadable.
func readSpool(r io.Reader) (ws []Write, bad int, err error) {
	br := bufio.NewReader(r)
	head, err := br.ReadString('\n')
	if strings.TrimRight(head, "\n") != spoolHeader {
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, 0, err
		}
		return nil, 0, fmt.Errorf("not a spool file (header %.20q)", head)
	}
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			if w, ok := decodeSpoolLine(line); ok {
				ws = append(ws, w)
			} else {
				bad++
			}
		}
		if errors.Is(err, io.EOF) {
			return ws, bad, nil
		}
		if err != nil {
			return ws, bad, err
		}
	}
}

func decodeSpoolLine(line []byte) (Write, bool) {
	var w Write
	body, ok := bytes.CutSuffix(line, []byte("\n"))
	if !ok || len(body) < 10 || body[8] != ' ' { // no newline: the last line, cut short
		return w, false
	}
	var sum uint32
	if _, err := fmt.Sscanf(string(body[:8]), "%08x", &sum); err != nil || crc32.ChecksumIEEE(body[9:]) != sum {
		return w, false
	}
	if err := json.Unmarshal(body[9:], &w); err != nil || w.Op == "" {
		return w, false
	}
	return w, true
}

// replayFile is a spool file being replayed: locked while its writes wait, removed
// once they are all done.
type replayFile struct {
	path string
	f    *os.File
	left int
}

// release unlocks the file, removing it first if remove.
func (r *replayFile) release(remove bool) {
	if remove {
		_ = os.Remove(r.path)
	}
	unlockFile(r.f)
	r.f.Close()
}

// jobDone counts a finished (or dropped) write against its file. Called with p.mu held.
func (p *Spool) jobDone(j spoolJob) {
	if j.file == nil {
		return
	}
	j.file.left--
	if j.file.left > 0 {
		return
	}
	j.file.release(true)
	for i, f := range p.files {
		if f == j.file {
			p.files = append(p.files[:i], p.files[i+1:]...)
			break
		}
	}
}

// ReplayStats says what Replay found.
type ReplayStats struct {
	Files   int // files replayed
	Writes  int // writes queued from them
	Skipped int // damaged lines skipped
	Busy    int // files another process is replaying
}

// Replay queues the writes of every spool file in Dir that no other process is
// replaying. They run in the order they were written, before anything queued
// later; each file is removed once its writes are done. A damaged line is skipped
// and counted; a file that is not a spool file is renamed *.bad and left alone.
func (p *Spool) Replay() (ReplayStats, error) {
	var st ReplayStats
	if p.dir == "" {
		return st, nil
	}
	paths, err := filepath.Glob(filepath.Join(p.dir, "spool-*.log"))
	if err != nil {
		return st, err
	}
	for _, path := range paths {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			continue // gone: another process finished it
		}
		if !lockFile(f) {
			f.Close()
			st.Busy++
			continue
		}
		ws, bad, err := readSpool(io.LimitReader(f, 2*p.maxBytes))
		if err != nil {
			p.log.Error("spool file unreadable: set aside", "file", path, "err", err)
			_ = os.Rename(path, path+".bad")
			unlockFile(f)
			f.Close()
			continue
		}
		if bad > 0 {
			p.log.Warn("spool file damaged: skipped the lines that do not check out", "file", path, "skipped", bad, "good", len(ws))
		}
		st.Skipped += bad
		rf := &replayFile{path: path, f: f}
		if len(ws) == 0 {
			rf.release(true)
			continue
		}
		st.Files++
		st.Writes += len(ws)
		rf.left = len(ws)
		p.mu.Lock()
		p.files = append(p.files, rf)
		p.mu.Unlock()
		for _, w := range ws {
			p.queue(spoolJob{w: w, file: rf})
		}
		p.log.Info("replaying a spool file", "file", path, "writes", len(ws))
	}
	return st, nil
}
