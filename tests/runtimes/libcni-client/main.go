// A small libcni client for the runtime tests: one operation per run, JSON on stdout.
//
//	libcni-client -conf LIST -path DIR[:DIR] -cache DIR -id ID [-netns PATH] [-ifname eth0]
//	              [-ports JSON] [-args K=V;...] validate|add|check|del|cached
//
// Built offline from Debian's golang-github-appc-cni-dev (GOPATH mode). Prints
// {"op":..., "result":..., "cachedConfig":...} on success and {"op":..., "error":...} (exit 1) on failure.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

type output struct {
	Op           string          `json:"op"`
	Result       interface{}     `json:"result,omitempty"`
	CachedConfig json.RawMessage `json:"cachedConfig,omitempty"`
	Versions     []string        `json:"versions,omitempty"`
	Error        string          `json:"error,omitempty"`
}

func main() {
	conf := flag.String("conf", "", "conflist file")
	path := flag.String("path", "", "plugin folders, ':'-separated")
	cache := flag.String("cache", "", "libcni cache dir (results land in DIR/results)")
	id := flag.String("id", "", "container ID")
	netns := flag.String("netns", "", "container netns path")
	ifname := flag.String("ifname", "eth0", "interface name in the container")
	ports := flag.String("ports", "", "portMappings capability arg, as JSON")
	args := flag.String("args", "", "CNI_ARGS, K=V;K=V")
	flag.Parse()
	op := flag.Arg(0)
	out := output{Op: op}
	if err := run(op, *conf, *path, *cache, *id, *netns, *ifname, *ports, *args, &out); err != nil {
		out.Error = err.Error()
		emit(out)
		os.Exit(1)
	}
	emit(out)
}

func emit(out output) {
	data, err := json.Marshal(out)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Println(string(data))
}

func run(op, conf, path, cache, id, netns, ifname, ports, args string, out *output) error {
	list, err := libcni.ConfListFromFile(conf)
	if err != nil {
		return fmt.Errorf("load %s: %w", conf, err)
	}
	cni := libcni.NewCNIConfigWithCacheDir(filepath.SplitList(path), cache, nil)
	rt := &libcni.RuntimeConf{ContainerID: id, NetNS: netns, IfName: ifname, CacheDir: cache,
		CapabilityArgs: map[string]interface{}{}}
	if ports != "" {
		var pm []map[string]interface{}
		if err := json.Unmarshal([]byte(ports), &pm); err != nil {
			return fmt.Errorf("-ports: %w", err)
		}
		rt.CapabilityArgs["portMappings"] = pm
	}
	for _, kv := range strings.Split(args, ";") {
		if parts := strings.SplitN(kv, "=", 2); len(parts) == 2 {
			rt.Args = append(rt.Args, [2]string{parts[0], parts[1]})
		}
	}
	ctx := context.Background()
	switch op {
	case "validate":
		versions, err := cni.ValidateNetworkList(ctx, list)
		out.Versions = versions
		return err
	case "add":
		res, err := cni.AddNetworkList(ctx, list, rt)
		if err != nil {
			return err
		}
		return setResult(out, res)
	case "check":
		return cni.CheckNetworkList(ctx, list, rt)
	case "del":
		return cni.DelNetworkList(ctx, list, rt)
	case "cached":
		res, err := cni.GetNetworkListCachedResult(list, rt)
		if err != nil {
			return err
		}
		if res != nil {
			if err := setResult(out, res); err != nil {
				return err
			}
		}
		cfg, _, err := cni.GetNetworkListCachedConfig(list, rt)
		if err != nil {
			return err
		}
		out.CachedConfig = cfg
		return nil
	}
	return fmt.Errorf("unknown operation %q (validate|add|check|del|cached)", op)
}

func setResult(out *output, res types.Result) error {
	data, err := json.Marshal(res)
	if err != nil {
		return err
	}
	var generic interface{}
	if err := json.Unmarshal(data, &generic); err != nil {
		return err
	}
	out.Result = generic
	return nil
}
