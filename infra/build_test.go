package infra

import (
	"bufio"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/ticketing-go/ticketing/common/logx"
)

// skaffoldConfig is the part of the skaffold schema (skaffold/v4beta13)
// this repository uses; decoded strictly, so a misspelt key fails here
// rather than being ignored by skaffold. Extend it when skaffold.yaml needs
// more.
type skaffoldConfig struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Build struct {
		Local struct {
			Push        *bool `json:"push"`
			UseBuildkit *bool `json:"useBuildkit"`
		} `json:"local"`
		Artifacts []struct {
			Image   string `json:"image"`
			Context string `json:"context"`
			Docker  struct {
				Dockerfile string            `json:"dockerfile"`
				BuildArgs  map[string]string `json:"buildArgs"`
			} `json:"docker"`
		} `json:"artifacts"`
	} `json:"build"`
	Manifests skaffoldManifests `json:"manifests"`
	Deploy    struct {
		Kubectl *struct{} `json:"kubectl"`
	} `json:"deploy"`
	Profiles []skaffoldProfile `json:"profiles"`
}

type skaffoldProfile struct {
	Name      string            `json:"name"`
	Manifests skaffoldManifests `json:"manifests"`
	Patches   []skaffoldPatch   `json:"patches"`
}

type skaffoldPatch struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

type skaffoldManifests struct {
	RawYaml   []string `json:"rawYaml,omitempty"`
	Kustomize *struct {
		Paths     []string `json:"paths"`
		BuildArgs []string `json:"buildArgs,omitempty"`
	} `json:"kustomize,omitempty"`
}

func loadSkaffold(tb testing.TB) skaffoldConfig {
	tb.Helper()
	var c skaffoldConfig
	if err := unmarshalStrict([]byte(readFile(tb, root, "skaffold.yaml")), &c); err != nil {
		tb.Fatalf("skaffold.yaml: %v", err)
	}
	return c
}

// skaffoldImages is the set of images skaffold builds.
func skaffoldImages(tb testing.TB) map[string]bool {
	tb.Helper()
	out := map[string]bool{}
	for _, a := range loadSkaffold(tb).Build.Artifacts {
		out[a.Image] = true
	}
	return out
}

func TestSkaffold(t *testing.T) {
	c := loadSkaffold(t)
	if c.APIVersion != "skaffold/v4beta13" || c.Kind != "Config" {
		t.Errorf("skaffold.yaml is %s %s, want skaffold/v4beta13 Config", c.APIVersion, c.Kind)
	}
	if c.Build.Local.Push == nil || *c.Build.Local.Push {
		t.Error("build.local.push must be false (images stay in the local daemon)")
	}
	if c.Deploy.Kubectl == nil {
		t.Error("deploy.kubectl is not set")
	}
	if !slices.Equal(c.Manifests.RawYaml, []string{"infra/k8s/*"}) {
		t.Errorf("manifests.rawYaml = %v, want [infra/k8s/*]", c.Manifests.RawYaml)
	}

	// Every artifact is built from the one Dockerfile with its service as
	// the SERVICE build argument and the repository root as context, and
	// the artifacts and the Deployments' images are the same set.
	m := loadManifests(t)
	deployed := map[string]string{} // image -> deployment
	for name, d := range m.deployments {
		for _, ct := range d.Spec.Template.Spec.Containers {
			deployed[ct.Image] = name
		}
	}
	seen := map[string]bool{}
	for _, a := range c.Build.Artifacts {
		if seen[a.Image] {
			t.Errorf("artifact %s twice", a.Image)
		}
		seen[a.Image] = true
		if a.Context != "." {
			t.Errorf("artifact %s: context %q, want \".\" (the Dockerfiles need go.work and common/)", a.Image, a.Context)
		}
		svc := strings.TrimPrefix(a.Image, "ticketing/")
		if want := "services/Dockerfile"; a.Docker.Dockerfile != want {
			t.Errorf("artifact %s: dockerfile %q, want %q", a.Image, a.Docker.Dockerfile, want)
		}
		if got := a.Docker.BuildArgs["SERVICE"]; got != svc {
			t.Errorf("artifact %s: build argument SERVICE %q, want %q", a.Image, got, svc)
		}
		if _, err := os.Stat(filepath.Join(root, a.Context, a.Docker.Dockerfile)); err != nil {
			t.Errorf("artifact %s: %v", a.Image, err)
		}
		if _, ok := deployed[a.Image]; !ok {
			t.Errorf("artifact %s is built but no Deployment runs it", a.Image)
		}
	}
	for image, d := range deployed {
		if !seen[image] {
			t.Errorf("Deployment %s runs %s, which skaffold does not build", d, image)
		}
	}
	for _, name := range services {
		if !seen["ticketing/"+name] {
			t.Errorf("no skaffold artifact for %s", name)
		}
	}
}

// kustomization is the part of the kustomize schema the overlays use.
type kustomization struct {
	APIVersion         string   `json:"apiVersion"`
	Kind               string   `json:"kind"`
	Resources          []string `json:"resources"`
	ConfigMapGenerator []struct {
		Name  string   `json:"name"`
		Files []string `json:"files"`
	} `json:"configMapGenerator,omitempty"`
	Patches []kustomizePatch `json:"patches"`
}

type kustomizePatch struct {
	Target struct {
		Kind          string `json:"kind"`
		LabelSelector string `json:"labelSelector,omitempty"`
	} `json:"target"`
	Patch string `json:"patch"`
}

// TestProfiles: every overlay of infra/ is deployed by one skaffold
// profile, which renders it with kustomize (reading ../k8s needs
// --load-restrictor LoadRestrictionsNone) and drops the raw list of
// infra/k8s, and every kustomize profile renders an overlay.
func TestProfiles(t *testing.T) {
	c := loadSkaffold(t)
	rendered := map[string]string{} // overlay -> profile
	for _, p := range c.Profiles {
		if p.Manifests.Kustomize == nil {
			continue
		}
		if len(p.Manifests.Kustomize.Paths) != 1 {
			t.Errorf("profile %s renders %v, want one overlay", p.Name, p.Manifests.Kustomize.Paths)
			continue
		}
		dir, ok := strings.CutPrefix(p.Manifests.Kustomize.Paths[0], "infra/")
		if _, err := os.Stat(filepath.Join(dir, "kustomization.yaml")); !ok || err != nil {
			t.Errorf("profile %s renders %s, which is not an overlay of infra/", p.Name, p.Manifests.Kustomize.Paths[0])
			continue
		}
		if prev, dup := rendered[dir]; dup {
			t.Errorf("profiles %s and %s both render %s", prev, p.Name, dir)
		}
		rendered[dir] = p.Name
		if !slices.Equal(p.Manifests.Kustomize.BuildArgs, []string{"--load-restrictor", "LoadRestrictionsNone"}) {
			t.Errorf("profile %s: the overlay reads ../k8s: it needs --load-restrictor LoadRestrictionsNone", p.Name)
		}
		if !slices.ContainsFunc(p.Patches, func(pt skaffoldPatch) bool { return pt.Op == "remove" && pt.Path == "/manifests/rawYaml" }) {
			t.Errorf("profile %s must remove /manifests/rawYaml, or infra/k8s is applied beside the overlay", p.Name)
		}
	}
	for _, dir := range overlays(t) {
		if _, ok := rendered[dir]; !ok {
			t.Errorf("no skaffold profile renders the overlay infra/%s", dir)
		}
	}
}

// profileOverlay returns the overlay the named profile renders and its
// kustomization.yaml, decoded strictly.
func profileOverlay(t *testing.T, profile string) (string, kustomization) {
	t.Helper()
	c := loadSkaffold(t)
	i := slices.IndexFunc(c.Profiles, func(p skaffoldProfile) bool { return p.Name == profile })
	if i < 0 {
		t.Fatalf("skaffold.yaml has no profile %q", profile)
	}
	k := c.Profiles[i].Manifests.Kustomize
	if k == nil || len(k.Paths) != 1 {
		t.Fatalf("profile %s must render one overlay with kustomize", profile)
	}
	dir := strings.TrimPrefix(k.Paths[0], "infra/")
	var kz kustomization
	if err := unmarshalStrict([]byte(readFile(t, dir, "kustomization.yaml")), &kz); err != nil {
		t.Fatalf("%s/kustomization.yaml: %v", dir, err)
	}
	return dir, kz
}

// baseResources returns the files of infra/k8s as an overlay lists them
// (../k8s/<file>), but those in except.
func baseResources(tb testing.TB, except ...string) []string {
	tb.Helper()
	var out []string
	for _, f := range manifestFiles(tb) {
		if !slices.Contains(except, filepath.Base(f)) {
			out = append(out, "../k8s/"+filepath.Base(f))
		}
	}
	return out
}

func TestReplicasProfile(t *testing.T) {
	dir, k := profileOverlay(t, "replicas")
	if dir != "k8s-replicas" {
		t.Errorf("profile replicas renders infra/%s, want infra/k8s-replicas", dir)
	}
	got := slices.Clone(k.Resources)
	sort.Strings(got)
	if want := baseResources(t); !slices.Equal(got, want) {
		t.Errorf("the overlay's resources %v are not the files of infra/k8s %v", got, want)
	}
	patched := slices.ContainsFunc(k.Patches, func(p kustomizePatch) bool {
		return p.Target.Kind == "Deployment" && strings.Contains(p.Patch, "/spec/replicas") && strings.Contains(p.Patch, "value: 2")
	})
	if !patched {
		t.Error("the overlay does not set two replicas on the Deployments")
	}

	// Render it for real, with the kustomize that skaffold's profile uses
	// (kustomize v5.7.1's library).
	m := renderOverlay(t, dir)
	base := loadManifests(t)
	if len(m.files) != len(base.files) {
		t.Errorf("the overlay renders %d objects, infra/k8s has %d", len(m.files), len(base.files))
	}
	for key := range base.files {
		if _, ok := m.files[key]; !ok {
			t.Errorf("the overlay does not render %s", key)
		}
	}
	for _, d := range m.deployments {
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
			t.Errorf("rendered Deployment %s: replicas %v, want 2", d.Name, d.Spec.Replicas)
		}
	}
	for _, s := range m.statefulSets {
		if s.Spec.Replicas == nil || *s.Spec.Replicas != 1 {
			t.Errorf("rendered StatefulSet %s must stay at one replica", s.Name)
		}
	}
	if len(m.deployments) != len(services) {
		t.Errorf("rendered %d Deployments, want %d", len(m.deployments), len(services))
	}
}

// dockerfile is a Dockerfile as logical lines (continuations joined,
// comments dropped).
func dockerfileLines(tb testing.TB, path string) []string {
	tb.Helper()
	var out []string
	var cur strings.Builder
	sc := bufio.NewScanner(strings.NewReader(readFile(tb, path)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		if s := strings.TrimSpace(cur.String()); s != "" {
			out = append(out, s)
		}
		cur.Reset()
	}
	return out
}

var goBuildTarget = regexp.MustCompile(`go build .*?(\./services/[a-z]+)\s*$`)

func TestDockerfiles(t *testing.T) {
	for _, name := range services {
		t.Run(name, func(t *testing.T) {
			// One Dockerfile for every service: read it as docker builds it
			// with --build-arg SERVICE=name (skaffold's buildArgs).
			path := filepath.Join(root, "services", "Dockerfile")
			lines := dockerfileLines(t, path)
			if len(lines) == 0 {
				t.Fatal("empty Dockerfile")
			}
			if !slices.Contains(lines, "ARG SERVICE") {
				t.Fatal("no ARG SERVICE: the service to build is a build argument")
			}
			for i, l := range lines {
				lines[i] = strings.NewReplacer("${SERVICE}", name, "$SERVICE", name).Replace(l)
			}
			var stages []string // stage names and images, for FROM <stage>
			var froms []string
			var user, expose, entrypoint, build string
			for _, l := range lines {
				f := strings.Fields(l)
				switch strings.ToUpper(f[0]) {
				case "FROM":
					image := f[1]
					if !slices.Contains(stages, image) {
						if err := pinned(image); err != nil {
							t.Errorf("FROM %s: %v", image, err)
						}
					}
					froms = append(froms, image)
					if len(f) == 4 && strings.EqualFold(f[2], "AS") {
						stages = append(stages, f[3])
					}
					user, expose, entrypoint = "", "", "" // per stage: the last one counts
				case "USER":
					user = f[1]
				case "EXPOSE":
					expose = f[1]
				case "ENTRYPOINT", "CMD":
					entrypoint = l
				case "COPY", "ADD":
					if strings.HasPrefix(f[1], "--from=") {
						continue
					}
					for _, src := range f[1 : len(f)-1] {
						if strings.HasPrefix(src, "--") {
							continue
						}
						if _, err := os.Stat(filepath.Join(root, src)); err != nil {
							t.Errorf("%s: source %s is not in the build context (the repository root): %v", f[0], src, err)
						}
					}
				case "RUN":
					if strings.Contains(l, "go build") {
						build = l
					}
				}
			}
			if len(froms) < 2 {
				t.Errorf("want a multi-stage build, got FROM %v", froms)
			} else {
				if !strings.HasPrefix(froms[0], "golang:1.26") {
					t.Errorf("build stage FROM %s, want golang:1.26.x", froms[0])
				}
				if last := froms[len(froms)-1]; !strings.HasPrefix(last, "gcr.io/distroless/static") && last != "scratch" {
					t.Errorf("run stage FROM %s, want distroless static or scratch", last)
				}
			}
			if user == "" || user == "root" || user == "0" || strings.HasPrefix(user, "0:") {
				t.Errorf("run stage USER %q, want a non-root user", user)
			}
			if expose != "3000" {
				t.Errorf("EXPOSE %q, want 3000", expose)
			}
			if entrypoint == "" {
				t.Error("no ENTRYPOINT")
			}
			text := strings.Join(lines, "\n")
			for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags="-s -w"`} {
				if !strings.Contains(text, want) {
					t.Errorf("the build lacks %s", want)
				}
			}
			sm := goBuildTarget.FindStringSubmatch(build)
			if sm == nil {
				t.Fatalf("no `go build ... ./services/%s` in %q", name, build)
			}
			if sm[1] != "./services/"+name {
				t.Errorf("builds %s, want ./services/%s", sm[1], name)
			}
			if !isMainPackage(t, filepath.Join(root, sm[1])) {
				t.Errorf("%s is not a main package", sm[1])
			}
		})
	}
}

// isMainPackage reports whether dir holds a non-test Go file of package main.
func isMainPackage(tb testing.TB, dir string) bool {
	tb.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		if regexp.MustCompile(`(?m)^package main\b`).MatchString(readFile(tb, f)) {
			return true
		}
	}
	return false
}

// The build context must keep every module go.work lists, or the
// workspace does not load inside the image.
func TestDockerignoreKeepsWorkspace(t *testing.T) {
	var patterns []string
	for _, l := range strings.Split(readFile(t, root, ".dockerignore"), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, strings.TrimPrefix(l, "/"))
		}
	}
	needed := []string{"go.work", "go.work.sum"}
	for _, l := range strings.Split(readFile(t, root, "go.work"), "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "./") {
			needed = append(needed, strings.TrimPrefix(l, "./"), strings.TrimPrefix(l, "./")+"/go.mod")
		}
	}
	for _, n := range needed {
		for _, p := range patterns {
			if ok, _ := filepath.Match(p, n); ok || p == n || strings.HasPrefix(n, p+"/") {
				t.Errorf(".dockerignore pattern %q excludes %s, which the workspace needs", p, n)
			}
		}
	}
}

// envRead matches a variable read through common/config.
var envRead = regexp.MustCompile(`\.(String|Required|Secret|Duration|Int|Bool)\(\s*"([A-Z][A-Z0-9_]*)"`)

// serviceEnv returns the variables a service reads (from its code, and
// from common/events when it uses events) and those it requires.
func serviceEnv(tb testing.TB, name string) (reads, required map[string]bool) {
	tb.Helper()
	reads, required = map[string]bool{logx.EnvFormat: true, logx.EnvLevel: true}, map[string]bool{}
	usesEvents := false
	scan := func(dir string, events bool) {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			src := readFile(tb, path)
			if !events && strings.Contains(src, `"github.com/ticketing-go/ticketing/common/events"`) {
				usesEvents = true
			}
			for _, m := range envRead.FindAllStringSubmatch(src, -1) {
				reads[m[2]] = true
				if !events && (m[1] == "Required" || m[1] == "Secret") {
					required[m[2]] = true
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	scan(filepath.Join(root, "services", name), false)
	if usesEvents {
		scan(filepath.Join(root, "common", "events"), true)
	}
	return reads, required
}

// runtimeEnv are variables read by the Go runtime, not by the code.
var runtimeEnv = map[string]bool{"GOMEMLIMIT": true, "GOMAXPROCS": true, "GODEBUG": true, "GOGC": true}

func TestDeploymentEnvMatchesServiceConfig(t *testing.T) {
	forEachSet(t, func(t *testing.T, m *manifests) {
		for _, name := range services {
			d, ok := m.deployments[name+"-depl"]
			if !ok || !isMainPackage(t, filepath.Join(root, "services", name)) {
				continue
			}
			reads, required := serviceEnv(t, name)
			vars := env(d.Spec.Template.Spec.Containers[0])
			for v := range required {
				if _, ok := vars[v]; !ok {
					t.Errorf("%s requires %s; Deployment %s does not set it", name, v, d.Name)
				}
			}
			for v := range vars {
				if !reads[v] && !runtimeEnv[v] {
					t.Errorf("Deployment %s sets %s, which %s never reads (a typo?)", d.Name, v, name)
				}
			}
		}
	})
}

// docPage returns a page of docs/ (KUBERNETES.md, CONFIGURATION.md: the
// pages these tests hold to the manifests and the code).
func docPage(tb testing.TB, name string) string {
	tb.Helper()
	return readFile(tb, root, "docs", name)
}

func TestDocsDocumentSecretsAndConfiguration(t *testing.T) {
	m := loadManifests(t)
	run := docPage(t, "KUBERNETES.md")
	for _, w := range m.workloads() {
		for _, c := range w.pod.Spec.Containers {
			for _, e := range c.Env {
				if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
					continue
				}
				ref := e.ValueFrom.SecretKeyRef
				if !strings.Contains(run, "kubectl create secret generic "+ref.Name) || !strings.Contains(run, ref.Key+"=") {
					t.Errorf("%s/%s uses Secret %s key %s: docs/KUBERNETES.md must show `kubectl create secret generic %s --from-literal=%s=...`",
						w.kind, w.name, ref.Name, ref.Key, ref.Name, ref.Key)
				}
			}
		}
	}
	conf := docPage(t, "CONFIGURATION.md")
	for _, name := range services {
		if !isMainPackage(t, filepath.Join(root, "services", name)) {
			continue
		}
		reads, _ := serviceEnv(t, name)
		for v := range reads {
			if !strings.Contains(conf, "`"+v+"`") {
				t.Errorf("%s reads %s; docs/CONFIGURATION.md does not document it", name, v)
			}
		}
	}
}

// metricName matches the name in a metrics.*Opts literal.
var metricName = regexp.MustCompile(`Name:\s+"([a-z_:][a-z0-9_:]*)"`)

func TestDocsDocumentMetrics(t *testing.T) {
	run := docPage(t, "KUBERNETES.md")
	found := 0
	err := filepath.WalkDir(filepath.Join(root, "common"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		src := readFile(t, path)
		if !strings.Contains(src, `"github.com/ticketing-go/ticketing/common/metrics"`) {
			return nil
		}
		for _, m := range metricName.FindAllStringSubmatch(src, -1) {
			found++
			if !strings.Contains(run, "`"+m[1]+"`") && !strings.Contains(run, "`"+m[1]+"{") {
				t.Errorf("%s defines metric %s; docs/KUBERNETES.md does not list it", path, m[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found == 0 {
		t.Error("no metric definitions found in common/")
	}
}
