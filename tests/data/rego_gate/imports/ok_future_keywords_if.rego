package gate

import future.keywords.if
import future.keywords.in

allow if "a" in input.roles
