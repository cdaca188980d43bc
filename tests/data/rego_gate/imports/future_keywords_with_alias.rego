package gate

import future.keywords.in as member

allow if 1 in [1]
