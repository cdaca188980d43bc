package gate

import future.keywords.in
import future.keywords.in

allow if 1 in [1]
