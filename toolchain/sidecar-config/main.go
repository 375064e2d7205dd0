// Command sidecar-config prints the Envoy listeners and routes Istio's control plane would send
// to given proxies (model pods' sidecars, the ingress gateway), from rendered Istio objects and
// the Kubernetes Services, Pods and EndpointSlices a cluster holds.
//
// It runs Istio's own config generation in-process (the discovery server its tests use), so an
// EnvoyFilter whose match hits nothing shows up as a filter missing from the output, not as a
// validation pass. It does not judge the output: the caller asserts on it.
//
// Input (stdin, JSON):
//
//	{"config": "<Istio objects, YAML>", "kubernetes": "<Services, Pods, EndpointSlices, YAML>",
//	 "mesh": "<MeshConfig, YAML>",
//	 "proxies": [{"name": "...", "type": "sidecar"|"router", "namespace": "...",
//	              "labels": {...}, "ip": "10.1.0.5"}]}
//
// Output (the file named by the only argument, JSON): {"proxies": {"<name>": {"listeners":
// [...], "routes": [...]}}}, each Envoy message in protojson with proto field names. Istio logs
// to stdout and stderr; the output file is the only result.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	meshconfig "istio.io/api/mesh/v1alpha1"
	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pilot/test/xds"
	"istio.io/istio/pkg/config/mesh"
	"istio.io/istio/pkg/test"
)

type proxySpec struct {
	Name      string            `json:"name"`
	Type      string            `json:"type"`
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels"`
	IP        string            `json:"ip"`
}

type input struct {
	Config     string      `json:"config"`
	Kubernetes string      `json:"kubernetes"`
	Mesh       string      `json:"mesh"`
	Proxies    []proxySpec `json:"proxies"`
}

type proxyConfig struct {
	Listeners []json.RawMessage `json:"listeners"`
	Routes    []json.RawMessage `json:"routes"`
}

var marshal = protojson.MarshalOptions{UseProtoNames: true}

func encode[T proto.Message](messages []T) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, 0, len(messages))
	for _, m := range messages {
		b, err := marshal.Marshal(m)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

func run(in input) (map[string]proxyConfig, error) {
	var meshConfig *meshconfig.MeshConfig
	if in.Mesh != "" {
		m, err := mesh.ApplyMeshConfigDefaults(in.Mesh)
		if err != nil {
			return nil, fmt.Errorf("mesh config: %w", err)
		}
		meshConfig = m
	}
	result := map[string]proxyConfig{}
	var failure error
	err := test.Wrap(func(t test.Failer) {
		s := xds.NewFakeDiscoveryServer(t, xds.FakeOptions{
			ConfigString:           in.Config,
			KubernetesObjectString: in.Kubernetes,
			MeshConfig:             meshConfig,
		})
		for _, p := range in.Proxies {
			kind := model.SidecarProxy
			if p.Type == "router" {
				kind = model.Router
			}
			proxy := s.SetupProxy(&model.Proxy{
				Type:            kind,
				ID:              p.Name + "." + p.Namespace,
				ConfigNamespace: p.Namespace,
				Labels:          p.Labels,
				IPAddresses:     []string{p.IP},
				Metadata: &model.NodeMetadata{
					Namespace: p.Namespace,
					Labels:    p.Labels,
				},
			})
			listeners := s.Listeners(proxy)
			routes := s.RoutesFromListeners(proxy, listeners)
			l, err := encode(listeners)
			if err != nil {
				failure = err
				return
			}
			r, err := encode(routes)
			if err != nil {
				failure = err
				return
			}
			result[p.Name] = proxyConfig{Listeners: l, Routes: r}
		}
	})
	if err != nil {
		return nil, err
	}
	return result, failure
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: sidecar-config OUTPUT.json < input.json")
		os.Exit(2)
	}
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sidecar-config: reading stdin:", err)
		os.Exit(2)
	}
	var in input
	if err := json.Unmarshal(raw, &in); err != nil {
		fmt.Fprintln(os.Stderr, "sidecar-config: input is not the expected JSON:", err)
		os.Exit(2)
	}
	proxies, err := run(in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sidecar-config:", err)
		os.Exit(1)
	}
	out, err := json.Marshal(map[string]any{"proxies": proxies})
	if err == nil {
		err = os.WriteFile(os.Args[1], out, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sidecar-config: writing the output:", err)
		os.Exit(1)
	}
}
