package gate

import data.lib
import data.lib

a if {
	x := 1
	x := 2
}
