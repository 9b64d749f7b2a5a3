package infra

import (
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/ticketing-go/ticketing/common/httpx"
)

func TestManifestsDecodeStrictly(t *testing.T) {
	m := loadManifests(t)
	for _, name := range services {
		keys := []string{"Deployment/" + name + "-depl", "Service/" + name + "-srv"}
		if hasDatabase(name) {
			keys = append(keys, "StatefulSet/"+name+"-mongo", "Service/"+name+"-mongo-srv")
		} else if _, ok := m.files["StatefulSet/"+name+"-mongo"]; ok {
			t.Errorf("%s has no database, but StatefulSet/%s-mongo exists", name, name)
		}
		for _, key := range keys {
			if _, ok := m.files[key]; !ok {
				t.Errorf("%s is missing", key)
			}
		}
	}
	for _, key := range []string{"StatefulSet/nats", "Service/nats-srv", "Ingress/ingress-srv"} {
		if _, ok := m.files[key]; !ok {
			t.Errorf("%s is missing", key)
		}
	}
}

// The strict decoder is what catches a misspelt field: make sure it does.
func TestDecodeStrictRejects(t *testing.T) {
	tests := map[string]string{
		"unknown field": `
apiVersion: v1
kind: Service
metadata: {name: x}
spec:
  selectr: {app: x}
`,
		"unknown nested field": `
apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  template:
    spec:
      containers:
        - name: x
          image: x
          readinessprobe: {}
`,
		"field name in the wrong case": `
apiVersion: v1
kind: Service
metadata: {name: x}
spec:
  selector: {app: x}
  ClusterIP: None
`,
		"unknown field in a skaffold-style typo": `
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: x}
spec:
  volumeClaimTemplate: []
`,
		"duplicate field": `
apiVersion: v1
kind: Service
metadata: {name: x}
metadata: {name: y}
`,
		"wrong apiVersion": `
apiVersion: extensions/v1beta1
kind: Ingress
metadata: {name: x}
`,
		"unknown kind": `
apiVersion: v1
kind: Secret
metadata: {name: x}
`,
		"wrong type": `
apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec: {replicas: two}
`,
	}
	for name, doc := range tests {
		t.Run(name, func(t *testing.T) {
			if _, _, err := decodeStrict([]byte(doc)); err == nil {
				t.Error("decoded without an error")
			}
		})
	}
	if _, _, err := decodeStrict([]byte("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  selector: {app: x}\n")); err != nil {
		t.Errorf("a valid Service: %v", err)
	}
}

func TestSelectorsMatchPodLabels(t *testing.T) {
	forEachSet(t, func(t *testing.T, m *manifests) {
		for _, w := range m.workloads() {
			if w.selector == nil {
				t.Errorf("%s/%s has no selector", w.kind, w.name)
				continue
			}
			sel, err := metav1.LabelSelectorAsSelector(w.selector)
			if err != nil {
				t.Errorf("%s/%s: %v", w.kind, w.name, err)
				continue
			}
			if sel.Empty() || !sel.Matches(labels.Set(w.pod.Labels)) {
				t.Errorf("%s/%s: selector %s does not match its pod labels %v", w.kind, w.name, sel, w.pod.Labels)
			}
		}
		for name, s := range m.statefulSets {
			gov, ok := m.services[s.Spec.ServiceName]
			if !ok {
				t.Errorf("StatefulSet/%s: serviceName %q is not a Service", name, s.Spec.ServiceName)
				continue
			}
			if !labels.SelectorFromSet(gov.Spec.Selector).Matches(labels.Set(s.Spec.Template.Labels)) {
				t.Errorf("StatefulSet/%s: its Service %s does not select its pods", name, gov.Name)
			}
		}
	})
}

// containerPort resolves a Service targetPort or a probe port in pod.
func containerPort(pod corev1.PodSpec, port intstr.IntOrString) (int32, bool) {
	for _, c := range pod.Containers {
		for _, p := range c.Ports {
			if port.Type == intstr.String && p.Name == port.StrVal ||
				port.Type == intstr.Int && p.ContainerPort == port.IntVal {
				return p.ContainerPort, true
			}
		}
	}
	return 0, false
}

func TestServicesReachPods(t *testing.T) {
	forEachSet(t, func(t *testing.T, m *manifests) {
		for _, name := range sortedKeys(m.services) {
			s := m.services[name]
			if s.Spec.Type != "" && s.Spec.Type != corev1.ServiceTypeClusterIP {
				t.Errorf("Service/%s is %s; only ClusterIP Services (the Ingress is the way in)", name, s.Spec.Type)
			}
			if len(s.Spec.Selector) == 0 {
				t.Errorf("Service/%s has no selector", name)
				continue
			}
			sel := labels.SelectorFromSet(s.Spec.Selector)
			var pods []workload
			for _, w := range m.workloads() {
				if sel.Matches(labels.Set(w.pod.Labels)) {
					pods = append(pods, w)
				}
			}
			if len(pods) == 0 {
				t.Errorf("Service/%s: selector %s matches no pod", name, sel)
			}
			if len(s.Spec.Ports) == 0 {
				t.Errorf("Service/%s has no ports", name)
			}
			for _, p := range s.Spec.Ports {
				target := p.TargetPort
				if target.Type == intstr.Int && target.IntVal == 0 {
					target = intstr.FromInt32(p.Port)
				}
				for _, w := range pods {
					if _, ok := containerPort(w.pod.Spec, target); !ok {
						t.Errorf("Service/%s port %d: targetPort %s is not a container port of %s/%s", name, p.Port, target.String(), w.kind, w.name)
					}
				}
			}
		}
		for _, name := range services {
			s, ok := m.services[name+"-srv"]
			if ok && !hasPort(s, 3000) {
				t.Errorf("Service/%s-srv does not serve port 3000", name)
			}
			if s, ok := m.services[name+"-mongo-srv"]; ok && !hasPort(s, 27017) {
				t.Errorf("Service/%s-mongo-srv does not serve port 27017", name)
			}
		}
		if s, ok := m.services["nats-srv"]; ok && (!hasPort(s, 4222) || !hasPort(s, 8222)) {
			t.Error("Service/nats-srv must serve 4222 (clients) and 8222 (monitoring)")
		}
	})
}

// natsServer checks that host, from a NATS_URL on port 4222, is deployed: a
// Service with port 4222, or a pod's stable name <statefulset>-<n>.<headless
// Service> with n below the StatefulSet's replicas and a container port
// 4222.
func (m *manifests) natsServer(host string) error {
	if s, ok := m.services[host]; ok {
		if !hasPort(s, 4222) {
			return fmt.Errorf("Service %q has no port 4222", host)
		}
		return nil
	}
	pod, svc, ok := strings.Cut(host, ".")
	if !ok {
		return fmt.Errorf("no Service %q is deployed here", host)
	}
	for _, ss := range m.statefulSets {
		n, err := strconv.Atoi(strings.TrimPrefix(pod, ss.Name+"-"))
		if ss.Spec.ServiceName != svc || !strings.HasPrefix(pod, ss.Name+"-") || err != nil {
			continue
		}
		if ss.Spec.Replicas == nil || n < 0 || int32(n) >= *ss.Spec.Replicas {
			return fmt.Errorf("pod %q is beyond StatefulSet %s's replicas", pod, ss.Name)
		}
		if !slices.ContainsFunc(ss.Spec.Template.Spec.Containers[0].Ports, func(p corev1.ContainerPort) bool { return p.ContainerPort == 4222 }) {
			return fmt.Errorf("StatefulSet %s's container has no port 4222", ss.Name)
		}
		if h, ok := m.services[svc]; !ok || h.Spec.ClusterIP != corev1.ClusterIPNone {
			return fmt.Errorf("%q is not a headless Service deployed here", svc)
		}
		return nil
	}
	return fmt.Errorf("%q names no pod of a StatefulSet deployed here", host)
}

func hasPort(s *corev1.Service, port int32) bool {
	return slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == port })
}

func TestIngress(t *testing.T) {
	forEachSet(t, func(t *testing.T, m *manifests) {
		ing, ok := m.ingresses["ingress-srv"]
		if !ok {
			t.Fatal("Ingress/ingress-srv is missing")
		}
		if ing.Spec.IngressClassName == nil || *ing.Spec.IngressClassName != "nginx" {
			t.Error("ingressClassName must be nginx")
		}
		routes := map[string]string{} // path -> service
		for _, rule := range ing.Spec.Rules {
			if rule.Host != "ticketing.dev" {
				t.Errorf("rule for host %q, want ticketing.dev", rule.Host)
			}
			if rule.HTTP == nil {
				t.Errorf("rule for %q without paths", rule.Host)
				continue
			}
			for _, p := range rule.HTTP.Paths {
				b := p.Backend.Service
				if b == nil {
					t.Errorf("path %s: no Service backend", p.Path)
					continue
				}
				if _, dup := routes[p.Path]; dup {
					t.Errorf("path %s routed twice", p.Path)
				}
				routes[p.Path] = b.Name
				svc, ok := m.services[b.Name]
				if !ok {
					t.Errorf("path %s: backend Service %q does not exist", p.Path, b.Name)
					continue
				}
				found := slices.ContainsFunc(svc.Spec.Ports, func(sp corev1.ServicePort) bool {
					return b.Port.Name != "" && sp.Name == b.Port.Name || b.Port.Name == "" && sp.Port == b.Port.Number
				})
				if !found {
					t.Errorf("path %s: Service %s has no port %s%d", p.Path, b.Name, b.Port.Name, b.Port.Number)
				}
			}
		}
		for path, svc := range map[string]string{
			"/api/users":    "auth-srv",
			"/api/tickets":  "tickets-srv",
			"/api/orders":   "orders-srv",
			"/api/payments": "payments-srv",
			"/":             "client-srv",
		} {
			if got := routes[path]; got != svc {
				t.Errorf("%s routed to %q, want %q", path, got, svc)
			}
		}
	})
}

func TestProbesHitServedPaths(t *testing.T) {
	// The paths the services serve: every service builds on httpx.NewRouter.
	router := httpx.NewRouter(httpx.RouterOptions{Service: "infra-test", Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	served := func(path string) bool {
		rec := httptest.NewRecorder()
		router.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code == http.StatusOK
	}
	forEachSet(t, func(t *testing.T, m *manifests) {
		for _, name := range services {
			d, ok := m.deployments[name+"-depl"]
			if !ok {
				continue
			}
			// The probes below are those of httpx.NewRouter: the service must
			// build its router with it.
			if isMainPackage(t, filepath.Join(root, "services", name)) && !usesNewRouter(t, name) {
				t.Errorf("services/%s calls neither httpx.NewRouter nor lifecycle.Run, so /healthz and /readyz are not known to be served", name)
			}
			pod := d.Spec.Template.Spec
			for _, c := range pod.Containers {
				for kind, want := range map[string]struct {
					probe *corev1.Probe
					path  string
				}{"readiness": {c.ReadinessProbe, "/readyz"}, "liveness": {c.LivenessProbe, "/healthz"}} {
					p := want.probe
					if p == nil || p.HTTPGet == nil {
						t.Errorf("%s: container %s has no HTTP %s probe", d.Name, c.Name, kind)
						continue
					}
					if p.HTTPGet.Path != want.path {
						t.Errorf("%s: %s probe on %s, want %s", d.Name, kind, p.HTTPGet.Path, want.path)
					}
					if port, ok := containerPort(pod, p.HTTPGet.Port); !ok || port != 3000 {
						t.Errorf("%s: %s probe port %s is not the container's port 3000", d.Name, kind, p.HTTPGet.Port.String())
					}
					if !served(p.HTTPGet.Path) {
						t.Errorf("%s: %s probe path %s is not served by httpx.NewRouter", d.Name, kind, p.HTTPGet.Path)
					}
				}
			}
			if path := d.Spec.Template.Annotations["prometheus.io/path"]; path != "" && !served(path) {
				t.Errorf("%s: metrics path %s is not served by httpx.NewRouter", d.Name, path)
			}
		}
		// Probes of the third-party servers point at their declared ports.
		for name, s := range m.statefulSets {
			for _, c := range s.Spec.Template.Spec.Containers {
				for i, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
					if p == nil {
						if i < 2 { // a startup probe is optional
							t.Errorf("StatefulSet/%s: container %s lacks a readiness or liveness probe", name, c.Name)
						}
						continue
					}
					var port intstr.IntOrString
					switch {
					case p.HTTPGet != nil:
						port = p.HTTPGet.Port
					case p.TCPSocket != nil:
						port = p.TCPSocket.Port
					default:
						continue
					}
					if _, ok := containerPort(s.Spec.Template.Spec, port); !ok {
						t.Errorf("StatefulSet/%s: probe port %s is not a container port", name, port.String())
					}
				}
			}
		}
	})
}

// usesNewRouter reports whether a non-test file of the service calls httpx.NewRouter.
func usesNewRouter(tb testing.TB, name string) bool {
	tb.Helper()
	found := false
	err := filepath.WalkDir(filepath.Join(root, "services", name), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		// Directly, or through common/lifecycle, whose Run serves on it.
		if src := readFile(tb, path); strings.Contains(src, "httpx.NewRouter(") ||
			strings.Contains(src, "lifecycle.Run(") && strings.Contains(readFile(tb, root, "common", "lifecycle", "lifecycle.go"), "httpx.NewRouter(") {
			found = true
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return found
}

func TestSecurityAndResources(t *testing.T) {
	forEachSet(t, func(t *testing.T, m *manifests) {
		for _, w := range m.workloads() {
			where := w.kind + "/" + w.name
			pod := w.pod.Spec
			podNonRoot := pod.SecurityContext != nil && pod.SecurityContext.RunAsNonRoot != nil && *pod.SecurityContext.RunAsNonRoot
			for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
				sc := c.SecurityContext
				nonRoot := podNonRoot || sc != nil && sc.RunAsNonRoot != nil && *sc.RunAsNonRoot
				if !nonRoot {
					t.Errorf("%s/%s: runAsNonRoot is not set", where, c.Name)
				}
				if sc == nil {
					t.Errorf("%s/%s: no securityContext", where, c.Name)
					continue
				}
				if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
					t.Errorf("%s/%s: readOnlyRootFilesystem is not true", where, c.Name)
				}
				if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
					t.Errorf("%s/%s: allowPrivilegeEscalation is not false", where, c.Name)
				}
				if sc.Privileged != nil && *sc.Privileged {
					t.Errorf("%s/%s: privileged", where, c.Name)
				}
				if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
					t.Errorf("%s/%s: capabilities must drop ALL and add none", where, c.Name)
				}
				for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
					req, hasReq := c.Resources.Requests[res]
					lim, hasLim := c.Resources.Limits[res]
					if !hasReq || !hasLim {
						t.Errorf("%s/%s: %s request and limit must both be set", where, c.Name, res)
					} else if req.Cmp(lim) > 0 {
						t.Errorf("%s/%s: %s request %s above limit %s", where, c.Name, res, req.String(), lim.String())
					}
				}
				// A read-only root filesystem needs every written path mounted.
				for _, vm := range c.VolumeMounts {
					if !volumeExists(pod, w.claims, vm.Name) {
						t.Errorf("%s/%s: volumeMount %q names no volume", where, c.Name, vm.Name)
					}
				}
			}
		}
	})
}

func volumeExists(pod corev1.PodSpec, claims []corev1.PersistentVolumeClaim, name string) bool {
	return slices.ContainsFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == name }) ||
		slices.ContainsFunc(claims, func(c corev1.PersistentVolumeClaim) bool { return c.Name == name })
}

// mountedClaim reports whether path in container c is a PersistentVolumeClaim.
func mountedClaim(w workload, c corev1.Container, path string) bool {
	for _, vm := range c.VolumeMounts {
		if vm.MountPath == path && slices.ContainsFunc(w.claims, func(pvc corev1.PersistentVolumeClaim) bool { return pvc.Name == vm.Name }) {
			return true
		}
	}
	return false
}

func TestStatefulServersKeepTheirData(t *testing.T) {
	forEachSet(t, func(t *testing.T, m *manifests) {
		ws := map[string]workload{}
		for _, w := range m.workloads() {
			ws[w.kind+"/"+w.name] = w
		}
		for _, name := range services {
			w, ok := ws["StatefulSet/"+name+"-mongo"]
			if !ok {
				continue
			}
			c := w.pod.Spec.Containers[0]
			if c.Image != "mongo:7" {
				t.Errorf("%s-mongo runs %s, want mongo:7", name, c.Image)
			}
			if !mountedClaim(w, c, "/data/db") {
				t.Errorf("%s-mongo: /data/db is not on a PersistentVolumeClaim", name)
			}
		}
		w, ok := ws["StatefulSet/nats"]
		if !ok {
			return
		}
		c := w.pod.Spec.Containers[0]
		if c.Image != "nats-streaming:0.25.6" {
			t.Errorf("nats runs %s, want nats-streaming:0.25.6", c.Image)
		}
		args := strings.Join(append(slices.Clone(c.Command), c.Args...), " ")
		// The seed's arguments, plus the file store.
		for _, want := range []string{"-p 4222", "-m 8222", "-hbi 5s", "-hbt 5s", "-hbf 2", "-SD", "-cid ticketing", "-store file", "-dir /data"} {
			if !strings.Contains(" "+args+" ", " "+want+" ") {
				t.Errorf("nats args %q lack %q", args, want)
			}
		}
		if !mountedClaim(w, c, "/data") {
			t.Error("nats: the file store /data is not on a PersistentVolumeClaim")
		}
	})
}

// env returns the container's variables by name.
func env(c corev1.Container) map[string]corev1.EnvVar {
	out := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		out[e.Name] = e
	}
	return out
}

func TestServiceEnvironment(t *testing.T) {
	forEachSet(t, func(t *testing.T, m *manifests) {
		for _, name := range services {
			d, ok := m.deployments[name+"-depl"]
			if !ok {
				continue
			}
			if len(d.Spec.Template.Spec.Containers) != 1 {
				t.Errorf("%s: want one container", d.Name)
				continue
			}
			vars := env(d.Spec.Template.Spec.Containers[0])
			if !hasDatabase(name) {
				if _, ok := vars["MONGO_URI"]; ok {
					t.Errorf("%s: MONGO_URI set for a service without a database", d.Name)
				}
			} else if uri := vars["MONGO_URI"].Value; uri != fmt.Sprintf("mongodb://%s-mongo-srv:27017", name) {
				t.Errorf("%s: MONGO_URI %q is not its own MongoDB", d.Name, uri)
			}
			if _, ok := vars["NATS_URL"]; ok {
				// The transport (EVENT_BUS, stan when unset) and its server.
				switch bus := vars["EVENT_BUS"].Value; bus {
				case "", "stan":
					if u := vars["NATS_URL"].Value; u != "nats://nats-srv:4222" {
						t.Errorf("%s: NATS_URL %q, want nats://nats-srv:4222 (NATS Streaming)", d.Name, u)
					}
					if c := vars["NATS_CLUSTER_ID"].Value; c != "ticketing" {
						t.Errorf("%s: NATS_CLUSTER_ID %q, want ticketing (nats -cid)", d.Name, c)
					}
				case "jetstream":
					if u := vars["NATS_URL"].Value; u != jsServiceURLs {
						t.Errorf("%s: NATS_URL %q, want %s (JetStream)", d.Name, u, jsServiceURLs)
					}
					if _, ok := vars["NATS_CLUSTER_ID"]; ok {
						t.Errorf("%s: NATS_CLUSTER_ID is NATS Streaming's; JetStream has none", d.Name)
					}
				default:
					t.Errorf("%s: EVENT_BUS %q, want stan or jetstream", d.Name, bus)
				}
				for _, u := range strings.Split(vars["NATS_URL"].Value, ",") {
					if err := m.natsServer(strings.TrimSuffix(strings.TrimPrefix(u, "nats://"), ":4222")); err != nil {
						t.Errorf("%s: NATS_URL %q: %v", d.Name, u, err)
					}
				}
				id := vars["NATS_CLIENT_ID"].ValueFrom
				if id == nil || id.FieldRef == nil || id.FieldRef.FieldPath != "metadata.name" {
					t.Errorf("%s: NATS_CLIENT_ID must come from the pod name (fieldRef metadata.name)", d.Name)
				}
			}
			for _, e := range d.Spec.Template.Spec.Containers[0].Env {
				if e.Value != "" && e.ValueFrom != nil {
					t.Errorf("%s: %s has both value and valueFrom", d.Name, e.Name)
				}
				if looksSecret(e.Name) && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
					t.Errorf("%s: %s must come from a Secret", d.Name, e.Name)
				}
			}
		}
	})
}

func looksSecret(name string) bool {
	return strings.HasSuffix(name, "_KEY") || strings.Contains(name, "SECRET") || strings.Contains(name, "PASSWORD")
}

func TestImagesPinned(t *testing.T) {
	forEachSet(t, func(t *testing.T, m *manifests) {
		built := skaffoldImages(t)
		for _, w := range m.workloads() {
			for _, c := range w.pod.Spec.Containers {
				if built[c.Image] {
					// Skaffold replaces the name by the image it built, with
					// its own tag; a tag here would stop that.
					if strings.Contains(c.Image, ":") {
						t.Errorf("%s/%s: skaffold artifact %s must be named without a tag", w.kind, w.name, c.Image)
					}
					continue
				}
				if err := pinned(c.Image); err != nil {
					t.Errorf("%s/%s: %v", w.kind, w.name, err)
				}
			}
		}
	})
}

// pinned accepts an image with an explicit tag other than latest, or a digest.
func pinned(image string) error {
	if strings.Contains(image, "@sha256:") {
		return nil
	}
	name, tag := image, ""
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		name, tag = image[:i], image[i+1:]
	}
	switch {
	case tag == "":
		return fmt.Errorf("image %s has no tag (it would mean :latest)", name)
	case tag == "latest":
		return fmt.Errorf("image %s uses :latest", image)
	}
	return nil
}

func TestPinned(t *testing.T) {
	for image, ok := range map[string]bool{
		"mongo:7": true, "nats-streaming:0.25.6": true, "gcr.io/distroless/static-debian12:nonroot": true,
		"golang@sha256:abc": true, "localhost:5000/x:1": true,
		"mongo": false, "mongo:latest": false, "localhost:5000/x": false,
	} {
		if got := pinned(image) == nil; got != ok {
			t.Errorf("pinned(%q) = %v, want %v", image, got, ok)
		}
	}
}

// The web client reaches each API at its Service, on the port the Service
// serves (the in-cluster path of the routes the ingress exposes).
func TestClientReachesTheAPIs(t *testing.T) {
	forEachSet(t, func(t *testing.T, m *manifests) {
		d, ok := m.deployments["client-depl"]
		if !ok {
			t.Fatal("Deployment/client-depl is missing")
		}
		vars := env(d.Spec.Template.Spec.Containers[0])
		for v, svc := range map[string]string{"AUTH_URL": "auth", "TICKETS_URL": "tickets", "ORDERS_URL": "orders", "PAYMENTS_URL": "payments"} {
			want := "http://" + svc + "-srv:3000"
			if got := vars[v].Value; got != want {
				t.Errorf("client-depl: %s = %q, want %q", v, got, want)
			}
			if s, ok := m.services[svc+"-srv"]; !ok || !hasPort(s, 3000) {
				t.Errorf("client-depl: %s names Service %s-srv, which does not serve port 3000", v, svc)
			}
		}
	})
}
