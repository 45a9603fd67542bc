//go:build !unix

package store

import "os"

// lockFile: no advisory locks here; one gateway per spool directory.
func lockFile(*os.File) bool { return true }

func unlockFile(*os.File) {}
