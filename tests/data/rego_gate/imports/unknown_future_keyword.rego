package gate

import future.keywords.unless

allow if true
