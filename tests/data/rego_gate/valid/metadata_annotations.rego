# METADATA
# title: Gate
# description: Decides.
package gate

# METADATA
# title: Allow admins
# custom:
#   severity: high
allow if {
	input.user.admin
	annotation := rego.metadata.rule()
	annotation.custom.severity == "high"
}
