package gate

import data.lib.a as x
import data.lib.b as x

allow if x.ok
