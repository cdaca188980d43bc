# module: policy.rego
package policy

allow if input.user.role == "admin"
# module: policy_test.rego
package policy_test

import data.policy

test_admin_allowed if {
	policy.allow with input as {"user": {"role": "admin"}}
}

test_viewer_denied if {
	not policy.allow with input as {"user": {"role": "viewer"}}
}
