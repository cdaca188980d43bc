package k8s.admission

import rego.v1

allowed_registries := {"registry.acme.io", "ghcr.io/acme"}

containers contains c if {
	some c in input.request.object.spec.containers
}

containers contains c if {
	some c in input.request.object.spec.initContainers
}

deny contains msg if {
	some c in containers
	not trusted(c.image)
	msg := sprintf("image %q comes from an untrusted registry", [c.image])
}

trusted(image) if {
	some r in allowed_registries
	startswith(image, concat("", [r, "/"]))
}

all_limited if {
	every c in containers {
		c.resources.limits.memory
		c.resources.limits.cpu
	}
}
