package main

import (
	"context"
	"debug/elf"
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// TestComposeFile parses compose.yaml as docker compose would (there is no
// container engine on the test machines) and checks it names what the
// SPEC's environment table and the demo need.
func TestComposeFile(t *testing.T) {
	t.Parallel()
	opts, err := cli.NewProjectOptions([]string{"../../compose.yaml"}, cli.WithWorkingDirectory("../.."), cli.WithName("pgpush"))
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("load compose.yaml: %v", err)
	}
	pg, err := project.GetService("postgres")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(pg.Image, "postgres:") {
		t.Errorf("postgres image = %q, want the official postgres image", pg.Image)
	}
	if pg.HealthCheck == nil || len(pg.HealthCheck.Test) == 0 || !strings.Contains(strings.Join(pg.HealthCheck.Test, " "), "pg_isready") {
		t.Errorf("postgres healthcheck = %+v, want pg_isready", pg.HealthCheck)
	}
	if len(pg.Volumes) == 0 || pg.Volumes[0].Type != types.VolumeTypeVolume || pg.Volumes[0].Target != "/var/lib/postgresql/data" {
		t.Errorf("postgres volumes = %+v, want a named volume on the data directory", pg.Volumes)
	}

	app, err := project.GetService("pgpush")
	if err != nil {
		t.Fatal(err)
	}
	if app.Build == nil || app.Build.Dockerfile != "Dockerfile" {
		t.Errorf("pgpush build = %+v, want the repo's Dockerfile", app.Build)
	}
	if dep, ok := app.DependsOn["postgres"]; !ok || dep.Condition != types.ServiceConditionHealthy {
		t.Errorf("pgpush depends_on = %+v, want postgres service_healthy", app.DependsOn)
	}
	for _, name := range []string{"DATABASE_URL", "SESSION_SECRET", "PORT", "ALLOWED_ORIGINS", "EVENT_RETENTION"} {
		v, ok := app.Environment[name]
		if !ok || v == nil || *v == "" {
			t.Errorf("pgpush environment lacks %s", name)
		}
	}
	if v := app.Environment["SESSION_SECRET"]; v != nil && len(*v) < 32 {
		t.Errorf("SESSION_SECRET default is %d bytes; serve refuses fewer than 32", len(*v))
	}
	if v := app.Environment["DATABASE_URL"]; v != nil && !strings.Contains(*v, "@postgres:5432/") {
		t.Errorf("DATABASE_URL = %q, want the postgres service", *v)
	}
	if len(app.Ports) != 1 || app.Ports[0].Target != 3000 || app.Ports[0].Published != "3000" {
		t.Errorf("pgpush ports = %+v, want 3000:3000", app.Ports)
	}
	if app.HealthCheck == nil || !strings.Contains(strings.Join(app.HealthCheck.Test, " "), "healthcheck") {
		t.Errorf("pgpush healthcheck = %+v, want pgpush healthcheck", app.HealthCheck)
	}
	if _, ok := project.Volumes["pgdata"]; !ok {
		t.Error("compose.yaml declares no pgdata volume")
	}
}

// TestDockerfileBuild builds the binary with the Dockerfile's own build
// command and checks it is static and runs.
func TestDockerfileBuild(t *testing.T) {
	t.Parallel()
	dockerfile, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	text := string(dockerfile)
	for _, want := range []string{"AS build", "FROM gcr.io/distroless/static", "USER nonroot"} {
		if !strings.Contains(text, want) {
			t.Errorf("Dockerfile lacks %q (multi-stage, small final image, non-root)", want)
		}
	}
	m := regexp.MustCompile(`RUN CGO_ENABLED=0 go build (.*) -o /out/pgpush ./cmd/pgpush`).FindStringSubmatch(text)
	if m == nil {
		t.Fatal("Dockerfile has no recognisable build command")
	}
	flags := strings.ReplaceAll(m[1], "${VERSION}", "compose-test")
	bin := filepath.Join(t.TempDir(), "pgpush")
	args := append([]string{"build"}, splitQuoted(flags)...)
	args = append(args, "-o", bin, ".")
	cmd := osexec.Command("go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("binary is dynamically linked; distroless/static needs a static one")
		}
	}
	out, err := osexec.Command(bin, "version").Output()
	if err != nil || strings.TrimSpace(string(out)) != "pgpush compose-test" {
		t.Fatalf("pgpush version = %q, %v; want the version from -ldflags", out, err)
	}
}

// splitQuoted splits a shell word list with double quotes, enough for the
// Dockerfile's build flags.
func splitQuoted(s string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
		case r == ' ' && !quoted:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}
