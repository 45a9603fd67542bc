package main

import (
	"os"
	"os/exec"
	"testing"

	"github.com/cxco/gateway/cmd/cxco/cxcotest"
)

// inOwnNetNS runs the calling test again in a network namespace of its own
// (unshare -n) whose only interface is loopback, so nothing it or its children
// open can listen on, or send to, anything beyond this machine. It returns true
// in the parent, once the run in the namespace has passed (or failed the test),
// and false in the namespace, with lo up: the test goes on there.
func inOwnNetNS(t *testing.T) bool {
	t.Helper()
	if os.Getenv("CXCO_IN_NETNS") == "1" {
		if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
			t.Fatalf("ip link set lo up: %v %s", err, out)
		}
		return false
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatal("unshare (util-linux) is needed to run this test in its own network namespace")
	}
	bin := cxcotest.Binary(t) // build outside: the namespace has no network for the Go proxy
	cmd := exec.Command(unshare, "-n", "--", os.Args[0], "-test.run", "^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "CXCO_IN_NETNS=1", "CXCO_TEST_BINARY="+bin)
	out, err := cmd.CombinedOutput()
	t.Logf("in the namespace:\n%s", out)
	if err != nil {
		t.Fatalf("the test in its network namespace failed: %v", err)
	}
	return true
}
