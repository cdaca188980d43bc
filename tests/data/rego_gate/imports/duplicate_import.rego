package gate

import data.lib
import data.lib

allow if lib.ok
