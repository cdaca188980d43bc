# module: lib/k8s.rego
package lib.k8s

pod_containers(review) := [c |
	some field in ["containers", "initContainers", "ephemeralContainers"]
	some c in object.get(review, ["request", "object", "spec", field], [])
]

is_privileged(c) if c.securityContext.privileged == true
# module: policy.rego
package policy

import data.lib.k8s

deny contains msg if {
	some c in k8s.pod_containers(input)
	k8s.is_privileged(c)
	msg := sprintf("%s is privileged", [c.name])
}
