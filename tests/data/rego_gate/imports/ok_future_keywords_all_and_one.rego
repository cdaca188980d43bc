package gate

import future.keywords
import future.keywords.in

allow if 1 in [1]
