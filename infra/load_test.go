package infra

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	kusttypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// root is the repository root, seen from this package's directory.
const root = ".."

// services are the six Go services; each has an image (services/Dockerfile), a Deployment
// <name>-depl and a Service <name>-srv; all but the web client have their own MongoDB.
var services = []string{"auth", "tickets", "orders", "expiration", "payments", "client"}

// hasDatabase reports whether the service has its own MongoDB (the web
// client has none: it calls the APIs).
func hasDatabase(name string) bool { return name != "client" }

// manifests is every object of infra/k8s (or of an overlay, rendered),
// decoded strictly.
type manifests struct {
	deployments  map[string]*appsv1.Deployment
	statefulSets map[string]*appsv1.StatefulSet
	services     map[string]*corev1.Service
	ingresses    map[string]*networkingv1.Ingress
	configMaps   map[string]*corev1.ConfigMap
	budgets      map[string]*policyv1.PodDisruptionBudget
	files        map[string]string // "Kind/name" -> file
}

func newManifests() *manifests {
	return &manifests{
		deployments:  map[string]*appsv1.Deployment{},
		statefulSets: map[string]*appsv1.StatefulSet{},
		services:     map[string]*corev1.Service{},
		ingresses:    map[string]*networkingv1.Ingress{},
		configMaps:   map[string]*corev1.ConfigMap{},
		budgets:      map[string]*policyv1.PodDisruptionBudget{},
		files:        map[string]string{},
	}
}

// add records one decoded object found in file (document i, from 1).
func (m *manifests) add(tb testing.TB, file string, i int, kind string, obj any) {
	tb.Helper()
	var name string
	switch o := obj.(type) {
	case *appsv1.Deployment:
		name = o.Name
		m.deployments[name] = o
	case *appsv1.StatefulSet:
		name = o.Name
		m.statefulSets[name] = o
	case *corev1.Service:
		name = o.Name
		m.services[name] = o
	case *networkingv1.Ingress:
		name = o.Name
		m.ingresses[name] = o
	case *corev1.ConfigMap:
		name = o.Name
		m.configMaps[name] = o
	case *policyv1.PodDisruptionBudget:
		name = o.Name
		m.budgets[name] = o
	}
	key := kind + "/" + name
	if name == "" {
		tb.Errorf("%s, document %d: %s without a name", file, i, kind)
	}
	if prev, dup := m.files[key]; dup {
		tb.Errorf("%s defined twice (%s and %s)", key, prev, file)
	}
	m.files[key] = file
}

// workload is what Deployments and StatefulSets share.
type workload struct {
	kind, name string
	selector   *metav1.LabelSelector
	pod        corev1.PodTemplateSpec
	claims     []corev1.PersistentVolumeClaim
}

func (m *manifests) workloads() []workload {
	var out []workload
	for _, name := range sortedKeys(m.deployments) {
		d := m.deployments[name]
		out = append(out, workload{"Deployment", name, d.Spec.Selector, d.Spec.Template, nil})
	}
	for _, name := range sortedKeys(m.statefulSets) {
		s := m.statefulSets[name]
		out = append(out, workload{"StatefulSet", name, s.Spec.Selector, s.Spec.Template, s.Spec.VolumeClaimTemplates})
	}
	return out
}

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// splitDocs splits a multi-document YAML file, dropping empty documents.
func splitDocs(data []byte) [][]byte {
	var out [][]byte
	for _, d := range docSep.Split(string(data), -1) {
		// A document of comments only is empty.
		empty := true
		for _, line := range strings.Split(d, "\n") {
			if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
				empty = false
				break
			}
		}
		if !empty {
			out = append(out, []byte(d))
		}
	}
	return out
}

// decodeStrict decodes one manifest into its k8s.io/api type; an unknown
// or duplicate field is an error, and so is a kind this repository does not
// use (add it here when a manifest needs one).
func decodeStrict(doc []byte) (kind string, obj any, err error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return "", nil, err
	}
	want := map[string]string{
		"Deployment":          "apps/v1",
		"StatefulSet":         "apps/v1",
		"Service":             "v1",
		"Ingress":             "networking.k8s.io/v1",
		"ConfigMap":           "v1",
		"PodDisruptionBudget": "policy/v1",
	}
	api, ok := want[tm.Kind]
	if !ok {
		return tm.Kind, nil, fmt.Errorf("kind %q (apiVersion %q) is not one the infra test knows", tm.Kind, tm.APIVersion)
	}
	if tm.APIVersion != api {
		return tm.Kind, nil, fmt.Errorf("%s has apiVersion %q, want %q", tm.Kind, tm.APIVersion, api)
	}
	switch tm.Kind {
	case "Deployment":
		obj = &appsv1.Deployment{}
	case "StatefulSet":
		obj = &appsv1.StatefulSet{}
	case "Service":
		obj = &corev1.Service{}
	case "Ingress":
		obj = &networkingv1.Ingress{}
	case "ConfigMap":
		obj = &corev1.ConfigMap{}
	case "PodDisruptionBudget":
		obj = &policyv1.PodDisruptionBudget{}
	}
	return tm.Kind, obj, unmarshalStrict(doc, obj)
}

// unmarshalStrict decodes YAML as the API server does: field names are
// case-sensitive, and an unknown or duplicate field is an error
// (sigs.k8s.io/yaml's own strict mode matches names case-insensitively,
// so "readinessprobe" would pass for "readinessProbe").
func unmarshalStrict(doc []byte, obj any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strict, err := kjson.UnmarshalStrict(j, obj)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// manifestFiles lists infra/k8s/*, the files skaffold applies.
func manifestFiles(tb testing.TB) []string {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join("k8s", "*"))
	if err != nil {
		tb.Fatal(err)
	}
	if len(files) == 0 {
		tb.Fatal("no manifests in infra/k8s")
	}
	sort.Strings(files)
	return files
}

// loadManifests decodes every manifest of infra/k8s, failing the test on
// any error.
func loadManifests(tb testing.TB) *manifests {
	tb.Helper()
	m := newManifests()
	for _, file := range manifestFiles(tb) {
		if ext := filepath.Ext(file); ext != ".yaml" && ext != ".yml" {
			tb.Errorf("%s: infra/k8s holds only YAML manifests (skaffold applies infra/k8s/*)", file)
			continue
		}
		data, err := os.ReadFile(file)
		if err != nil {
			tb.Fatal(err)
		}
		docs := splitDocs(data)
		if len(docs) == 0 {
			tb.Errorf("%s: no manifest", file)
		}
		for i, doc := range docs {
			kind, obj, err := decodeStrict(doc)
			if err != nil {
				tb.Errorf("%s, document %d: %v", file, i+1, err)
				continue
			}
			m.add(tb, file, i+1, kind, obj)
		}
	}
	return m
}

// overlays lists the kustomize overlays of infra/ (every directory with a
// kustomization.yaml; each is a skaffold profile, TestProfiles checks it).
func overlays(tb testing.TB) []string {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join("*", "kustomization.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	if len(files) == 0 {
		tb.Fatal("no kustomize overlay in infra/")
	}
	var dirs []string
	for _, f := range files {
		dirs = append(dirs, filepath.Dir(f))
	}
	sort.Strings(dirs)
	return dirs
}

// renderOverlay builds the kustomize overlay in dir (relative to infra/)
// as skaffold's profile does, with kustomize's library (v5.7.1) and
// --load-restrictor LoadRestrictionsNone, and decodes every object
// strictly, failing the test on any error.
func renderOverlay(tb testing.TB, dir string) *manifests {
	tb.Helper()
	opts := krusty.MakeDefaultOptions()
	opts.LoadRestrictions = kusttypes.LoadRestrictionsNone
	resMap, err := krusty.MakeKustomizer(opts).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		tb.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := resMap.AsYaml()
	if err != nil {
		tb.Fatalf("kustomize build %s: %v", dir, err)
	}
	m := newManifests()
	docs := splitDocs(out)
	if len(docs) == 0 {
		tb.Fatalf("kustomize build %s: no objects", dir)
	}
	for i, doc := range docs {
		kind, obj, err := decodeStrict(doc)
		if err != nil {
			tb.Errorf("kustomize build %s, object %d: %v", dir, i+1, err)
			continue
		}
		m.add(tb, dir, i+1, kind, obj)
	}
	return m
}

// manifestSets are infra/k8s and every overlay rendered: what skaffold
// applies, with and without a profile. Checks that hold for any
// deployment of the system run on each.
func manifestSets(tb testing.TB) map[string]*manifests {
	tb.Helper()
	sets := map[string]*manifests{"k8s": loadManifests(tb)}
	for _, dir := range overlays(tb) {
		sets[dir] = renderOverlay(tb, dir)
	}
	return sets
}

// forEachSet runs check as a subtest on every manifest set.
func forEachSet(t *testing.T, check func(t *testing.T, m *manifests)) {
	t.Helper()
	sets := manifestSets(t)
	for _, name := range sortedKeys(sets) {
		t.Run(name, func(t *testing.T) { check(t, sets[name]) })
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func readFile(tb testing.TB, path ...string) string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(path...))
	if err != nil {
		tb.Fatal(err)
	}
	return string(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")))
}
