package infra

import (
	"fmt"
	"maps"
	"path"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The jetstream overlay's names, which the services' configuration and
// docs/JETSTREAM.md use.
const (
	jsStatefulSet   = "nats-js"
	jsClientService = "nats-js-srv"
	jsImage         = "nats:2"
	jsReplicas      = 3
	// The services list the three servers by their pods' stable names, so
	// that a client leaving a server (a partition, see
	// common/events/jetstream.go) reaches another, which a Service does not
	// promise.
	jsServiceURLs = "nats://nats-js-0.nats-js:4222,nats://nats-js-1.nats-js:4222,nats://nats-js-2.nats-js:4222"
)

// TestJetStreamProfile: skaffold's profile jetstream deploys infra/k8s
// without NATS Streaming, a three-node JetStream cluster instead, and the
// services that use events switched to it.
func TestJetStreamProfile(t *testing.T) {
	dir, k := profileOverlay(t, "jetstream")
	if dir != "k8s-jetstream" {
		t.Errorf("profile jetstream renders infra/%s, want infra/k8s-jetstream", dir)
	}
	var fromBase, local []string
	for _, r := range k.Resources {
		if strings.HasPrefix(r, "../k8s/") {
			fromBase = append(fromBase, r)
		} else {
			local = append(local, r)
		}
	}
	sort.Strings(fromBase)
	if want := baseResources(t, "nats-depl.yaml"); !slices.Equal(fromBase, want) {
		t.Errorf("the overlay's resources of infra/k8s are %v, want every file but nats-depl.yaml: %v", fromBase, want)
	}
	if !slices.Equal(local, []string{"nats-js.yaml"}) {
		t.Errorf("the overlay's own resources are %v, want [nats-js.yaml]", local)
	}

	m := renderOverlay(t, dir)
	base := loadManifests(t)

	// Every object of infra/k8s but NATS Streaming's, and the cluster's.
	want := map[string]bool{}
	for key := range base.files {
		if key != "StatefulSet/nats" && key != "Service/nats-srv" {
			want[key] = true
		}
	}
	for _, key := range []string{"StatefulSet/" + jsStatefulSet, "Service/" + jsClientService, "PodDisruptionBudget/" + jsStatefulSet} {
		want[key] = true
	}
	if len(base.files) == len(want) {
		t.Error("infra/k8s has no StatefulSet/nats or Service/nats-srv to leave out")
	}
	for key := range m.files {
		if strings.HasPrefix(key, "ConfigMap/") {
			continue // generated: checked with the StatefulSet
		}
		if s, ok := m.statefulSets[jsStatefulSet]; ok && key == "Service/"+s.Spec.ServiceName {
			continue // the headless Service: checked with the StatefulSet
		}
		if !want[key] {
			t.Errorf("the overlay renders %s", key)
		}
		delete(want, key)
	}
	for _, key := range slices.Sorted(maps.Keys(want)) {
		t.Errorf("the overlay does not render %s", key)
	}

	// The services: those that use events (NATS_URL in infra/k8s) are
	// switched to JetStream with three stream replicas; the environment is
	// otherwise that of infra/k8s, and the other services are unchanged.
	switched := 0
	for _, name := range sortedKeys(base.deployments) {
		bd, d := base.deployments[name], m.deployments[name]
		if d == nil {
			continue // reported above
		}
		baseVars, vars := env(bd.Spec.Template.Spec.Containers[0]), env(d.Spec.Template.Spec.Containers[0])
		if _, ok := baseVars["NATS_URL"]; !ok {
			if !reflect.DeepEqual(bd.Spec.Template.Spec.Containers[0].Env, d.Spec.Template.Spec.Containers[0].Env) {
				t.Errorf("%s does not use events, but the overlay changes its environment", name)
			}
			continue
		}
		switched++
		wantVars := maps.Clone(baseVars)
		delete(wantVars, "NATS_CLUSTER_ID")
		wantVars["NATS_URL"] = corev1.EnvVar{Name: "NATS_URL", Value: jsServiceURLs}
		wantVars["EVENT_BUS"] = corev1.EnvVar{Name: "EVENT_BUS", Value: "jetstream"}
		wantVars["NATS_JS_REPLICAS"] = corev1.EnvVar{Name: "NATS_JS_REPLICAS", Value: strconv.Itoa(jsReplicas)}
		for _, v := range slices.Sorted(maps.Keys(wantVars)) {
			got, ok := vars[v]
			switch {
			case !ok:
				t.Errorf("%s: %s is not set, want %s", name, v, envString(wantVars[v]))
			case envString(got) != envString(wantVars[v]):
				t.Errorf("%s: %s = %s, want %s", name, v, envString(got), envString(wantVars[v]))
			}
		}
		for v := range vars {
			if _, ok := wantVars[v]; !ok {
				t.Errorf("%s: %s = %s is set, want it unset", name, v, envString(vars[v]))
			}
		}
		if len(vars) != len(d.Spec.Template.Spec.Containers[0].Env) {
			t.Errorf("%s: a variable is set twice", name)
		}
	}
	if switched < 4 {
		t.Errorf("%d services switched to JetStream; tickets, orders, expiration and payments use events", switched)
	}

	checkJetStreamCluster(t, m)
}

func ptrString[T any](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}

func envString(e corev1.EnvVar) string {
	if e.ValueFrom != nil {
		return fmt.Sprintf("%+v", *e.ValueFrom)
	}
	return strconv.Quote(e.Value)
}

// checkJetStreamCluster checks the StatefulSet nats-js, its Services, its
// disruption budget and its nats.conf, as the server parses it.
func checkJetStreamCluster(t *testing.T, m *manifests) {
	s, ok := m.statefulSets[jsStatefulSet]
	if !ok {
		t.Fatalf("StatefulSet/%s is missing", jsStatefulSet)
	}
	if s.Spec.Replicas == nil || *s.Spec.Replicas != jsReplicas {
		t.Errorf("StatefulSet/%s: replicas %s, want %d", s.Name, ptrString(s.Spec.Replicas), jsReplicas)
	}
	// A server is healthy only with a quorum: started one by one, the
	// first would wait for the others forever.
	if s.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("StatefulSet/%s: podManagementPolicy %q, want Parallel", s.Name, s.Spec.PodManagementPolicy)
	}
	pod := s.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("StatefulSet/%s: want one container", s.Name)
	}
	c := pod.Containers[0]
	if c.Image != jsImage {
		t.Errorf("StatefulSet/%s runs %s, want %s", s.Name, c.Image, jsImage)
	}
	port := func(name string) int32 {
		p, ok := containerPort(pod, intstr.FromString(name))
		if !ok {
			t.Errorf("StatefulSet/%s: no container port %q", s.Name, name)
		}
		return p
	}
	clientPort, clusterPort, monitorPort := port("client"), port("cluster"), port("monitor")
	for kind, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("StatefulSet/%s: no HTTP %s probe", s.Name, kind)
			continue
		}
		if u := p.HTTPGet.Path; u != "/healthz" && !strings.HasPrefix(u, "/healthz?") {
			t.Errorf("StatefulSet/%s: %s probe on %s, want the monitoring port's /healthz", s.Name, kind, u)
		}
		if got, _ := containerPort(pod, p.HTTPGet.Port); got != monitorPort {
			t.Errorf("StatefulSet/%s: %s probe on port %s, want the monitoring port", s.Name, kind, p.HTTPGet.Port.String())
		}
	}

	// The headless Service that names the pods for the routes.
	headless, ok := m.services[s.Spec.ServiceName]
	switch {
	case !ok:
		t.Errorf("StatefulSet/%s: its Service %q is missing", s.Name, s.Spec.ServiceName)
	case headless.Spec.ClusterIP != corev1.ClusterIPNone:
		t.Errorf("Service/%s: clusterIP %q, want None (headless: one name per pod)", headless.Name, headless.Spec.ClusterIP)
	case !headless.Spec.PublishNotReadyAddresses:
		t.Errorf("Service/%s must publish not-ready addresses: the pods are ready only once they have found each other", headless.Name)
	case !slices.ContainsFunc(headless.Spec.Ports, func(p corev1.ServicePort) bool {
		got, _ := containerPort(pod, p.TargetPort)
		return p.Port == clusterPort && got == clusterPort
	}):
		t.Errorf("Service/%s does not serve the cluster port %d", headless.Name, clusterPort)
	}
	// The clients' Service (the nats CLI; the services list the pods).
	if cs, ok := m.services[jsClientService]; !ok || !hasPort(cs, 4222) || !hasPort(cs, 8222) {
		t.Errorf("Service/%s must serve 4222 (clients) and 8222 (monitoring)", jsClientService)
	} else if !labels.SelectorFromSet(cs.Spec.Selector).Matches(labels.Set(s.Spec.Template.Labels)) {
		t.Errorf("Service/%s does not select the pods of %s", jsClientService, s.Name)
	}

	// Voluntary disruptions keep a quorum.
	if pdb, ok := m.budgets[jsStatefulSet]; !ok {
		t.Errorf("PodDisruptionBudget/%s is missing", jsStatefulSet)
	} else {
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(s.Spec.Template.Labels)) {
			t.Errorf("PodDisruptionBudget/%s does not select the pods of %s", pdb.Name, s.Name)
		}
		quorum := jsReplicas/2 + 1
		switch {
		case pdb.Spec.MaxUnavailable != nil && pdb.Spec.MinAvailable == nil:
			if n, err := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MaxUnavailable, jsReplicas, true); err != nil || n < 1 || jsReplicas-n < quorum {
				t.Errorf("PodDisruptionBudget/%s: maxUnavailable %s, want 1 (a quorum of %d of %d stays up)", pdb.Name, pdb.Spec.MaxUnavailable.String(), quorum, jsReplicas)
			}
		case pdb.Spec.MinAvailable != nil && pdb.Spec.MaxUnavailable == nil:
			if n, err := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MinAvailable, jsReplicas, true); err != nil || n < quorum || n >= jsReplicas {
				t.Errorf("PodDisruptionBudget/%s: minAvailable %s, want %d", pdb.Name, pdb.Spec.MinAvailable.String(), quorum)
			}
		default:
			t.Errorf("PodDisruptionBudget/%s: set one of maxUnavailable and minAvailable", pdb.Name)
		}
	}

	// The configuration: --config names a file of a ConfigMap volume.
	args := strings.Join(append(slices.Clone(c.Command), c.Args...), " ")
	confPath, ok := strings.CutPrefix(args, "--config ")
	if !ok || strings.Contains(confPath, " ") {
		t.Fatalf("StatefulSet/%s: args %q, want --config <file>", s.Name, args)
	}
	conf, ok := configFile(t, m, pod, c, confPath)
	if !ok {
		return
	}
	vars := env(c)
	if ref := vars["POD_NAME"].ValueFrom; ref == nil || ref.FieldRef == nil || ref.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("StatefulSet/%s: POD_NAME (server_name in nats.conf) must come from the pod name", s.Name)
	}
	var claim resource.Quantity
	for _, pvc := range s.Spec.VolumeClaimTemplates {
		claim = pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	}
	var wantRoutes []string
	for i := range jsReplicas {
		wantRoutes = append(wantRoutes, fmt.Sprintf("nats://%s-%d.%s:%d", s.Name, i, s.Spec.ServiceName, clusterPort))
	}
	for i := range jsReplicas {
		podName := fmt.Sprintf("%s-%d", s.Name, i)
		t.Setenv("POD_NAME", podName)
		opts, err := natsOptions(conf)
		if err != nil {
			t.Errorf("%s as %s: %v", confPath, podName, err)
			continue
		}
		if opts.ServerName != podName {
			t.Errorf("%s as %s: server_name %q, want the pod name", confPath, podName, opts.ServerName)
		}
		if i > 0 {
			continue // the rest does not depend on the pod
		}
		if opts.Port != int(clientPort) || opts.HTTPPort != int(monitorPort) || opts.Cluster.Port != int(clusterPort) {
			t.Errorf("%s: ports %d (clients), %d (monitoring), %d (cluster), want the container's %d, %d, %d",
				confPath, opts.Port, opts.HTTPPort, opts.Cluster.Port, clientPort, monitorPort, clusterPort)
		}
		if opts.Cluster.Name == "" {
			t.Errorf("%s: the cluster has no name", confPath)
		}
		var routes []string
		for _, r := range opts.Routes {
			routes = append(routes, r.String())
		}
		if !slices.Equal(routes, wantRoutes) {
			t.Errorf("%s: routes %v, want every pod by its name %v", confPath, routes, wantRoutes)
		}
		if !opts.JetStream {
			t.Errorf("%s: JetStream is not enabled", confPath)
		}
		if !mountedClaim(workload{claims: s.Spec.VolumeClaimTemplates}, c, opts.StoreDir) {
			t.Errorf("%s: store_dir %q is not on a PersistentVolumeClaim", confPath, opts.StoreDir)
		}
		// Stated limits: the file store fits in the volume; memory
		// storage (unused) is bounded too.
		if opts.JetStreamMaxStore <= 0 || claim.IsZero() || opts.JetStreamMaxStore >= claim.Value() {
			t.Errorf("%s: max_file_store %d must be set and below the volume's %s", confPath, opts.JetStreamMaxStore, claim.String())
		}
		if lim := c.Resources.Limits[corev1.ResourceMemory]; opts.JetStreamMaxMemory <= 0 || opts.JetStreamMaxMemory >= lim.Value() {
			t.Errorf("%s: max_memory_store %d must be set and below the container's memory limit %s", confPath, opts.JetStreamMaxMemory, lim.String())
		}
		// Lame duck mode: started by the preStop hook through the pid
		// file, and over before the kubelet kills the server.
		if opts.PidFile == "" || !slices.ContainsFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool { return vm.MountPath == path.Dir(opts.PidFile) }) {
			t.Errorf("%s: pid_file %q is not in a mounted volume (the root filesystem is read-only)", confPath, opts.PidFile)
		}
		if hook := c.Lifecycle; hook == nil || hook.PreStop == nil || hook.PreStop.Exec == nil ||
			!slices.Contains(hook.PreStop.Exec.Command, "ldm="+opts.PidFile) {
			t.Errorf("StatefulSet/%s: no preStop hook sending ldm to the server (pid file %s)", s.Name, opts.PidFile)
		}
		grace := time.Duration(30) * time.Second
		if pod.TerminationGracePeriodSeconds != nil {
			grace = time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
		}
		if opts.LameDuckDuration == 0 || opts.LameDuckDuration+opts.LameDuckGracePeriod >= grace {
			t.Errorf("%s: lame duck mode (%s, after %s) must end within terminationGracePeriodSeconds (%s)", confPath, opts.LameDuckDuration, opts.LameDuckGracePeriod, grace)
		}
	}
}

// configFile returns the content of the file at confPath in container c:
// a key of a ConfigMap volume of the set.
func configFile(t *testing.T, m *manifests, pod corev1.PodSpec, c corev1.Container, confPath string) (string, bool) {
	t.Helper()
	for _, vm := range c.VolumeMounts {
		if path.Dir(confPath) != vm.MountPath {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name != vm.Name || v.ConfigMap == nil {
				continue
			}
			cm, ok := m.configMaps[v.ConfigMap.Name]
			if !ok {
				t.Errorf("volume %s: ConfigMap %s is not rendered", v.Name, v.ConfigMap.Name)
				return "", false
			}
			data, ok := cm.Data[path.Base(confPath)]
			if !ok {
				t.Errorf("ConfigMap %s has no %s", cm.Name, path.Base(confPath))
			}
			return data, ok
		}
	}
	t.Errorf("%s is not in a ConfigMap volume", confPath)
	return "", false
}

// natsOptions parses a nats-server configuration and validates it as the
// server does before it starts (without starting it).
func natsOptions(conf string) (*natsserver.Options, error) {
	opts := &natsserver.Options{}
	if err := opts.ProcessConfigString(conf); err != nil {
		return nil, err
	}
	s, err := natsserver.NewServer(opts)
	if err != nil {
		return nil, err
	}
	s.Shutdown()
	return opts, nil
}

// The server's parser and validation are what catch a misspelt or
// incomplete setting in nats.conf: make sure they do, and that an unset
// variable is an error.
func TestNATSConfigRejects(t *testing.T) {
	for name, conf := range map[string]string{
		"unknown field":                            "server_nam: x\n",
		"unknown jetstream":                        "server_name: x\njetstream { stor_dir: /data }\n",
		"unknown cluster field":                    "server_name: x\ncluster { name: c, port: 6222, route: [nats://a:6222] }\n",
		"unset variable":                           "server_name: $TICKETING_INFRA_TEST_UNSET\n",
		"size that is no number":                   "jetstream { max_file_store: lots }\n",
		"clustered JetStream without server_name":  "jetstream { store_dir: /data }\ncluster { name: c, port: 6222 }\n",
		"clustered JetStream without cluster name": "server_name: x\njetstream { store_dir: /data }\ncluster { port: 6222 }\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := natsOptions(conf); err == nil {
				t.Error("accepted")
			}
		})
	}
}
