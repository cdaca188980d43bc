package gate

deny contains msg if {
	input.privileged
}
