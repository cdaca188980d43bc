package gate

violations contains v if {
	some v in input.violations
}

deny if count(violations) > 0

allow if not deny
