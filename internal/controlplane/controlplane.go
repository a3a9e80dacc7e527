// Package controlplane runs a real control plane in this process for tandem's
// integration tests and demo: embedded etcd, a kube-apiserver, tandem's CRDs,
// and the tandem scheduler started from the configuration manifests/ ships.
// No downloaded binaries are involved.
package controlplane

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	kubeapiservertesting "k8s.io/kubernetes/cmd/kube-apiserver/app/testing"
	"k8s.io/kubernetes/test/utils/ktesting"

	"github.com/tandem-sched/tandem/pkg/generated/clientset/versioned"
)

// SchedulerNamespace is where the scheduler keeps its leader-election lease,
// as in the shipped configuration.
const SchedulerNamespace = "tandem-system"

// ControlPlane is an etcd and a kube-apiserver running in this process, with
// tandem's CRDs installed.
type ControlPlane struct {
	// Config reaches the apiserver as a cluster administrator.
	Config *rest.Config
	// Kubeconfig is a file holding Config, for components that read one.
	Kubeconfig string
	Client     kubernetes.Interface
	Tandem     versioned.Interface
}

// RepoRoot is the repository's top directory, found from this file's path so
// that tests and the demo read the same manifests wherever they run.
func RepoRoot() string {
	_, file, _, ok := goruntime.Caller(0)
	if !ok {
		panic("controlplane: cannot locate the source tree")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Options change how StartControlPlaneWith starts the control plane.
type Options struct {
	// AuthorizationModes, when set, become --authorization-mode (e.g. Node,
	// RBAC, as production clusters run); unset, every request is allowed.
	AuthorizationModes []string
	// SkipInstall leaves the cluster empty: no CRDs, no namespace, for
	// tests that apply manifests/ themselves.
	SkipInstall bool
}

// StartControlPlane starts etcd and the apiserver, installs every CRD in
// manifests/crds and creates the scheduler's namespace. Everything stops when
// tb's cleanup runs.
func StartControlPlane(tb ktesting.TB) *ControlPlane {
	tb.Helper()
	return StartControlPlaneWith(tb, Options{})
}

// StartControlPlaneWith is StartControlPlane with options.
func StartControlPlaneWith(tb ktesting.TB, o Options) *ControlPlane {
	tb.Helper()
	storage, err := startEtcd(tb)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	// No controller-manager runs here: no namespace gets a default
	// ServiceAccount, and no node lifecycle controller lifts the not-ready
	// taint TaintNodesByCondition puts on every new node. Without these two
	// admission plugins off, no pod would ever be admitted or fit.
	flags := []string{"--disable-admission-plugins=ServiceAccount,TaintNodesByCondition"}
	if len(o.AuthorizationModes) > 0 {
		flags = append(flags, "--authorization-mode="+strings.Join(o.AuthorizationModes, ","))
	}
	server, err := kubeapiservertesting.StartTestServer(tb, kubeapiservertesting.NewDefaultTestServerOptions(), flags, storage)
	if err != nil {
		tb.Fatalf("starting kube-apiserver: %v", err)
	}
	tb.Cleanup(server.TearDownFn)

	cfg := rest.CopyConfig(server.ClientConfig)
	cfg.QPS, cfg.Burst = 500, 1000
	// client-go shares one transport, and so one HTTP/2 connection, among
	// configs with equal TLS settings and compression. The kubeconfig file
	// leaves compression on, so components started from it (the scheduler)
	// open connections of their own, whose read loops run in goroutines
	// they started: the benchmark's CPU profile attributes them correctly.
	cfg.DisableCompression = true
	cp := &ControlPlane{Config: cfg}
	cp.Client = kubernetes.NewForConfigOrDie(cfg)
	cp.Tandem = versioned.NewForConfigOrDie(JSONConfig(cfg))
	cp.Kubeconfig = filepath.Join(tb.TempDir(), "kubeconfig")
	if err := WriteKubeconfig(cfg, cp.Kubeconfig); err != nil {
		tb.Fatalf("writing kubeconfig: %v", err)
	}

	if o.SkipInstall {
		return cp
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := InstallCRDs(ctx, cfg, filepath.Join(RepoRoot(), "manifests", "crds")); err != nil {
		tb.Fatalf("installing CRDs: %v", err)
	}
	ns := &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: SchedulerNamespace}}
	if _, err := cp.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		tb.Fatalf("creating namespace %s: %v", SchedulerNamespace, err)
	}
	return cp
}

// JSONConfig returns a copy of cfg that speaks JSON: custom resources have no
// protobuf encoding, and the apiserver's own clients default to protobuf.
func JSONConfig(cfg *rest.Config) *rest.Config {
	out := rest.CopyConfig(cfg)
	out.ContentType = runtime.ContentTypeJSON
	out.AcceptContentTypes = runtime.ContentTypeJSON
	return out
}

// WriteKubeconfig writes cfg as a kubeconfig file.
func WriteKubeconfig(cfg *rest.Config, path string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{
		Server:                   cfg.Host,
		CertificateAuthorityData: cfg.CAData,
		CertificateAuthority:     cfg.CAFile,
		// The apiserver's loopback certificate names this server, not the host.
		TLSServerName: cfg.ServerName,
	}
	kc.AuthInfos["test"] = &clientcmdapi.AuthInfo{
		Token:                 cfg.BearerToken,
		ClientCertificateData: cfg.CertData,
		ClientCertificate:     cfg.CertFile,
		ClientKeyData:         cfg.KeyData,
		ClientKey:             cfg.KeyFile,
	}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "test"}
	kc.CurrentContext = "test"
	return clientcmd.WriteToFile(*kc, path)
}

// InstallCRDs creates every CustomResourceDefinition in dir and waits until
// the apiserver serves each one.
func InstallCRDs(ctx context.Context, cfg *rest.Config, dir string) error {
	client, err := apiextensionsclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no CRD files in %s", dir)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := utilyaml.Unmarshal(data, crd); err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		if err := CreateCRD(ctx, client, crd); err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
	}
	return nil
}

// CreateCRD creates a CustomResourceDefinition (one that exists already is
// kept) and waits until the apiserver has established it.
func CreateCRD(ctx context.Context, client apiextensionsclient.Interface, crd *apiextensionsv1.CustomResourceDefinition) error {
	if _, err := client.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating CRD %s: %w", crd.Name, err)
	}
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		got, err := client.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range got.Status.Conditions {
			if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for CRD %s to be established: %w", crd.Name, err)
	}
	return nil
}
