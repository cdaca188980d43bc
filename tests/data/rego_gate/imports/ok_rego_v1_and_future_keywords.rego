package gate

import future.keywords.if
import rego.v1

allow if true
