// Command nodeagent is tandem's node agent: it runs on every GPU node
// (DaemonSet), discovers the node's GPU, NVLink, PCIe, NIC and fabric
// topology and GPUDirect RDMA readiness, and publishes them as the node's
// NodeTopology and tandem.dev node labels.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	v1 "k8s.io/api/core/v1"
	apiruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	apimachineryversion "k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	"k8s.io/component-base/version"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/tandem-sched/tandem/apis/topology/v1alpha1"
	"github.com/tandem-sched/tandem/pkg/generated/clientset/versioned"
	"github.com/tandem-sched/tandem/pkg/nodeagent"
	"github.com/tandem-sched/tandem/pkg/nodeagent/gpu"
	"github.com/tandem-sched/tandem/pkg/nodeagent/gpu/nvmlgpu"
	"github.com/tandem-sched/tandem/pkg/nodeagent/gpudirect"
	"github.com/tandem-sched/tandem/pkg/nodeagent/leaf"
	"github.com/tandem-sched/tandem/pkg/nodeagent/pci"
	"github.com/tandem-sched/tandem/pkg/nodeagent/podresources"
	"github.com/tandem-sched/tandem/pkg/nodeagent/runner"
)

// options are the command-line flags.
type options struct {
	nodeName           string
	kubeconfig         string
	sysfsRoot          string
	procfsRoot         string
	nvmlLibrary        string
	driverRoot         string
	nvmlTimeout        time.Duration
	healthAddr         string
	podResourcesSocket string
	gpuResourceName    string
	draDriver          string
	leafSources        string
	staticTopology     string
	infiniBandProbe    bool
	configureGPUDirect bool
	maxGDRLevel        string
	acsUnknownPolicy   string
	ncclTopoFile       string
	heartbeatInterval  time.Duration
	resyncInterval     time.Duration
	version            bool
}

func (o *options) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.nodeName, "node-name", os.Getenv("NODE_NAME"), "Name of the node the agent runs on (default $NODE_NAME).")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "Path to a kubeconfig; in-cluster configuration when empty.")
	fs.StringVar(&o.sysfsRoot, "sysfs-root", "/sys", "Where the host's sysfs is mounted.")
	fs.StringVar(&o.procfsRoot, "procfs-root", "/proc", "Where the host's procfs is mounted.")
	fs.StringVar(&o.nvmlLibrary, "nvml-library", "", "Path of libnvidia-ml.so.1. When empty, it is looked for under --driver-root in the library directories of this machine's architecture, then left to the dynamic loader.")
	fs.StringVar(&o.driverRoot, "driver-root", "", "Where the NVIDIA driver's root is mounted (the host's / for a host-installed driver, the GPU Operator's /run/nvidia/driver); searched for libnvidia-ml.so.1 when --nvml-library is empty.")
	fs.DurationVar(&o.nvmlTimeout, "nvml-timeout", 30*time.Second, "Deadline of each NVML call; a call that overruns fails discovery and /healthz until it returns.")
	fs.StringVar(&o.healthAddr, "health-addr", ":8089", "Address of the /healthz, /readyz and /metrics endpoint; empty to disable.")
	fs.StringVar(&o.podResourcesSocket, "pod-resources-socket", podresources.DefaultSocket, "The kubelet's pod-resources gRPC socket.")
	fs.StringVar(&o.gpuResourceName, "gpu-resource-name", "nvidia.com/gpu", "Extended resource whose device IDs are GPU UUIDs.")
	fs.StringVar(&o.draDriver, "dra-driver", podresources.DefaultDRADriver, "DRA driver whose devices the kubelet prepares for ResourceClaims are GPUs; each is mapped to its GPU's UUID through the uuid attribute of the node's ResourceSlices of that driver, listed only when the kubelet reports such a device. Empty ignores DRA devices.")
	fs.StringVar(&o.leafSources, "leaf-sources", "static,label", "Comma-separated leaf-switch sources in priority order: static, label, lldp (needs lldpd's socket, overlays/lldp), infiniband (needs /dev/infiniband, overlays/infiniband-probe).")
	fs.StringVar(&o.staticTopology, "static-topology-file", "", "YAML or JSON file mapping hostnames or NIC GUIDs to leaf and spine (for the static source).")
	fs.BoolVar(&o.infiniBandProbe, "enable-infiniband-probe", false, "Allow the infiniband leaf source (runs smpquery, needs umad access); it must also be listed in --leaf-sources.")
	fs.BoolVar(&o.configureGPUDirect, "configure-gpudirect", false, "Load nvidia-peermem when dma-buf is unavailable and clear ACS P2P redirect on bridges between GPUs and their NICs.")
	fs.StringVar(&o.maxGDRLevel, "max-gpudirect-level", string(v1alpha1.PCIeLevelPXB), "Farthest GPU-NIC PCIe level (PIX, PXB, PHB, NODE, SYS) at which GPUDirect RDMA counts as usable, as NCCL_NET_GDR_LEVEL.")
	fs.StringVar(&o.acsUnknownPolicy, "acs-unknown-policy", string(gpudirect.ACSUnknownAuto), "What an ACS state the agent cannot read (without CAP_SYS_ADMIN) does to GPUDirect RDMA readiness: auto (not ready only when an IOMMU is enabled, since Linux then turns ACS redirect on), strict (never ready), lenient (ready if everything else passed). The check is published as Unknown either way.")
	fs.StringVar(&o.ncclTopoFile, "nccl-topo-file", "", "An NCCL topology file (NCCL_TOPO_FILE) whose tree gives the GPU-NIC levels of the devices it lists, for VMs that hide their PCIe switches (Azure ND: /opt/microsoft/ndv5-topo.xml).")
	fs.DurationVar(&o.heartbeatInterval, "heartbeat-interval", nodeagent.DefaultHeartbeatInterval, "How often the NodeTopology's lastHeartbeatTime is refreshed.")
	fs.BoolVar(&o.version, "version", false, "Print the agent's version and exit.")
	fs.DurationVar(&o.resyncInterval, "resync-interval", nodeagent.DefaultResyncInterval, "How often the node is rediscovered; changes are published at once.")
}

func (o *options) validate() error {
	var errs []error
	if o.nodeName == "" {
		errs = append(errs, errors.New("--node-name (or NODE_NAME) is required"))
	}
	if o.heartbeatInterval <= 0 {
		errs = append(errs, fmt.Errorf("--heartbeat-interval %v must be positive", o.heartbeatInterval))
	}
	if o.nvmlTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--nvml-timeout %v must be positive", o.nvmlTimeout))
	}
	if o.resyncInterval <= 0 {
		errs = append(errs, fmt.Errorf("--resync-interval %v must be positive", o.resyncInterval))
	}
	switch v1alpha1.PCIeLevel(o.maxGDRLevel) {
	case v1alpha1.PCIeLevelPIX, v1alpha1.PCIeLevelPXB, v1alpha1.PCIeLevelPHB, v1alpha1.PCIeLevelNODE, v1alpha1.PCIeLevelSYS:
	default:
		errs = append(errs, fmt.Errorf("--max-gpudirect-level %q is not one of PIX, PXB, PHB, NODE, SYS", o.maxGDRLevel))
	}
	if o.draDriver != "" {
		if msgs := validation.IsDNS1123Subdomain(o.draDriver); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("--dra-driver %q is not a DRA driver name (a DNS subdomain): %s", o.draDriver, strings.Join(msgs, "; ")))
		}
	}
	if _, err := gpudirect.ParseACSUnknownPolicy(o.acsUnknownPolicy); err != nil {
		errs = append(errs, fmt.Errorf("--acs-unknown-policy: %w", err))
	}
	return errors.Join(errs...)
}

func (o *options) leafSourceList(run runner.Runner) ([]leaf.Source, error) {
	build := map[v1alpha1.LeafSource]func() (leaf.Source, error){
		v1alpha1.LeafSourceStatic: func() (leaf.Source, error) {
			if o.staticTopology == "" {
				return nil, nil // listed by default, used only with a file
			}
			s := leaf.Static{Path: o.staticTopology}
			_, err := s.Load()
			return s, err
		},
		v1alpha1.LeafSourceLabel: func() (leaf.Source, error) { return leaf.Labels{}, nil },
		v1alpha1.LeafSourceLLDP:  func() (leaf.Source, error) { return leaf.LLDP{Runner: run}, nil },
		v1alpha1.LeafSourceInfiniBand: func() (leaf.Source, error) {
			if !o.infiniBandProbe {
				return nil, errors.New("needs --enable-infiniband-probe")
			}
			return leaf.InfiniBand{Runner: run}, nil
		},
	}
	return leaf.ParseSources(strings.Split(o.leafSources, ","), build)
}

// versionString is what --version prints: the stamped version (a
// Kubernetes semantic version with tandem's commit, see the Makefile), the
// commit, the build date and the Go toolchain.
func versionString(v apimachineryversion.Info) string {
	return fmt.Sprintf("tandem nodeagent %s (commit %s, built %s, %s %s)", v.GitVersion, v.GitCommit, v.BuildDate, v.GoVersion, v.Platform)
}

func main() {
	fs := flag.NewFlagSet("nodeagent", flag.ContinueOnError)
	klog.InitFlags(fs)
	var o options
	o.addFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: nodeagent [flags]\n\ntandem's node agent: publishes this node's GPU, NVLink, PCIe, NIC and fabric topology as a NodeTopology.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if o.version {
		fmt.Println(versionString(version.Get()))
		os.Exit(0)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, &o); err != nil {
		klog.ErrorS(err, "nodeagent failed")
		klog.Flush()
		os.Exit(1)
	}
	klog.Flush()
}

func run(ctx context.Context, o *options) error {
	if err := o.validate(); err != nil {
		return err
	}
	cfg, err := restConfig(o.kubeconfig)
	if err != nil {
		return err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("building Kubernetes client: %w", err)
	}
	// Custom resources have no protobuf encoding.
	jsonCfg := rest.CopyConfig(cfg)
	jsonCfg.ContentType, jsonCfg.AcceptContentTypes = apiruntime.ContentTypeJSON, apiruntime.ContentTypeJSON
	tandem, err := versioned.NewForConfig(jsonCfg)
	if err != nil {
		return fmt.Errorf("building tandem client: %w", err)
	}
	run := runner.Exec{}
	sources, err := o.leafSourceList(run)
	if err != nil {
		return err
	}
	var topo *pci.TopologyFile
	if o.ncclTopoFile != "" {
		if topo, err = pci.LoadTopologyFile(o.ncclTopoFile); err != nil {
			return fmt.Errorf("--nccl-topo-file: %w", err)
		}
	}
	acsPolicy, _ := gpudirect.ParseACSUnknownPolicy(o.acsUnknownPolicy)
	nvmlPath := o.nvmlLibrary
	if nvmlPath == "" && o.driverRoot != "" {
		nvmlPath = findNVML(o.driverRoot, runtime.GOARCH)
	}
	nvmlLib := &gpu.Deadline{Lib: nvmlgpu.New(nvmlPath), Timeout: o.nvmlTimeout, Clock: clock.RealClock{}}
	sys := pci.SysFS{Root: o.sysfsRoot}
	d := &nodeagent.Discoverer{
		SysRoot:      o.sysfsRoot,
		Topology:     topo,
		NVML:         nvmlLib,
		LeafSources:  sources,
		Checker:      gpudirect.Checker{SysRoot: o.sysfsRoot, ProcRoot: o.procfsRoot, Config: sys, MaxLevel: v1alpha1.PCIeLevel(o.maxGDRLevel), ACSUnknown: acsPolicy},
		PodResources: podresources.Client{Socket: o.podResourcesSocket, Resource: o.gpuResourceName, DRADriver: o.draDriver},
		Slices:       nodeagent.KubeSlices{Kube: kube},
	}
	if o.configureGPUDirect {
		d.Configurator = &gpudirect.Configurator{Runner: run, Config: sys}
	}
	health := nodeagent.NewHealth(clock.RealClock{},
		// A sync may fail and back off up to DefaultBackoff's cap twice
		// before the agent counts as stuck.
		o.resyncInterval+2*nodeagent.DefaultBackoff().Cap,
		3*o.heartbeatInterval)
	health.Hung = nvmlLib.Hung
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	agent := &nodeagent.Agent{
		NodeName:          o.nodeName,
		Kube:              kube,
		Discoverer:        d,
		Publisher:         &nodeagent.Publisher{Kube: kube, Tandem: tandem, Clock: clock.RealClock{}},
		Clock:             clock.RealClock{},
		ResyncInterval:    o.resyncInterval,
		HeartbeatInterval: o.heartbeatInterval,
		Health:            health,
		Recorder:          broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: "tandem-agent", Host: o.nodeName}),
	}
	logger := klog.FromContext(ctx).WithValues("node", o.nodeName)
	if o.healthAddr != "" {
		srv := &http.Server{Addr: o.healthAddr, Handler: health.Handler(), ReadHeaderTimeout: 10 * time.Second}
		lis, err := net.Listen("tcp", o.healthAddr)
		if err != nil {
			return fmt.Errorf("--health-addr %s: %w", o.healthAddr, err)
		}
		go func() {
			if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error(err, "Health endpoint stopped")
			}
		}()
		defer srv.Close()
	}
	logger.Info("Starting tandem node agent", "sysfsRoot", o.sysfsRoot, "nvmlLibrary", nvmlPath, "leafSources", o.leafSources, "draDriver", o.draDriver, "configureGPUDirect", o.configureGPUDirect, "healthAddr", o.healthAddr)
	return agent.Run(klog.NewContext(ctx, logger))
}

// nvmlLibDirs are where distributions and the GPU Operator's driver
// container put libnvidia-ml.so.1, per GOARCH, most specific first.
var nvmlLibDirs = map[string][]string{
	"amd64": {"usr/lib/x86_64-linux-gnu", "usr/lib64", "lib64", "usr/lib"},
	"arm64": {"usr/lib/aarch64-linux-gnu", "usr/lib64", "lib64", "usr/lib"},
}

// findNVML returns the first libnvidia-ml.so.1 under root for goarch, or ""
// (the dynamic loader's search) when there is none.
func findNVML(root, goarch string) string {
	for _, dir := range nvmlLibDirs[goarch] {
		p := filepath.Join(root, dir, "libnvidia-ml.so.1")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("loading kubeconfig %s: %w", kubeconfig, err)
		}
		return cfg, nil
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("loading in-cluster configuration (pass --kubeconfig outside a cluster): %w", err)
	}
	return cfg, nil
}
