package gate

import data.lib

allow if {
	lib := 1
	lib == 1
}
