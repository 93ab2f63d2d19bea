// Command testsummary reads `go test -json` output and prints what `go test`
// prints (each package's result, and the output of failed tests) followed by
// one closing line: "tests: N passed, N failed, N skipped".
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

func main() {
	var passed, failed, skipped int
	output := map[string][]string{} // package/test → lines, kept until the test ends
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			fmt.Println(sc.Text()) // build errors and the like come as plain text
			continue
		}
		key := e.Package + "/" + e.Test
		switch e.Action {
		case "build-output":
			fmt.Print(e.Output)
		case "output":
			output[key] = append(output[key], e.Output)
		case "pass", "fail", "skip":
			lines := output[key]
			delete(output, key)
			if e.Test == "" {
				// The package's own result line, as go test prints it.
				for _, l := range lines {
					if strings.HasPrefix(l, "ok ") || strings.HasPrefix(l, "FAIL") ||
						strings.HasPrefix(l, "?") || e.Action == "fail" {
						fmt.Print(l)
					}
				}
				continue
			}
			switch e.Action {
			case "pass":
				passed++
			case "fail":
				failed++
				fmt.Print(strings.Join(lines, ""))
			case "skip":
				skipped++
				fmt.Printf("--- SKIP: %s (%s)\n", e.Test, e.Package)
			}
		}
	}
	fmt.Printf("tests: %d passed, %d failed, %d skipped\n", passed, failed, skipped)
}
