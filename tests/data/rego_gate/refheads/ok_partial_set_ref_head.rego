package gate

findings.deny contains msg if {
	some msg in input.deny
}

findings.warn contains msg if {
	some msg in input.warn
}
