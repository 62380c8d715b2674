package main

import (
	"os"
	"strings"
	"testing"
)

// TestReadmeCommands keeps the README's first two commands true: the demo
// command names this binary's demo, and .ci/run runs exactly the test command.
func TestReadmeCommands(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	ci, err := os.ReadFile("../../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	for _, line := range strings.Split(string(readme), "\n")[:8] {
		if cmd, _, ok := strings.Cut(line, "#"); ok && strings.HasPrefix(line, "go ") {
			cmds = append(cmds, strings.TrimSpace(cmd))
		}
	}
	if len(cmds) != 2 {
		t.Fatalf("README's first lines hold %d commands, want the demo and the test command", len(cmds))
	}
	if cmds[0] != "go run ./cmd/pgpush demo --simulate" {
		t.Errorf("demo command = %q", cmds[0])
	}
	var ciCmd string
	for _, line := range strings.Split(string(ci), "\n") {
		if strings.HasPrefix(line, "go test") {
			ciCmd = strings.TrimSpace(line)
		}
	}
	if ciCmd != cmds[1] {
		t.Errorf(".ci/run runs %q, README says %q", ciCmd, cmds[1])
	}
}
