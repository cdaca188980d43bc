package gate

import rego.v1

allow if "a" in input.roles
