// The fuzz suite's oracle: libcni's own code (Debian's golang-github-appc-cni-dev, libcni 1.1.2), fed
// many examples in one run (one long-lived process per test session). Each stdin line is a JSON request; each stdout line the answer:
//
//	{"op":"convert","result":{...},"to":"0.2.0"}  ->  {"ok":true,"result":{...}} | {"ok":false,"error":"..."}
//	    create.CreateFromBytes(result) (its own cniVersion), then GetAsVersion(to), marshalled.
//	{"op":"args","args":"K=V;..."}                ->  {"ok":true,"values":{"IP":"...",...}} | {"ok":false,...}
//	    types.LoadArgs into a struct with types.CommonArgs and one UnmarshallableString field per key
//	    that cni-ignite's plugins know (IP, MAC, TC_REDIRECT_TAP_*, IGNITE_OWNER).
//
// Built offline in GOPATH mode (GO111MODULE=off GOPATH=/usr/share/gocode), as tests/runtimes/libcni-client.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	"github.com/containernetworking/cni/pkg/types"
	_ "github.com/containernetworking/cni/pkg/types/020" // registers each version's creator and converters
	_ "github.com/containernetworking/cni/pkg/types/040"
	_ "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/types/create"
)

type request struct {
	Op     string          `json:"op"`
	Result json.RawMessage `json:"result"`
	To     string          `json:"to"`
	Args   string          `json:"args"`
}

type answer struct {
	Ok     bool              `json:"ok"`
	Error  string            `json:"error,omitempty"`
	Result json.RawMessage   `json:"result,omitempty"`
	Values map[string]string `json:"values,omitempty"`
}

type knownArgs struct {
	types.CommonArgs
	IP                   types.UnmarshallableString
	MAC                  types.UnmarshallableString
	TC_REDIRECT_TAP_NAME types.UnmarshallableString
	TC_REDIRECT_TAP_UID  types.UnmarshallableString
	TC_REDIRECT_TAP_GID  types.UnmarshallableString
	IGNITE_OWNER         types.UnmarshallableString
}

func convert(req request) answer {
	res, err := create.CreateFromBytes(req.Result)
	if err != nil {
		return answer{Error: "create: " + err.Error()}
	}
	out, err := res.GetAsVersion(req.To)
	if err != nil {
		return answer{Error: "convert: " + err.Error()}
	}
	text, err := json.Marshal(out)
	if err != nil {
		return answer{Error: "marshal: " + err.Error()}
	}
	return answer{Ok: true, Result: text}
}

func loadArgs(req request) answer {
	var a knownArgs
	if err := types.LoadArgs(req.Args, &a); err != nil {
		return answer{Error: err.Error()}
	}
	values := map[string]string{}
	for key, v := range map[string]types.UnmarshallableString{
		"IP": a.IP, "MAC": a.MAC, "TC_REDIRECT_TAP_NAME": a.TC_REDIRECT_TAP_NAME,
		"TC_REDIRECT_TAP_UID": a.TC_REDIRECT_TAP_UID, "TC_REDIRECT_TAP_GID": a.TC_REDIRECT_TAP_GID,
		"IGNITE_OWNER": a.IGNITE_OWNER,
	} {
		values[key] = string(v)
	}
	return answer{Ok: true, Values: values}
}

// answerOf runs one request; a panic inside libcni (e.g. "routes":[null] dereferences a nil route) is a
// refusal, so one example cannot end the run.
func answerOf(req request) (ans answer) {
	defer func() {
		if r := recover(); r != nil {
			ans = answer{Error: fmt.Sprintf("panic: %v", r)}
		}
	}()
	switch req.Op {
	case "convert":
		return convert(req)
	case "args":
		return loadArgs(req)
	}
	return answer{Error: "unknown op " + req.Op}
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	for in.Scan() {
		var req request
		var ans answer
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			ans = answer{Error: "request: " + err.Error()}
		} else {
			ans = answerOf(req)
		}
		if err := enc.Encode(ans); err != nil {
			os.Exit(2)
		}
		if err := out.Flush(); err != nil { // one answer per request line, at once: the caller may wait on it
			os.Exit(2)
		}
	}
	if err := in.Err(); err != nil {
		os.Exit(3)
	}
}
