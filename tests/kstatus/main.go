// Command kstatus reads one Kubernetes object as JSON on stdin and prints what
// sigs.k8s.io/cli-utils/pkg/kstatus makes of it (the library Flux and kubectl-based
// tools use) as JSON: {"status": "...", "message": "..."}.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type result struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	// utiljson keeps whole numbers int64, as the API machinery does (encoding/json would make float64).
	var object map[string]interface{}
	if err := utiljson.Unmarshal(data, &object); err != nil {
		fail(err)
	}
	computed, err := status.Compute(&unstructured.Unstructured{Object: object})
	if err != nil {
		fail(err)
	}
	out, err := json.Marshal(result{Status: computed.Status.String(), Message: computed.Message})
	if err != nil {
		fail(err)
	}
	fmt.Println(string(out))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kstatus:", err)
	os.Exit(2)
}
