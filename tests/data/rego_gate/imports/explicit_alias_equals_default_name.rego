package gate

import data.lib
import data.other as lib

allow if lib.ok
