package gate

import data.lib[x]

allow if true
