package gate

import future.keywords

allow if "a" in input.roles
