package gate

import data.lib as a
import data.lib as b

allow if {
	a.ok
	b.ok
}
