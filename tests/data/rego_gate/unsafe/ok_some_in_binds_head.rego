package gate

deny contains msg if {
	some c in input.request.object.spec.containers
	c.securityContext.privileged
	msg := sprintf("container %s is privileged", [c.name])
}
